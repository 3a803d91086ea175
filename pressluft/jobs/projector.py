"""Projector of job.* events into `jobs` and `job_attempts`.

Every transition is a guarded UPDATE: it applies only to the job in the state
the event expects — a worker's transition only to the running attempt holding
the event's lease token — and must change exactly one row, or the append fails
(`GuardFailed`). The commands check first and refuse with a typed error; the
guard is the backstop that makes a stale worker unable to change anything.

A job may hold a row of another aggregate (`holds_kind`, `holds_id`, `holds_as`):
`released_hold` tells that aggregate's projector what a failed or cancelled job
held, so it can fail the row by one generic rule without naming job types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import msgspec

from pressluft.events.projection import Envelope, Projector, one_row
from pressluft.jobs.events import (
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobEnqueued,
    JobFailed,
    JobHastened,
    JobLeaseExpired,
    JobOutputDropped,
    JobRetryScheduled,
    JobSucceeded,
    legacy_holds,
    scope_node_lock,
)

__all__ = ["JOBS_PROJECTOR", "Held", "on_job_end", "released_hold"]


def _enqueued(conn: sqlite3.Connection, e: JobEnqueued, env: Envelope) -> None:
    holds = e.holds or legacy_holds(e.job_type, e.environment_id, e.node_id)
    conn.execute(
        "INSERT INTO jobs (id, job_type, status, site_id, environment_id, node_id, payload_json,"
        " max_attempts, timeout_seconds, run_after, retry_of, enqueued_seq, created_at,"
        " updated_at, state_version, node_lock, unique_key, holds_kind, holds_id, holds_as)"
        " VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.job_id,
            e.job_type,
            e.site_id,
            e.environment_id,
            e.node_id,
            msgspec.json.encode(e.payload).decode(),
            e.max_attempts,
            e.timeout_seconds,
            e.run_after,
            e.retry_of,
            env.seq,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
            # Events from before lock scopes name no lock: derived from the scope,
            # the same way on every replay (and as migration 0015 filled the column).
            e.node_lock or scope_node_lock(e.site_id, e.node_id),
            e.unique_key,
            None if holds is None else holds.aggregate,
            None if holds is None else holds.id,
            None if holds is None else holds.status,
        ),
    )


# A claim takes the job's site exclusively and its node as its `node_lock` says:
# an exclusive job alone on its node, a shared one beside shared ones only. (The
# cap of site jobs per node and the bar on jobs younger than a due exclusive one
# are the claim's policy — a setting and a queue order — not an invariant of the
# history, so a replay does not judge them.)
_LOCKS_FREE = (
    " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.site_id = jobs.site_id)"
    " AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.node_id = jobs.node_id"
    "   AND (jobs.node_lock = 'exclusive' OR r.node_lock = 'exclusive'))"
)


class Held(NamedTuple):
    """A row an ended job held: its id, the status it held it in, the job's code."""

    id: str
    status: str
    error_code: str


def released_hold(conn: sqlite3.Connection, job_id: str, aggregate: str) -> Held | None:
    """What the job — just ended failed or cancelled (its row already says so: this
    projector runs first) — held of `aggregate`, for that aggregate's projector to
    fail the row if it still has the held status. None when it held nothing of it,
    or when another job holding the same row in the same status still runs or has
    begun and waits to retry (that one decides). The code: the job's error code
    (`LEASE_EXPIRED` when its worker was lost for good), `CANCELLED` when cancelled."""
    row = conn.execute(
        "SELECT holds_id, holds_as, CASE status WHEN 'cancelled' THEN 'CANCELLED'"
        " ELSE coalesce(error_code, 'HANDLER_ERROR') END FROM jobs j"
        " WHERE id = ? AND holds_kind = ? AND status IN ('failed', 'cancelled')"
        " AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.holds_kind = j.holds_kind"
        "   AND o.holds_id = j.holds_id AND o.holds_as = j.holds_as AND o.id != j.id"
        "   AND (o.status = 'running' OR (o.status = 'queued' AND o.attempt_count > 0)))",
        (job_id, aggregate),
    ).fetchone()
    return None if row is None else Held(str(row[0]), str(row[1]), str(row[2]))


