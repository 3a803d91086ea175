"""Periodic jobs: enqueued when due, never while one of the same type and scope is active.

A `Schedule` names a job type, its scope (site and/or node) and an interval.
`enqueue_due` runs in one transaction: for each schedule it skips when a job of
that type and scope is queued or running (the de-dup), or when the newest one
was created less than an interval ago, and otherwise enqueues it as
`system:scheduler`. The `Scheduler` service runs it whenever the next schedule falls due (and at
least every `max_sleep` seconds); a schedule that never ran first runs
`first_after_seconds` after the database was created (not after each start: a
daemon restarted more often than that would otherwise never run it), or after
the scheduler started if that is earlier (a clock set back). While a job of a
schedule's kind is queued or running, the schedule is not due: the next look
is at most `max_sleep` away. "Newest" is by queue order,
not by timestamp: when it was created "in the future" (the clock ran ahead and
was set back), the schedule runs at once and measures from that run, instead of
waiting for the wrong clock's time to come round.
The database is the schedule's memory, so a restart neither skips nor repeats
a run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pressluft.clock import Clock, parse_ts
from pressluft.db import Database, WriteTx
from pressluft.events import Meta
from pressluft.jobs.queue import JobSpec, NodeLock, enqueue
from pressluft.logs import get_logger

__all__ = ["SCHEDULER_ACTOR", "Schedule", "Scheduler", "enqueue_due", "installed_at", "next_due"]

log = get_logger("pressluft.jobs")

SCHEDULER_ACTOR = "system:scheduler"


@dataclass(frozen=True)
class Schedule:
    job_type: str
    every_seconds: int
    payload: dict[str, Any] = field(default_factory=dict)
    site_id: str | None = None
    node_id: str | None = None
    max_attempts: int = 3
    timeout_seconds: int = 1800
    #: With no job of its kind yet: how long after the database was created it first runs.
    first_after_seconds: int = 0
    #: How its job holds its node, when it has one (lock scopes, `jobs.queue`).
    node_lock: NodeLock = "shared"

    def due_at(self, last: str | None, started: datetime, now: datetime) -> datetime:
        if last is None:
            return started + timedelta(seconds=self.first_after_seconds)
        created = parse_ts(last)
        if created > now:  # made under a clock since set back: re-anchor now
            return now
        return created + timedelta(seconds=self.every_seconds)


_SCOPE = "job_type = ? AND site_id IS ? AND node_id IS ?"
_ACTIVE = f"SELECT 1 FROM jobs WHERE {_SCOPE} AND status IN ('queued', 'running') LIMIT 1"
#: The newest job of a schedule's kind, by queue order (`jobs_by_type`).
_NEWEST = f"SELECT created_at FROM jobs WHERE {_SCOPE} ORDER BY enqueued_seq DESC LIMIT 1"


def _active(conn: Any, s: Schedule) -> bool:
    return conn.execute(_ACTIVE, (s.job_type, s.site_id, s.node_id)).fetchone() is not None


def installed_at(conn: Any) -> datetime | None:
    """When the database was created (its first migration)."""
    (first,) = conn.execute("SELECT min(applied_at) FROM schema_migrations").fetchone()
    return None if first is None else parse_ts(first)


def _newest(conn: Any, s: Schedule) -> str | None:
    row = conn.execute(_NEWEST, (s.job_type, s.site_id, s.node_id)).fetchone()
    return None if row is None else str(row[0])


def enqueue_due(schedules: Sequence[Schedule], started: datetime) -> Callable[[WriteTx], list[str]]:
    """Enqueue every schedule that is due and not active; returns the new job ids."""

    def command(tx: WriteTx) -> list[str]:
        created: list[str] = []
        for s in schedules:
            if _active(tx.conn, s):
                continue
            if s.due_at(_newest(tx.conn, s), started, tx.now) > tx.now:
                continue
            spec = JobSpec(
                job_type=s.job_type,
                payload=s.payload,
                site_id=s.site_id,
                node_id=s.node_id,
                max_attempts=s.max_attempts,
                timeout_seconds=s.timeout_seconds,
                node_lock=s.node_lock,
            )
            created.append(enqueue(tx, spec, Meta(actor=SCHEDULER_ACTOR)))
        return created

    return command


def next_due(
    schedules: Sequence[Schedule], started: datetime, now: datetime
) -> Callable[[Any], datetime | None]:
    """When the earliest schedule without an active job falls due (None: none)."""

    def query(conn: Any) -> datetime | None:
        dues = [s.due_at(_newest(conn, s), started, now) for s in schedules if not _active(conn, s)]
        return min(dues, default=None)

    return query


class Scheduler:
    """The service that enqueues periodic jobs."""

    def __init__(self, db: Database, clock: Clock, *, max_sleep: float = 60.0) -> None:
        self.db = db
        self.clock = clock
        self.max_sleep = max_sleep
        self.schedules: list[Schedule] = []
        #: Set after every look at the schedules (what a caller can wait for).
        self.looked = asyncio.Event()

    def add(self, schedule: Schedule) -> None:
        self.schedules.append(schedule)

    async def run(self, stopping: asyncio.Event) -> None:
        started = self.clock.now()
        installed = await self.db.read(installed_at)
        if installed is not None:
            started = min(started, installed)
        while not stopping.is_set():
            created = await self.db.write(enqueue_due(self.schedules, started))
            self.looked.set()
            if created:
                log.info("scheduled %d periodic job(s)", len(created))
            wait = self.max_sleep
            now = self.clock.now()
            due = await self.db.read(next_due(self.schedules, started, now))
            if due is not None:
                wait = min(wait, max(1.0, (due - now).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)
