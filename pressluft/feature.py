"""A capability's one record: what the daemon needs of it, handed down at composition.

Each context (`pressluft/contexts/<name>/`) exports one `Feature`;
`pressluft/features.py` lists them, and that list is the only central
registry. From it the daemon builds its projector set (in list order: a
projector may read the tables of those before it), its job workers and
schedules, its routes and pages, its background services and the migrations
it applies. Static parts are declared on the record; parts that need the
running daemon (its database, clock, settings, vault) are built by
`assemble(kernel)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pressluft.clock import Clock
from pressluft.config import Config
from pressluft.db import Database
from pressluft.events.notify import KeyedNotifier, LogNotifier
from pressluft.events.projection import Projector
from pressluft.events.types.base import Event
from pressluft.http.writes import Writer
from pressluft.jobs.scheduler import Schedule
from pressluft.metrics import Metrics
from pressluft.supervisor import Service, Supervisor
from pressluft.vault import Vault

__all__ = ["Feature", "Kernel", "Parts"]


@dataclass(frozen=True)
class Kernel:
    """The running daemon's mechanisms, as a feature's parts are built from them."""

    config: Config
    clock: Clock
    db: Database
    metrics: Metrics
    #: The vault is opened at start, after the parts are built: ask for it when needed.
    vault: Callable[[], Vault]
    #: Runs requests' commands at most once per `Idempotency-Key`.
    writer: Writer
    #: Wakes followers of the event log's head, and of one job (its end, its log).
    notifier: LogNotifier
    job_changes: KeyedNotifier
    #: Set when the daemon stops (long-lived streams end).
    stopping: asyncio.Event
    #: Moves whenever a session or token ends (streams re-check their credential).
    auth_epoch: Callable[[], int]
    #: The background services' states (health), and the job kinds the daemon runs.
    supervisor: Supervisor
    job_kinds: Callable[[], list[str]]


@dataclass
class Parts:
    """What a feature adds to a running daemon."""

    #: Job workers (`pressluft.jobs` worker objects), registered by kind.
    workers: Sequence[Any] = ()
    schedules: Sequence[Schedule] = ()
    #: Long-running services the supervisor starts (and restarts).
    background: Sequence[Service] = ()
    #: Objects routes receive as Litestar dependencies, by name.
    services: Mapping[str, object] = field(default_factory=dict)
    #: Called when the daemon stops (close clients, pools).
    closers: Sequence[Callable[[], None]] = ()
    #: Sections it adds to a site's dashboard page (the sites capability's
    #: `SiteSection`s; one replaces a planned section of the same name).
    site_sections: Sequence[Any] = ()
    #: Restores into a new environment (the sites capability's `BackupSource`: a
    #: request to create an environment from a backup is handed to the first).
    backup_sources: Sequence[Any] = ()


@dataclass(frozen=True)
class Feature:
    """One capability: its events, tables, jobs, routes and pages."""

    name: str
    #: The event types it records (each event type belongs to one feature).
    events: tuple[type[Event], ...] = ()
    projectors: tuple[Projector, ...] = ()
    #: Tables it owns that are not projections, and why.
    non_projection_tables: Mapping[str, str] = field(default_factory=dict)
    #: Its job failure codes → retryable.
    failure_codes: Mapping[str, bool] = field(default_factory=dict)
    #: API route handlers and dashboard pages (Litestar handlers).
    routes: tuple[Any, ...] = ()
    pages: tuple[Any, ...] = ()
    #: A directory of its pages' Jinja templates (beside the dashboard shell's).
    templates: Path | None = None
    #: A directory of `NNNN_name.sql` migrations (one numbering with `db/migrations`).
    migrations: Path | None = None
    assemble: Callable[[Kernel], Parts] | None = None

    def parts(self, kernel: Kernel) -> Parts:
        return self.assemble(kernel) if self.assemble is not None else Parts()
