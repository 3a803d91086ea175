"""Jobs as the API and dashboard see them: listing, detail, cancel, retry, logs, diagnostics.

Reads come from the `jobs`/`job_attempts` projections and `job_leases`;
commands are the queue's (`pressluft.jobs.queue`). `wait_for_end` and
`follow_log` sleep on the runtime's per-job notifier (woken by the commit of
a job's events or log lines) and re-read the database, so a missed wake-up
delays but never loses anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import msgspec

from pressluft.db import Database, WriteTx
from pressluft.errors import BadRequest, NotFound
from pressluft.events import Meta
from pressluft.events.notify import KeyedNotifier
from pressluft.ids import is_uuid
from pressluft.jobs.builtin import SleepPayload
from pressluft.jobs.logs import JobLogLine, has_lines, read_lines, tail_lines
from pressluft.jobs.queue import STATUSES, TERMINAL, JobSpec, enqueue, scope_node_lock

__all__ = [
    "STATUSES",
    "DiagnosticJobRequest",
    "JobAccepted",
    "JobCancelResult",
    "JobLogPage",
    "JobPage",
    "JobQuery",
    "JobView",
    "diagnostic_command",
    "follow_log",
    "get_job",
    "list_jobs",
    "log_pruned",
    "read_log",
    "wait_for_end",
]


class JobAttemptView(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    started_at: str
    finished_at: str | None
    worker: str
    outcome: str | None
    error_code: str | None


class JobLeaseView(msgspec.Struct, frozen=True, kw_only=True):
    expires_at: str
    locked_by: str


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    job_type: str
    status: str
    site_id: str | None
    environment_id: str | None
    node_id: str | None
    payload: dict[str, Any]
    attempt_count: int
    max_attempts: int
    run_after: str | None
    locked_at: str | None
    locked_by: str | None
    started_at: str | None
    finished_at: str | None
    error_code: str | None
    error_message: str | None
    cancel_requested_at: str | None
    retry_of: str | None
    retried_by: str | None
    created_at: str
    updated_at: str
    attempts: list[JobAttemptView]
    lease: JobLeaseView | None
    #: Lines its log does not hold (`job.output_dropped`); 0 when the log is complete.
    output_lines_lost: int


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[JobView]
    next_before: int | None
    has_more: bool


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class JobCancelResult(msgspec.Struct, frozen=True, kw_only=True):
    success: bool = True
    # `succeeded`/`failed`: the job ended on its own before it stopped.
    status: Literal["cancelled", "cancel_requested", "succeeded", "failed"]
    job_id: str


class JobLogPage(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    lines: list[JobLogLine]
    next_after: int
    job_status: str
    #: Log retention deleted the job's lines (an empty log is never just empty:
    #: every job's first line is written when it is queued).
    pruned: bool = False


class JobQuery(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    job_type: str | None = None
    site_id: str | None = None
    node_id: str | None = None
    before: int | None = None
    limit: int = 50


_COLUMNS = (
    "j.id, j.job_type, j.status, j.site_id, j.environment_id, j.node_id, j.payload_json,"
    " j.attempt_count, j.max_attempts, j.run_after, j.locked_at, j.locked_by, j.started_at,"
    " j.finished_at, j.error_code, j.error_message, j.cancel_requested_at, j.retry_of,"
    " j.created_at, j.updated_at, coalesce(l.expires_at, j.lease_expires_at), j.enqueued_seq,"
    " (SELECT r.id FROM jobs r WHERE r.retry_of = j.id ORDER BY r.enqueued_seq LIMIT 1),"
    " j.output_lines_lost"
)
_FROM = "FROM jobs j LEFT JOIN job_leases l ON l.job_id = j.id AND l.lease_token = j.lease_token"


def _attempts(conn: sqlite3.Connection, ids: list[str]) -> dict[str, list[JobAttemptView]]:
    found: dict[str, list[JobAttemptView]] = {i: [] for i in ids}
    if not ids:
        return found
    marks = ",".join("?" * len(ids))
    for row in conn.execute(
        "SELECT job_id, attempt, started_at, finished_at, worker, outcome, error_code"
        f" FROM job_attempts WHERE job_id IN ({marks}) ORDER BY job_id, attempt",
        ids,
    ):
        found[row[0]].append(
            JobAttemptView(
                attempt=row[1],
                started_at=row[2],
                finished_at=row[3],
                worker=row[4],
                outcome=row[5],
                error_code=row[6],
            )
        )
    return found


def _views(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[JobView]:
    attempts = _attempts(conn, [r[0] for r in rows])
    views = []
    for r in rows:
        lease = JobLeaseView(expires_at=r[20], locked_by=r[11]) if r[2] == "running" else None
        views.append(
            JobView(
                id=r[0],
                job_type=r[1],
                status=r[2],
                site_id=r[3],
                environment_id=r[4],
                node_id=r[5],
                payload=msgspec.json.decode(r[6]),
                attempt_count=r[7],
                max_attempts=r[8],
                run_after=r[9],
                locked_at=r[10],
                locked_by=r[11],
                started_at=r[12],
                finished_at=r[13],
                error_code=r[14],
                error_message=r[15],
                cancel_requested_at=r[16],
                retry_of=r[17],
                retried_by=r[22],
                created_at=r[18],
                updated_at=r[19],
                attempts=attempts[r[0]],
                lease=lease,
                output_lines_lost=r[23],
            )
        )
    return views


def get_job(conn: sqlite3.Connection, job_id: str) -> JobView:
    if not is_uuid(job_id):
        raise NotFound(f"no job {job_id}")
    row = conn.execute(f"SELECT {_COLUMNS} {_FROM} WHERE j.id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return _views(conn, [row])[0]


def job_status(conn: sqlite3.Connection, job_id: str) -> str:
    if not is_uuid(job_id):
        raise NotFound(f"no job {job_id}")
    row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return str(row[0])


def list_jobs(conn: sqlite3.Connection, query: JobQuery) -> JobPage:
    where: list[str] = []
    params: list[object] = []
    for column in ("status", "job_type", "site_id", "node_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"j.{column} = ?")
            params.append(value)
    if query.before is not None:
        where.append("j.enqueued_seq < ?")
        params.append(query.before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} {_FROM} {clause} ORDER BY j.enqueued_seq DESC LIMIT ?",
        [*params, query.limit + 1],
    ).fetchall()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    return JobPage(
        items=_views(conn, rows),
        next_before=rows[-1][21] if has_more else None,
        has_more=has_more,
    )


def job_counts(conn: sqlite3.Connection, now: str) -> tuple[list[tuple[str, str, int]], int]:
    """Jobs by type and status, and how many queued jobs are due (for metrics)."""
    counts = conn.execute(
        "SELECT job_type, status, count(*) FROM jobs GROUP BY job_type, status"
    ).fetchall()
    (due,) = conn.execute(
        "SELECT count(*) FROM jobs WHERE status = 'queued'"
        " AND (run_after IS NULL OR run_after <= ?)",
        (now,),
    ).fetchone()
    return counts, int(due)


def log_pruned(conn: sqlite3.Connection, job_id: str) -> bool:
    """Whether log retention deleted the job's lines (a kept log has at least the
    line written when the job was queued)."""
    return not has_lines(conn, job_id)


def read_log(
    conn: sqlite3.Connection, job_id: str, *, after: int, limit: int, tail: int | None
) -> JobLogPage:
    status = job_status(conn, job_id)
    lines = (
        tail_lines(conn, job_id, tail)
        if tail is not None
        else read_lines(conn, job_id, after, limit)
    )
    next_after = lines[-1].seq if lines else after
    pruned = not lines and log_pruned(conn, job_id)
    return JobLogPage(
        job_id=job_id, lines=lines, next_after=next_after, job_status=status, pruned=pruned
    )


# -- diagnostics ----------------------------------------------------------------------


class DiagnosticJobRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    job_type: Literal["noop", "sleep"]
    site_id: str | None = None
    node_id: str | None = None
    # Unset unless sent: they belong to `sleep`, and `noop` refuses them.
    seconds: float | msgspec.UnsetType = msgspec.UNSET
    lines: int | msgspec.UnsetType = msgspec.UNSET
    outcome: Literal["succeed", "fail_retryable", "fail_fatal"] | msgspec.UnsetType = msgspec.UNSET
    max_attempts: int = 3
    timeout_seconds: int = 1800


#: The request fields that only `sleep` takes.
SLEEP_ONLY = ("seconds", "lines", "outcome")


def _check_diagnostic(request: DiagnosticJobRequest) -> None:
    errors = []
    for name in ("site_id", "node_id"):
        value = getattr(request, name)
        if value is not None and not is_uuid(value):
            errors.append({"field": name, "message": "must be a UUID", "in": "body"})
    bounds = {
        "seconds": (0, 3600),
        "lines": (0, 100_000),
        "max_attempts": (1, 10),
        "timeout_seconds": (1, 86_400),
    }
    for name, (low, high) in bounds.items():
        value = getattr(request, name)
        if value is msgspec.UNSET:
            continue
        if not low <= value <= high or value != value:  # NaN
            errors.append(
                {"field": name, "message": f"must be between {low} and {high}", "in": "body"}
            )
    if request.job_type == "noop":
        for name in SLEEP_ONLY:
            if getattr(request, name) is not msgspec.UNSET:
                message = "only for job_type sleep (noop ends at once and succeeds)"
                errors.append({"field": name, "message": message, "in": "body"})
    if errors:
        raise BadRequest("invalid diagnostic job", details={"errors": errors})


def diagnostic_command(
    request: DiagnosticJobRequest, meta: Meta
) -> Callable[[WriteTx], JobAccepted]:
    _check_diagnostic(request)
    payload: dict[str, Any] = {}
    if request.job_type == "sleep":
        given = {name: getattr(request, name) for name in SLEEP_ONLY}
        sleep = SleepPayload(**{k: v for k, v in given.items() if v is not msgspec.UNSET})
        payload = msgspec.to_builtins(sleep)
    spec = JobSpec(
        job_type=request.job_type,
        payload=payload,
        site_id=request.site_id,
        node_id=request.node_id,
        max_attempts=request.max_attempts,
        timeout_seconds=request.timeout_seconds,
        # As a real job of that scope would: alone on a node when it has no site
        # (a node's own job), its site alone and its node shared when it has one.
        node_lock=scope_node_lock(request.site_id, request.node_id),
    )

    def command(tx: WriteTx) -> JobAccepted:
        return JobAccepted(job_id=enqueue(tx, spec, meta))

    return command


# -- waiting and following --------------------------------------------------------------


async def wait_for_end(db: Database, changes: KeyedNotifier, job_id: str, within: float) -> str:
    """The job's status once it is terminal, or after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        changed = changes.watch(job_id)
        status = await db.read(lambda conn: job_status(conn, job_id))
        remaining = deadline - loop.time()
        if status in TERMINAL or remaining <= 0:
            return status
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


