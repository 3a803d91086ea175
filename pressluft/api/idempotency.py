"""`Idempotency-Key` on mutating routes: run the command at most once per key.

`run_write` executes a route's write command; with an `Idempotency-Key` it goes
through `services.idempotency.guarded` (same key + same request → the recorded
result, no new work; same key + another request → 422). Replayed responses
carry `Idempotent-Replayed: true`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request

from pressluft.acting import Context
from pressluft.api.daemon import Daemon
from pressluft.db import WriteTx
from pressluft.http.idempotency import Answered, fingerprint, guarded

__all__ = ["REPLAYED", "replay_headers", "run_write"]

T = TypeVar("T")

REPLAYED = "Idempotent-Replayed"


async def run_write(
    request: Request[Any, Any, Any],
    runtime: Daemon,
    ctx: Context,
    command: Callable[[WriteTx], T],
    result_type: type[T],
    status_code: int,
) -> Answered[T]:
    key = ctx.idempotency_key
    if key is None:
        return Answered(await runtime.db.write(command), replayed=False)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    print_ = fingerprint(request.method, target, await request.body())
    return await runtime.db.write(
        guarded(
            runtime.vault,
            ctx.actor,
            key,
            print_,
            runtime.config.idempotency_ttl_seconds,
            command,
            result_type,
            status_code,
        )
    )


def replay_headers(recorded: Answered[Any]) -> dict[str, str]:
    return {REPLAYED: "true"} if recorded.replayed else {}
