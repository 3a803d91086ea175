"""Test job workers made from a coroutine function (tests register ad-hoc job types)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pressluft.jobs.context import LocalPort
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = ["fn_worker"]


def fn_worker(
    kind: str, fn: Callable[[LocalPort], Awaitable[None]], **settings: Any
) -> JobWorker[NoArgs]:
    """A worker of `kind` that runs `fn(ctx)` (the daemon's own port: tests may look
    at its claim); `settings` are class attributes (timeout_seconds, timeout_code…)."""

    async def work(self: JobWorker[NoArgs], ctx: WorkerPort, args: NoArgs) -> None:
        assert isinstance(ctx, LocalPort)
        await fn(ctx)

    cls = type(
        f"Test_{kind}", (JobWorker,), {"kind": kind, "args": NoArgs, "work": work, **settings}
    )
    worker: JobWorker[NoArgs] = cls()
    return worker
