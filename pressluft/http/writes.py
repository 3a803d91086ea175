"""Writes a context's service runs for a request: at most once per `Idempotency-Key`.

A route hands its service the request's `Retry` (the key and the request's
fingerprint, or None without a key); the service builds its command and runs
it through the `Writer`, which replays the first answer to a retried request
(`http.idempotency.guarded`). `accepted` and `answer` turn the result into the
response: 202 (or the given status) with `Idempotent-Replayed: true` on a replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from litestar import Request, Response

from pressluft.acting import Context
from pressluft.db import Database, WriteTx
from pressluft.http.idempotency import Answered, fingerprint, guarded
from pressluft.vault import Vault

__all__ = ["REPLAYED", "Retry", "Writer", "answer", "replay_headers", "retry_of"]

T = TypeVar("T")

REPLAYED = "Idempotent-Replayed"


@dataclass(frozen=True)
class Retry:
    """What makes a request a retry of an earlier one: its key, and what it asked."""

    actor: str
    key: str
    fingerprint: str


async def retry_of(request: Request[Any, Any, Any], ctx: Context) -> Retry | None:
    """The request's `Retry`, or None when it carries no `Idempotency-Key`."""
    if ctx.idempotency_key is None:
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    print_ = fingerprint(request.method, target, await request.body())
    return Retry(ctx.actor, ctx.idempotency_key, print_)


class Writer:
    """Runs commands for requests, each at most once per `Idempotency-Key`."""

    def __init__(self, db: Database, vault: Callable[[], Vault], ttl_seconds: int) -> None:
        self._db = db
        self._vault = vault
        self._ttl = ttl_seconds

    async def run(
        self,
        command: Callable[[WriteTx], T],
        result_type: type[T],
        status_code: int,
        retry: Retry | None,
    ) -> Answered[T]:
        if retry is None:
            return Answered(await self._db.write(command), replayed=False)
        once = guarded(
            self._vault(),
            retry.actor,
            retry.key,
            retry.fingerprint,
            self._ttl,
            command,
            result_type,
            status_code,
        )
        return await self._db.write(once)


def replay_headers(answered: Answered[Any]) -> dict[str, str]:
    return {REPLAYED: "true"} if answered.replayed else {}


def answer(
    answered: Answered[T], status_code: int = 202, headers: dict[str, str] | None = None
) -> Response[T]:
    """The response to a write: its value, its status, the replay header when replayed."""
    return Response(
        answered.value,
        status_code=status_code,
        headers={**(headers or {}), **replay_headers(answered)},
    )
