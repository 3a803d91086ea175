"""What the HTTP faces see of the running daemon: a protocol, not the composition root.

Routes and pages receive it as the `runtime` dependency; `pressluft.runtime.Runtime`
implements it. Routes should reach a context's service rather than these
mechanisms; what remains here is what routes still use directly.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

from pressluft.clock import Clock
from pressluft.config import Config
from pressluft.contexts.nodes.machines import Providers
from pressluft.contexts.operations.health import HealthReport
from pressluft.db import Database
from pressluft.events.notify import KeyedNotifier, LogNotifier
from pressluft.jobs.registry import JobRegistry
from pressluft.metrics import Metrics
from pressluft.vault import Vault

__all__ = ["Daemon"]


@runtime_checkable
class Daemon(Protocol):
    """The running daemon, as requests use it."""

    config: Config
    clock: Clock
    db: Database
    metrics: Metrics
    notifier: LogNotifier
    job_changes: KeyedNotifier
    jobs: JobRegistry
    providers: Providers
    stopping: asyncio.Event
    user_count: int
    #: Moves whenever a session or token ends, so long-lived streams re-check theirs.
    auth_epoch: int

    @property
    def vault(self) -> Vault: ...

    async def health(self) -> HealthReport: ...
