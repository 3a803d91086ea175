"""Background services of the daemon and their supervisor.

A service is a named coroutine `run(stopping)` that loops until `stopping` is
set. The supervisor starts every service in the daemon's event loop, restarts
one that crashes (with backoff, logged, counted in
`pressluft_service_restarts_total`), reports each one's state to the health
check (down while it waits to restart; crash-looping while it crashed
`CRASH_LOOP_COUNT` times within `CRASH_LOOP_WINDOW` seconds, even if it runs
again), and stops them all on shutdown. A service's `run` must start clean each
time it is called: a restart calls it again on the same object. The runtime starts the WAL
checkpointer, the session sweeper, the job workers and the job scheduler here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pressluft.clock import Clock
from pressluft.db import is_unavailable
from pressluft.errors import ServiceUnavailable
from pressluft.logs import get_logger
from pressluft.metrics import Metrics

__all__ = ["Service", "ServiceState", "Supervisor"]

log = get_logger("pressluft.services")


@dataclass(frozen=True)
class Service:
    """A long-running part of the daemon."""

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]


#: A service that crashed this many times within the window is crash-looping.
CRASH_LOOP_COUNT = 3
CRASH_LOOP_WINDOW = 600.0


@dataclass
class ServiceState:
    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    #: Monotonic times of the latest crashes (enough to tell a crash loop).
    crashes: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_COUNT))

    def crash_looping(self, now: float) -> bool:
        """Whether it crashed `CRASH_LOOP_COUNT` times within the last window."""
        return len(self.crashes) == CRASH_LOOP_COUNT and now - self.crashes[0] < CRASH_LOOP_WINDOW


def _database_unavailable(exc: BaseException) -> bool:
    """A failure of the database to work right now (full or read-only disk, a lock
    held by another process), not of the service."""
    return isinstance(exc, ServiceUnavailable) or is_unavailable(exc)


class Supervisor:
    """Runs services until shutdown; restarts the ones that crash."""

    def __init__(
        self,
        clock: Clock,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.stopping = asyncio.Event()
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, ServiceState] = {}

    def start(self, service: Service) -> None:
        state = self.states[service.name] = ServiceState(service.name)
        if self.metrics is not None:
            self.metrics.service_restarts.labels(service.name).inc(0)  # the series from 0
        self._tasks[service.name] = asyncio.create_task(
            self._keep_running(service, state), name=f"pressluft-{service.name}"
        )

    async def _keep_running(self, service: Service, state: ServiceState) -> None:
        backoff = self._initial_backoff
        while not self.stopping.is_set():
            state.running = True
            started = self.clock.monotonic()
            try:
                await service.run(self.stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                state.running = False
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self.metrics is not None:
                    self.metrics.service_restarts.labels(service.name).inc()
                if self.clock.monotonic() - started > 2 * self._max_backoff:
                    backoff = self._initial_backoff  # it ran well for a while: no penalty
                if _database_unavailable(exc):
                    # The disk or a lock, not the service: health's database check says
                    # so; no traceback, and it is no crash (nor a crash loop).
                    log.warning(
                        "service stopped: the database cannot be written; restarting in %.0f s",
                        backoff,
                        extra={"service": service.name, "error": state.last_error},
                    )
                else:
                    state.crashes.append(self.clock.monotonic())
                    log.exception(
                        "service crashed; restarting in %.0f s",
                        backoff,
                        extra={"service": service.name, "restarts": state.restarts},
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), backoff)
                if not self.stopping.is_set():
                    log.warning(
                        "service restarting", extra={"service": service.name, "after": backoff}
                    )
                backoff = min(backoff * 2, self._max_backoff)
            else:
                if not self.stopping.is_set():
                    log.error("service ended on its own", extra={"service": service.name})
                break
        state.running = False

    async def stop(self, grace: float = 10.0) -> None:
        self.stopping.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
