"""Dependencies handlers receive: the principal and the acting context of a request, and
the watch a long-lived stream keeps on the credential it was opened with."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from pressluft.acting import ANONYMOUS_ACTOR, Context
from pressluft.api.security import access_of, presented_credential, principal_of
from pressluft.contexts.access.principals import Principal
from pressluft.errors import BadRequest, Unauthorized
from pressluft.feature import Kernel
from pressluft.http.streams import CredentialWatch

__all__ = [
    "provide_context",
    "provide_credential_watch",
    "provide_principal",
]


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller the access guard authenticated (never absent on a protected route)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise Unauthorized("authentication required")
    return principal


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def provide_context(request: Request[Any, Any, Any]) -> Context:
    """Who acts, for which request, with which `Idempotency-Key` (checked here)."""
    state = request.scope.get("state", {})
    principal: Principal | None = state.get("principal")
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.fullmatch(key):
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            details={
                "errors": [{"field": "Idempotency-Key", "message": "invalid", "in": "header"}],
                "hint": "a UUID is a good key",
            },
        )
    return Context(
        actor=principal.actor if principal else ANONYMOUS_ACTOR,
        correlation_id=state.get("correlation_id"),
        idempotency_key=key,
    )


def provide_credential_watch(request: Request[Any, Any, Any]) -> CredentialWatch:
    """For a stream: tells it when the credential the request presented has ended."""
    kernel: Kernel = request.app.state.kernel
    access = access_of(request)
    credential = presented_credential(request)

    async def still_valid() -> bool:
        assert credential is not None
        return await principal_of(access, credential) is not None

    return CredentialWatch(
        None if credential is None else still_valid, kernel.auth_epoch, kernel.clock
    )
