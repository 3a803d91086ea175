"""Dependencies handlers receive: the runtime, and the acting context of a request."""

from __future__ import annotations

from typing import Any

from litestar import Request

from pressluft.errors import Unauthorized
from pressluft.runtime import Runtime
from pressluft.services.context import ANONYMOUS_ACTOR, Context
from pressluft.services.principals import Principal

__all__ = ["provide_context", "provide_principal", "provide_runtime"]


def provide_runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller the access guard authenticated (never absent on a protected route)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise Unauthorized("authentication required")
    return principal


def provide_context(request: Request[Any, Any, Any]) -> Context:
    state = request.scope.get("state", {})
    principal: Principal | None = state.get("principal")
    # Idempotency-Key is honoured (and recorded) once the job queue implements it.
    return Context(
        actor=principal.actor if principal else ANONYMOUS_ACTOR,
        correlation_id=state.get("correlation_id"),
    )
