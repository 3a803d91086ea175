"""`/api/settings`: the control plane's settings."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request, Response, get, patch
from litestar.di import NamedDependency
from litestar.params import Body, HeaderParameter

from pressluft.acting import Context
from pressluft.contexts.settings.service import Settings, SettingsPatch, SettingsView
from pressluft.errors import BadRequest, Conflict
from pressluft.http.writes import answer, retry_of

__all__ = ["SETTINGS_ROUTES"]

_ETAG = re.compile(r'^\s*(W/)?"([0-9]{1,18})"\s*$')


def _etag(view: SettingsView) -> dict[str, str]:
    return {"ETag": f'"{view.version}"'}


def _expected_version(if_match: str | None) -> int | None:
    """The version `If-Match` demands; None for no condition or `*`."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.match(if_match)
    if match is None:
        raise BadRequest(
            'If-Match must be the quoted ETag of the settings, e.g. "3"',
            details={"errors": [{"field": "If-Match", "message": "not an ETag", "in": "header"}]},
        )
    if match[1]:
        # RFC 9110: If-Match uses the strong comparison; a weak tag never matches.
        raise Conflict(
            "a weak ETag never matches If-Match",
            details={"hint": "send the ETag exactly as GET /api/settings returned it"},
        )
    return int(match[2])


@get("/api/settings", operation_id="getSettings", tags=["settings"])
async def read_settings(settings: NamedDependency[Settings]) -> Response[SettingsView]:
    view = await settings.get()
    return Response(view, headers=_etag(view))


@patch("/api/settings", operation_id="updateSettings", tags=["settings"])
async def update_settings(
    request: Request[Any, Any, Any],
    settings: NamedDependency[Settings],
    ctx: NamedDependency[Context],
    data: Annotated[SettingsPatch, Body()],
    if_match: Annotated[str | None, HeaderParameter(name="If-Match")] = None,
) -> Response[SettingsView]:
    expected = _expected_version(if_match)
    done = await settings.change(
        data, ctx, expected_version=expected, retry=await retry_of(request, ctx)
    )
    return answer(done, 200, _etag(done.value))


SETTINGS_ROUTES = [read_settings, update_settings]
