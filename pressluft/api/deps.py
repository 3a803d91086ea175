"""Dependencies handlers receive: the runtime, and the acting context of a request."""

from __future__ import annotations

from typing import Any

from litestar import Request

from pressluft.runtime import Runtime
from pressluft.services.context import LOOPBACK_ACTOR, Context

__all__ = ["provide_context", "provide_runtime"]


def provide_runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def provide_context(request: Request[Any, Any, Any]) -> Context:
    state = request.scope.get("state", {})
    # Idempotency-Key is honoured (and recorded) once the job queue implements it.
    return Context(actor=LOOPBACK_ACTOR, correlation_id=state.get("correlation_id"))
