"""`/api/environments/{id}/releases`: an environment's releases (newest first, which
one is served, which were pruned) and activating a kept one."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.contexts.releases.commands import JobAccepted
from pressluft.contexts.releases.queries import ReleasePage
from pressluft.contexts.releases.service import Releases
from pressluft.http.params import query_choice
from pressluft.http.writes import answer, retry_of

__all__ = ["RELEASE_ROUTES"]

EnvironmentIdParam = Annotated[str, PathParameter(name="environment_id")]  # not an id: 404
ReleaseIdParam = Annotated[str, PathParameter(name="release_id")]  # likewise
Raw = Annotated[str | None, QueryParameter(max_length=64)]


@get(
    "/api/environments/{environment_id:str}/releases",
    operation_id="listReleases",
    tags=["releases"],
)
async def list_releases(
    releases: NamedDependency[Releases],
    environment_id: EnvironmentIdParam,
    kept: Raw = None,
    before: Raw = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> ReleasePage:
    kept_only = query_choice("kept", kept, ("true", "false")) == "true"
    return await releases.list(environment_id, limit, before, kept_only)


@post(
    "/api/environments/{environment_id:str}/releases/{release_id:str}/activate",
    operation_id="activateRelease",
    status_code=202,
    tags=["releases"],
)
async def activate_release(
    request: Request[Any, Any, Any],
    releases: NamedDependency[Releases],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    release_id: ReleaseIdParam,
) -> Response[JobAccepted]:
    done = await releases.activate(environment_id, release_id, ctx, await retry_of(request, ctx))
    return answer(done, 202)


RELEASE_ROUTES = [list_releases, activate_release]
