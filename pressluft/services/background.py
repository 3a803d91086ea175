"""Background services of the daemon and their supervisor.

A service is a named coroutine `run(stopping)` that loops until `stopping` is
set. The supervisor starts every service in the daemon's event loop, restarts
one that crashes (with backoff, logged), reports each one's state to the health
check, and stops them all on shutdown. The runtime starts the WAL
checkpointer, the session sweeper, the job workers and the job scheduler here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pressluft.clock import Clock
from pressluft.logs import get_logger

__all__ = ["Service", "ServiceState", "Supervisor"]

log = get_logger("pressluft.services")


@dataclass(frozen=True)
class Service:
    """A long-running part of the daemon."""

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class ServiceState:
    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None


class Supervisor:
    """Runs services until shutdown; restarts the ones that crash."""

    def __init__(
        self, clock: Clock, initial_backoff: float = 1.0, max_backoff: float = 30.0
    ) -> None:
        self.clock = clock
        self.stopping = asyncio.Event()
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.states: dict[str, ServiceState] = {}

    def start(self, service: Service) -> None:
        state = self.states[service.name] = ServiceState(service.name)
        self._tasks[service.name] = asyncio.create_task(
            self._keep_running(service, state), name=f"pressluft-{service.name}"
        )

    async def _keep_running(self, service: Service, state: ServiceState) -> None:
        backoff = self._initial_backoff
        while not self.stopping.is_set():
            state.running = True
            try:
                await service.run(self.stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                state.running = False
                state.restarts += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("service crashed; restarting", extra={"service": service.name})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), backoff)
                backoff = min(backoff * 2, self._max_backoff)
            else:
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