def on_job_end(
    release: Callable[[sqlite3.Connection, str, Envelope], None],
) -> Mapping[type[Any], Callable[[sqlite3.Connection, Any, Envelope], None]]:
    """The handlers a projector of held rows adds: `release(conn, job_id, envelope)`
    once a job ended failed or cancelled — failed for good, cancelled, or its worker
    lost for good — to fail the row it held (`released_hold` says which)."""

    def failed(conn: sqlite3.Connection, e: JobFailed, env: Envelope) -> None:
        release(conn, e.job_id, env)

    def cancelled(conn: sqlite3.Connection, e: JobCancelled, env: Envelope) -> None:
        release(conn, e.job_id, env)

    def lease_expired(conn: sqlite3.Connection, e: JobLeaseExpired, env: Envelope) -> None:
        if e.outcome != "requeued":
            release(conn, e.job_id, env)

    return {JobFailed: failed, JobCancelled: cancelled, JobLeaseExpired: lease_expired}


def _claimed(conn: sqlite3.Connection, e: JobClaimed, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET status = 'running', attempt_count = ?, lease_token = ?,"
        " lease_expires_at = ?, locked_at = ?, locked_by = ?, started_at = ?, run_after = NULL,"
        " updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'queued' AND attempt_count = ? - 1" + _LOCKS_FREE,
        (
            e.attempt,
            e.lease_token,
            e.lease_expires_at,
            env.recorded_at,
            e.worker,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
            e.job_id,
            e.attempt,
        ),
    )
    one_row(cursor, f"claim of {e.job_id}")
    conn.execute(
        "INSERT INTO job_attempts (job_id, attempt, started_at, worker) VALUES (?, ?, ?, ?)",
        (e.job_id, e.attempt, env.recorded_at, e.worker),
    )


def _end_attempt(
    conn: sqlite3.Connection, job_id: str, attempt: int, outcome: str, code: str | None, at: str
) -> None:
    cursor = conn.execute(
        "UPDATE job_attempts SET finished_at = ?, outcome = ?, error_code = ?"
        " WHERE job_id = ? AND attempt = ? AND finished_at IS NULL",
        (at, outcome, code, job_id, attempt),
    )
    one_row(cursor, f"attempt {attempt} of {job_id}")


_RELEASE = (
    "lease_token = NULL, lease_expires_at = NULL, locked_at = NULL, locked_by = NULL,"
    " started_at = NULL"
)
_HELD = "WHERE id = ? AND status = 'running' AND lease_token = ? AND attempt_count = ?"


def _succeeded(conn: sqlite3.Connection, e: JobSucceeded, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET status = 'succeeded', finished_at = ?, lease_token = NULL,"
        f" error_code = NULL, error_message = NULL, updated_at = ?, state_version = ? {_HELD}",
        (env.recorded_at, env.recorded_at, env.stream_version, e.job_id, e.lease_token, e.attempt),
    )
    one_row(cursor, f"success of {e.job_id}")
    _end_attempt(conn, e.job_id, e.attempt, "succeeded", None, env.recorded_at)


def _retry_scheduled(conn: sqlite3.Connection, e: JobRetryScheduled, env: Envelope) -> None:
    cursor = conn.execute(
        f"UPDATE jobs SET status = 'queued', {_RELEASE}, run_after = ?, error_code = ?,"
        f" error_message = ?, updated_at = ?, state_version = ? {_HELD}",
        (
            e.run_after,
            e.error_code,
            e.error_message,
            env.recorded_at,
            env.stream_version,
            e.job_id,
            e.lease_token,
            e.attempt,
        ),
    )
    one_row(cursor, f"retry of {e.job_id}")
    _end_attempt(conn, e.job_id, e.attempt, "retry_scheduled", e.error_code, env.recorded_at)


def _failed(conn: sqlite3.Connection, e: JobFailed, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET status = 'failed', finished_at = ?, lease_token = NULL, error_code = ?,"
        f" error_message = ?, updated_at = ?, state_version = ? {_HELD}",
        (
            env.recorded_at,
            e.error_code,
            e.error_message,
            env.recorded_at,
            env.stream_version,
            e.job_id,
            e.lease_token,
            e.attempt,
        ),
    )
    one_row(cursor, f"failure of {e.job_id}")
    _end_attempt(conn, e.job_id, e.attempt, "failed", e.error_code, env.recorded_at)