async def follow_log(
    db: Database,
    changes: KeyedNotifier,
    stopping: asyncio.Event,
    job_id: str,
    *,
    after: int,
    keepalive: float,
    batch: int = 500,
) -> AsyncIterator[JobLogLine | str | None]:
    """Lines after `after` as they are written; None for a keep-alive; finally the
    terminal status (a str) once every line has been sent."""
    cursor = after
    while not stopping.is_set():
        changed = changes.watch(job_id)

        def query(conn: sqlite3.Connection, cursor: int = cursor) -> tuple[list[JobLogLine], str]:
            # Status first: a terminal status read here means its last lines are
            # already committed, so the read after it sees them.
            status = job_status(conn, job_id)
            return read_lines(conn, job_id, cursor, batch), status

        lines, status = await db.read(query)
        for line in lines:
            yield line
            cursor = line.seq
        if len(lines) == batch:
            continue
        if status in TERMINAL:
            yield status
            return
        woke = asyncio.ensure_future(changed.wait())
        stop = asyncio.ensure_future(stopping.wait())
        try:
            done, _ = await asyncio.wait(
                {woke, stop}, timeout=keepalive, return_when="FIRST_COMPLETED"
            )
        finally:
            woke.cancel()
            stop.cancel()
        if not done:
            yield None
