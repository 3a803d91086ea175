"""The operations service routes and pages call: the job queue's views and commands,
the event feed, the audit, the counters and the Prometheus metrics.

It owns the read/write boundary: routes hand it parsed queries and the request's
`Retry`, and get views or `Answered` results back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pressluft.acting import Context
from pressluft.clock import Clock, format_ts
from pressluft.config import Config
from pressluft.contexts.operations.audit import AuditPage, AuditQuery, query_audit
from pressluft.contexts.operations.counters import Counters, read_counters
from pressluft.contexts.operations.feed import EventOut, EventPage, follow_events, list_events
from pressluft.contexts.operations.jobs import (
    DiagnosticJobRequest,
    JobAccepted,
    JobCancelResult,
    JobLogPage,
    JobPage,
    JobQuery,
    JobView,
    diagnostic_command,
    follow_log,
    get_job,
    job_counts,
    list_jobs,
    log_pruned,
    read_log,
    wait_for_end,
)
from pressluft.db import Database
from pressluft.events.notify import KeyedNotifier, LogNotifier
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer
from pressluft.jobs.logs import JobLogLine
from pressluft.jobs.queue import STATUSES as JOB_STATUSES
from pressluft.jobs.queue import cancel, retry
from pressluft.metrics import Metrics

__all__ = ["CANCEL_WAIT_SECONDS", "LOG_PAGE", "Operations"]

#: A running job reaches `cancelled` within this; the cancel answer waits for it.
CANCEL_WAIT_SECONDS = 5.0

#: Log lines per page unless `limit` says otherwise.
LOG_PAGE = 500

#: How a job asked to stop ended: cancelled, or on its own before it stopped.
_ENDINGS: dict[str, Literal["cancelled", "succeeded", "failed"]] = {
    "cancelled": "cancelled",
    "succeeded": "succeeded",
    "failed": "failed",
}


class Operations:
    """Jobs, events, audit and counters of one daemon."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        writer: Writer,
        config: Config,
        *,
        notifier: LogNotifier,
        job_changes: KeyedNotifier,
        stopping: asyncio.Event,
        metrics: Metrics,
        job_kinds: Callable[[], list[str]],
    ) -> None:
        self._db = db
        self._clock = clock
        self._writer = writer
        self._config = config
        self._notifier = notifier
        self._job_changes = job_changes
        self._stopping = stopping
        self._metrics = metrics
        self._job_kinds = job_kinds

    @property
    def log_retention_days(self) -> int:
        return self._config.job_log_retention_days

    # -- jobs --------------------------------------------------------------------------

    async def jobs(self, query: JobQuery) -> JobPage:
        # Kept until the next commit: a page depends only on the database and the query.
        return await self._db.read_cached(("listJobs", query), lambda conn: list_jobs(conn, query))

    async def job(self, job_id: str) -> JobView:
        return await self._db.read(lambda conn: get_job(conn, job_id))

    async def job_and_log_state(self, job_id: str) -> tuple[JobView, bool]:
        """The job, and whether its log lines were pruned (one read)."""
        return await self._db.read(lambda conn: (get_job(conn, job_id), log_pruned(conn, job_id)))

    async def cancel(
        self, job_id: str, ctx: Context, retry_: Retry | None
    ) -> Answered[JobCancelResult]:
        """Ask the job to stop; a running one is given `CANCEL_WAIT_SECONDS` to end."""
        command = cancel(job_id, ctx.meta())

        def to_result(tx: Any) -> JobCancelResult:
            status = command(tx)
            ended = status == "cancelled"
            return JobCancelResult(
                status="cancelled" if ended else "cancel_requested", job_id=job_id
            )

        done = await self._writer.run(to_result, JobCancelResult, 200, retry_)
        if done.value.status != "cancel_requested":
            return done
        final = await wait_for_end(self._db, self._job_changes, job_id, CANCEL_WAIT_SECONDS)
        ended = _ENDINGS.get(final)
        if ended is None:
            return done
        return Answered(JobCancelResult(status=ended, job_id=job_id), replayed=done.replayed)

    async def retry(self, job_id: str, ctx: Context, retry_: Retry | None) -> Answered[JobAccepted]:
        command = retry(job_id, ctx.meta())

        def accepted(tx: Any) -> JobAccepted:
            return JobAccepted(job_id=command(tx))

        return await self._writer.run(accepted, JobAccepted, 202, retry_)

    async def diagnostic(
        self, request: DiagnosticJobRequest, ctx: Context, retry_: Retry | None
    ) -> Answered[JobAccepted]:
        command = diagnostic_command(request, ctx.meta())
        return await self._writer.run(command, JobAccepted, 202, retry_)

    async def log(
        self, job_id: str, *, after: int | None, limit: int | None, tail: int | None
    ) -> JobLogPage:
        return await self._db.read(
            lambda conn: read_log(
                conn, job_id, after=after or 0, limit=limit or LOG_PAGE, tail=tail
            )
        )

    def follow_log(self, job_id: str, *, after: int) -> AsyncIterator[JobLogLine | str | None]:
        """The job's log lines from `after` on, live; a str when the job has ended,
        None for a keep-alive."""
        return follow_log(
            self._db,
            self._job_changes,
            self._stopping,
            job_id,
            after=after,
            keepalive=self._config.sse_keepalive_seconds,
        )

    # -- the event feed, the audit, the counters ------------------------------------------

    async def events(
        self, *, after: int, limit: int, stream: str | None = None, type_: str | None = None
    ) -> EventPage:
        return await list_events(self._db, after=after, limit=limit, stream=stream, type_=type_)

    def follow_events(
        self, *, after: int, stream: str | None, type_: str | None
    ) -> AsyncIterator[EventOut | None]:
        """Events from `after` on, live; None for a keep-alive."""
        return follow_events(
            self._db,
            self._notifier,
            self._stopping,
            after=after,
            stream=stream,
            type_=type_,
            keepalive=self._config.sse_keepalive_seconds,
        )

    async def audit(self, query: AuditQuery) -> AuditPage:
        return await self._db.read_cached(
            ("listAudit", query), lambda conn: query_audit(conn, query)
        )

    async def counters(self) -> Counters:
        return await read_counters(self._db)

    async def prometheus(self) -> bytes:
        """The daemon's metrics in the Prometheus text format, the job gauges fresh."""
        now = format_ts(self._clock.now())
        counts, due = await self._db.read(lambda conn: job_counts(conn, now))
        self._metrics.set_jobs(counts, due, self._job_kinds(), JOB_STATUSES)
        return self._metrics.render()