def _output_dropped(conn: sqlite3.Connection, e: JobOutputDropped, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET output_lines_lost = output_lines_lost + ?, updated_at = ?,"
        f" state_version = ? {_HELD}",
        (e.lines, env.recorded_at, env.stream_version, e.job_id, e.lease_token, e.attempt),
    )
    one_row(cursor, f"output loss of {e.job_id}")


def _hastened(conn: sqlite3.Connection, e: JobHastened, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET run_after = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'queued' AND run_after > ?",
        (env.recorded_at, env.recorded_at, env.stream_version, e.job_id, env.recorded_at),
    )
    one_row(cursor, f"hastening of {e.job_id}")


def _cancel_requested(conn: sqlite3.Connection, e: JobCancelRequested, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE jobs SET cancel_requested_at = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status IN ('queued', 'running') AND cancel_requested_at IS NULL",
        (env.recorded_at, env.recorded_at, env.stream_version, e.job_id),
    )
    one_row(cursor, f"cancel request of {e.job_id}")


def _cancelled(conn: sqlite3.Connection, e: JobCancelled, env: Envelope) -> None:
    if e.lease_token is None:
        cursor = conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, run_after = NULL,"
            " updated_at = ?, state_version = ? WHERE id = ? AND status = 'queued'",
            (env.recorded_at, env.recorded_at, env.stream_version, e.job_id),
        )
        one_row(cursor, f"cancellation of queued {e.job_id}")
        return
    cursor = conn.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_token = NULL,"
        f" updated_at = ?, state_version = ? {_HELD}",
        (env.recorded_at, env.recorded_at, env.stream_version, e.job_id, e.lease_token, e.attempt),
    )
    one_row(cursor, f"cancellation of running {e.job_id}")
    _end_attempt(conn, e.job_id, e.attempt, "cancelled", None, env.recorded_at)


def _lease_expired(conn: sqlite3.Connection, e: JobLeaseExpired, env: Envelope) -> None:
    params = (env.recorded_at, env.stream_version, e.job_id, e.lease_token, e.attempt)
    code = "LEASE_EXPIRED" if e.counted else "DAEMON_STOPPED"
    if e.outcome == "requeued":
        # A planned stop (not counted) gives the attempt back: one more is allowed.
        message = (
            f"the worker went away ({e.reason})"
            if e.counted
            else f"the daemon stopped during attempt {e.attempt}; not counted"
        )
        cursor = conn.execute(
            f"UPDATE jobs SET status = 'queued', {_RELEASE}, run_after = ?,"
            " max_attempts = max_attempts + ?, error_code = ?, error_message = ?,"
            f" updated_at = ?, state_version = ? {_HELD}",
            (e.run_after, 0 if e.counted else 1, code, message, *params),
        )
    elif e.outcome == "cancelled":
        cursor = conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_token = NULL,"
            f" updated_at = ?, state_version = ? {_HELD}",
            (env.recorded_at, *params),
        )
    else:
        cursor = conn.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?, lease_token = NULL,"
            " error_code = 'LEASE_EXPIRED', error_message = ?, updated_at = ?,"
            f" state_version = ? {_HELD}",
            (env.recorded_at, f"the worker went away ({e.reason}); no attempts left", *params),
        )
    one_row(cursor, f"rescue of {e.job_id}")
    _end_attempt(conn, e.job_id, e.attempt, "lease_expired", code, env.recorded_at)


JOBS_PROJECTOR = Projector(
    name="jobs",
    tables=("jobs", "job_attempts"),
    handlers={
        JobEnqueued: _enqueued,
        JobClaimed: _claimed,
        JobSucceeded: _succeeded,
        JobRetryScheduled: _retry_scheduled,
        JobFailed: _failed,
        JobCancelRequested: _cancel_requested,
        JobCancelled: _cancelled,
        JobLeaseExpired: _lease_expired,
        JobOutputDropped: _output_dropped,
        JobHastened: _hastened,
    },
)
