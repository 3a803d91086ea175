"""The queue's commands. Each runs inside one transaction (`Database.write` or `write_now`).

    enqueue      append job.enqueued inside the caller's transaction (the outbox:
                 a command's own events and its job commit together or not at all);
                 a unique job already queued or running is answered, not repeated
                 (made due now if it waits out a retry: job.hastened;
                 active_unique: ask before appending events of one's own)
    claim        take the oldest runnable jobs whose locks are free (lock scopes,
                 below); each gets a fresh lease token (job.claimed)
    heartbeat    extend a running attempt's lease (liveness, not an event);
    renew        the same for every lease a worker pool holds, in one transaction
    finish       a worker's outcome: succeeded, retry_scheduled, failed, cancelled
                 (finish_and_claim: and the next job for the freed slot, same transaction)
    cancel       queued → cancelled at once; running → cancel_requested
    rescue       running attempts whose lease expired (or all, at start-up)
                 → requeued / failed / cancelled (job.lease_expired)
    retry        a failed or cancelled job again, as a new job (retry_of)

Every worker transition presents the attempt's lease token; without it the
command raises `LeaseLost` and changes nothing (and the projector's guarded
UPDATE would refuse anyway).

Lock scopes: a job runs on a node (`node_id`) and holds locks. A site's job
(`site_id`) holds its site exclusively — never two running jobs of one site —
and its node as its `node_lock` says. `exclusive` (node mutations: provision,
decommission, create, start, stop, re-pin) runs alone on its node; `shared`
runs beside other shared jobs, never beside an exclusive one. At most
`node_site_jobs` site jobs run at once on one node (a shared job without a
site, the read-only check, is not counted). A queued exclusive job that is due
bars the shared jobs of its node enqueued after it from starting, so a stream
of site jobs cannot starve a provisioning.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import msgspec

from pressluft.clock import format_ts
from pressluft.db import WriteTx
from pressluft.errors import Conflict, NotFound
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_ordered_id
from pressluft.jobs.events import (
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobEnqueued,
    JobFailed,
    JobHastened,
    JobHolds,
    JobLeaseExpired,
    JobRetried,
    JobRetryScheduled,
    JobSucceeded,
    NodeLock,
    scope_node_lock,
)
from pressluft.jobs.logs import LeaseLost, attempt_output_tail, first_line, system_line

__all__ = [
    "NODE_SITE_JOBS",
    "STATUSES",
    "TERMINAL",
    "Claim",
    "JobNotCancellable",
    "JobSpec",
    "JobWake",
    "NodeLock",
    "Outcome",
    "RescueReason",
    "RescueScope",
    "Rescued",
    "active_unique",
    "cancel",
    "claim",
    "enqueue",
    "finish",
    "finish_and_claim",
    "heartbeat",
    "renew",
    "require_lease",
    "rescue",
    "retry",
    "scope_node_lock",
    "unique_key",
]

#: A job's statuses (the `jobs.status` CHECK), and the ones it ends in.
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")


class JobNotCancellable(Conflict):
    """The job already ended."""

    code = "job_not_cancellable"


class JobWake(msgspec.Struct, frozen=True):
    """Published after commit: the queue changed (wakes the worker pool)."""

    reason: str


class JobSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What to run, where, and what it locks."""

    job_type: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    site_id: str | None = None
    environment_id: str | None = None
    node_id: str | None = None
    max_attempts: int = 3
    timeout_seconds: int = 1800
    run_after: str | None = None
    retry_of: str | None = None
    #: How it holds its node (see the module's lock scopes). None: from its scope
    #: (`scope_node_lock`: alone on a node without a site, shared with one) —
    #: the commands name it where they build the spec.
    node_lock: NodeLock | None = None
    #: At most one queued or running job of this type and target (`unique_key`):
    #: enqueueing another answers the active one.
    unique: bool = False
    #: What the job holds while it runs: (aggregate, id, status), e.g.
    #: ("environment", X, "cloning") — failed with the job's code if the job fails.
    holds: tuple[str, str, str] | None = None

    @property
    def target(self) -> str | None:
        """What the job acts on: its environment, else its site, else its node."""
        return self.environment_id or self.site_id or self.node_id


#: The `node_site_jobs` setting's default: site jobs running at once on one node.
NODE_SITE_JOBS = 2


def unique_key(job_type: str, target: str | None) -> str:
    """The key of a unique job: `<job_type>:<target>` (a job with no target: one per type)."""
    return f"{job_type}:{target or ''}"


def active_unique(conn: sqlite3.Connection, job_type: str, target: str | None) -> str | None:
    """The queued or running unique job of this type and target, if any. A command
    that appends events of its own before enqueueing a unique job asks this first:
    when a job is active it answers that job and appends nothing."""
    row = conn.execute(
        "SELECT id FROM jobs WHERE unique_key = ? AND status IN ('queued', 'running')",
        (unique_key(job_type, target),),
    ).fetchone()
    return None if row is None else str(row[0])


def enqueue(tx: WriteTx, spec: JobSpec, meta: Meta) -> str:
    """Queue a job inside the caller's transaction; returns its id — or, for a
    unique job of which one is queued or running already, that job's id, and no
    job is added (the partial unique index `jobs_one_active_per_unique_key` would
    refuse a second). Nothing is appended then, unless the active job waits out
    a retry's backoff: it is made due now (`job.hastened`)."""
    key = None
    if spec.unique:
        key = unique_key(spec.job_type, spec.target)
        active = active_unique(tx.conn, spec.job_type, spec.target)
        if active is not None:
            _hasten(tx, active, meta)
            return active
    job_id = new_ordered_id()
    event = JobEnqueued(
        job_id=job_id,
        job_type=spec.job_type,
        payload=spec.payload,
        max_attempts=spec.max_attempts,
        timeout_seconds=spec.timeout_seconds,
        site_id=spec.site_id,
        environment_id=spec.environment_id,
        node_id=spec.node_id,
        run_after=spec.run_after,
        retry_of=spec.retry_of,
        node_lock=spec.node_lock or scope_node_lock(spec.site_id, spec.node_id),
        unique_key=key,
        holds=None
        if spec.holds is None
        else JobHolds(aggregate=spec.holds[0], id=spec.holds[1], status=spec.holds[2]),
    )
    append(tx, f"job:{job_id}", NO_STREAM, [event], meta)
    first_line(tx, job_id, f"queued ({spec.job_type})")
    tx.publish(JobWake("enqueued"))
    return job_id


def _hasten(tx: WriteTx, job_id: str, meta: Meta) -> None:
    """A request for an active unique job that waits out a retry's backoff (a
    check that failed before the operator authorized the key) makes it due now:
    what was asked for runs now, not in up to 15 minutes."""
    row = tx.conn.execute(
        "SELECT run_after, attempt_count FROM jobs WHERE id = ? AND status = 'queued'"
        " AND run_after > ?",
        (job_id, tx.now_ts),
    ).fetchone()
    if row is None:
        return
    was, attempt = row
    append(tx, f"job:{job_id}", None, [JobHastened(job_id=job_id, run_after_was=was)], meta)
    system_line(tx, job_id, attempt, f"asked for again: due now (was {was})")
    tx.publish(JobWake("hastened"))


@dataclass(frozen=True)
class Claim:
    """A claimed attempt: what a worker needs to run it, and its lease."""

    job_id: str
    job_type: str
    attempt: int
    max_attempts: int
    lease_token: str
    payload: dict[str, Any]
    site_id: str | None
    environment_id: str | None
    node_id: str | None
    timeout_seconds: int
    correlation_id: str | None
    #: When it became runnable (enqueued, or its retry fell due): for claim latency.
    ready_at: str
    claimed_at: str


# The oldest queued job that is due and whose locks are free (the module's lock
# scopes). A job without a node skips the node's terms, one without a site the
# site's. Every lookup is an index probe: `jobs_one_running_per_site`,
# `jobs_running_by_node` (a node's running jobs, their locks and sites),
# `jobs_queued_exclusive`. The correlation id comes from the job.enqueued event
# (the job's row is keyed by its seq).
_CANDIDATE = """
SELECT id, job_type, attempt_count, max_attempts, payload_json, site_id, environment_id,
       node_id, timeout_seconds, max(created_at, coalesce(run_after, '')),
       (SELECT json_extract(e.meta, '$.correlation_id') FROM events e WHERE e.seq = j.enqueued_seq)
FROM jobs j
WHERE status = 'queued' AND (run_after IS NULL OR run_after <= :now)
  AND (site_id IS NULL OR NOT EXISTS
       (SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.site_id = j.site_id))
  AND (node_id IS NULL OR (
       CASE WHEN node_lock = 'exclusive' THEN NOT EXISTS
            (SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.node_id = j.node_id)
       ELSE NOT EXISTS
            (SELECT 1 FROM jobs r WHERE r.status = 'running' AND r.node_id = j.node_id
               AND r.node_lock = 'exclusive')
         AND NOT EXISTS
            (SELECT 1 FROM jobs q WHERE q.status = 'queued' AND q.node_lock = 'exclusive'
               AND q.node_id = j.node_id AND q.enqueued_seq < j.enqueued_seq
               AND (q.run_after IS NULL OR q.run_after <= :now))
       END
       AND (site_id IS NULL OR
            (SELECT count(*) FROM jobs r WHERE r.status = 'running' AND r.node_id = j.node_id
               AND r.site_id IS NOT NULL) < :node_site_jobs)))
ORDER BY enqueued_seq
LIMIT 1
"""


Claimed = tuple[list["Claim"], str | None]


def claim(
    limit: int,
    worker: str,
    lease_seconds: float,
    *,
    next_due: bool = True,
    node_site_jobs: int = NODE_SITE_JOBS,
) -> Callable[[WriteTx], Claimed]:
    """Claim up to `limit` runnable jobs, oldest first, for `worker`, at most
    `node_site_jobs` site jobs running on one node. Also returns when the next
    queued job falls due (its `run_after`), for the pool's sleep (None when not
    asked for: `next_due=False`)."""
    want_next_due = next_due
    params = {"node_site_jobs": node_site_jobs}

    def command(tx: WriteTx) -> Claimed:
        claims: list[Claim] = []
        expires_at = format_ts(tx.now + timedelta(seconds=lease_seconds))
        for _ in range(limit):
            row = tx.conn.execute(_CANDIDATE, {**params, "now": tx.now_ts}).fetchone()
            if row is None:
                break
            (job_id, job_type, done, max_attempts, payload, site_id, environment_id, node_id,
             timeout, ready_at, correlation) = row  # fmt: skip
            attempt = done + 1
            token = secrets.token_hex(16)
            event = JobClaimed(
                job_id=job_id,
                attempt=attempt,
                worker=worker,
                lease_token=token,
                lease_expires_at=expires_at,
            )
            append(tx, f"job:{job_id}", None, [event], _worker_meta(worker, correlation))
            system_line(tx, job_id, attempt, f"attempt {attempt} of {max_attempts} started")
            claims.append(
                Claim(
                    job_id=job_id,
                    job_type=job_type,
                    attempt=attempt,
                    max_attempts=max_attempts,
                    lease_token=token,
                    payload=msgspec.json.decode(payload),
                    site_id=site_id,
                    environment_id=environment_id,
                    node_id=node_id,
                    timeout_seconds=timeout,
                    correlation_id=correlation,
                    ready_at=ready_at,
                    claimed_at=tx.now_ts,
                )
            )
        if not want_next_due:
            return claims, None
        (due,) = tx.conn.execute(
            "SELECT min(run_after) FROM jobs WHERE status = 'queued' AND run_after > ?",
            (tx.now_ts,),
        ).fetchone()
        return claims, due

    return command


def _worker_meta(worker: str, correlation_id: str | None) -> Meta:
    return Meta(actor=f"system:worker:{worker}", correlation_id=correlation_id)


def _held(
    conn: sqlite3.Connection, job_id: str, token: str, attempt: int
) -> tuple[int, str | None]:
    row = conn.execute(
        "SELECT max_attempts, cancel_requested_at FROM jobs WHERE id = ? AND status = 'running'"
        " AND lease_token = ? AND attempt_count = ?",
        (job_id, token, attempt),
    ).fetchone()
    if row is None:
        raise LeaseLost(f"job {job_id}: attempt {attempt} no longer holds its lease")
    return int(row[0]), row[1]


def require_lease(conn: sqlite3.Connection, job_id: str, token: str, attempt: int) -> None:
    """Fence a handler's own writes (domain events): LeaseLost unless the attempt
    still holds its lease — a stale worker changes nothing."""
    _held(conn, job_id, token, attempt)


def heartbeat(
    job_id: str, token: str, attempt: int, lease_seconds: float
) -> Callable[[WriteTx], str]:
    """Extend the attempt's lease; LeaseLost if it was taken away."""

    def command(tx: WriteTx) -> str:
        return _extend(tx, job_id, token, attempt, lease_seconds)

    return command


def renew(
    leases: list[tuple[str, str, int]], lease_seconds: float
) -> Callable[[WriteTx], set[str]]:
    """Extend many leases (job id, token, attempt) at once; returns the tokens that
    were taken away."""

    def command(tx: WriteTx) -> set[str]:
        lost = set()
        for job_id, token, attempt in leases:
            try:
                _extend(tx, job_id, token, attempt, lease_seconds)
            except LeaseLost:
                lost.add(token)
        return lost

    return command


def _extend(tx: WriteTx, job_id: str, token: str, attempt: int, lease_seconds: float) -> str:
    """Extend a held lease. The claim's expiry lives in the `jobs` row; the first
    renewal writes the attempt's `job_leases` row (a job that ends sooner never
    writes one), later ones move it."""
    _held(tx.conn, job_id, token, attempt)
    expires_at = format_ts(tx.now + timedelta(seconds=lease_seconds))
    tx.conn.execute(
        "INSERT INTO job_leases (job_id, lease_token, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (job_id) DO UPDATE SET lease_token = excluded.lease_token,"
        " expires_at = excluded.expires_at",
        (job_id, token, expires_at),
    )
    return expires_at


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the worker saw it."""

    kind: Literal["succeeded", "failed", "cancelled"]
    code: str | None = None
    message: str | None = None
    retryable: bool = False
    backoff_seconds: int = 60


def finish(claim_: Claim, outcome: Outcome, worker: str) -> Callable[[WriteTx], str]:
    """Record an attempt's outcome; returns the job's new status. LeaseLost if stale."""
    c = claim_

    def command(tx: WriteTx) -> str:
        max_attempts, cancel_requested = _held(tx.conn, c.job_id, c.lease_token, c.attempt)
        tx.conn.execute("DELETE FROM job_leases WHERE job_id = ?", (c.job_id,))
        meta = _worker_meta(worker, c.correlation_id)
        stream = f"job:{c.job_id}"
        if outcome.kind == "succeeded":
            system_line(tx, c.job_id, c.attempt, f"attempt {c.attempt} succeeded")
            append(
                tx,
                stream,
                None,
                [JobSucceeded(job_id=c.job_id, attempt=c.attempt, lease_token=c.lease_token)],
                meta,
            )
            status = "succeeded"
        elif outcome.kind == "cancelled":
            system_line(tx, c.job_id, c.attempt, "cancelled")
            event = JobCancelled(job_id=c.job_id, attempt=c.attempt, lease_token=c.lease_token)
            append(tx, stream, None, [event], meta)
            status = "cancelled"
        else:
            code = outcome.code or "HANDLER_ERROR"
            system_line(
                tx, c.job_id, c.attempt, f"attempt {c.attempt} failed: {code}: {outcome.message}"
            )
            message = attempt_output_tail(tx.conn, c.job_id, c.attempt)
            again = outcome.retryable and c.attempt < max_attempts and cancel_requested is None
            if again:
                run_after = format_ts(tx.now + timedelta(seconds=outcome.backoff_seconds))
                system_line(tx, c.job_id, c.attempt, f"retry scheduled for {run_after}")
                event_r = JobRetryScheduled(
                    job_id=c.job_id,
                    attempt=c.attempt,
                    lease_token=c.lease_token,
                    error_code=code,
                    error_message=message,
                    run_after=run_after,
                )
                append(tx, stream, None, [event_r], meta)
                status = "queued"
            else:
                event_f = JobFailed(
                    job_id=c.job_id,
                    attempt=c.attempt,
                    lease_token=c.lease_token,
                    error_code=code,
                    error_message=message,
                )
                append(tx, stream, None, [event_f], meta)
                status = "failed"
        tx.publish(JobWake(status))
        return status

    return command


def finish_and_claim(
    claim_: Claim,
    outcome: Outcome,
    worker: str,
    more: int,
    lease_seconds: float,
    *,
    node_site_jobs: int = NODE_SITE_JOBS,
) -> Callable[[WriteTx], tuple[str, list[Claim]]]:
    """`finish`, then claim up to `more` jobs for the slot it frees — one transaction
    where there would be two (a busy pool feeds itself)."""
    end = finish(claim_, outcome, worker)
    take = claim(more, worker, lease_seconds, next_due=False, node_site_jobs=node_site_jobs)

    def command(tx: WriteTx) -> tuple[str, list[Claim]]:
        status = end(tx)
        claims, _ = take(tx) if more > 0 else ([], None)
        return status, claims

    return command


def cancel(job_id: str, meta: Meta) -> Callable[[WriteTx], str]:
    """Cancel a queued job at once, or ask a running one to stop; returns the new status."""
    if not is_uuid(job_id):
        raise NotFound(f"no job {job_id}")

    def command(tx: WriteTx) -> str:
        row = tx.conn.execute(
            "SELECT status, attempt_count, cancel_requested_at FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}")
        status, attempt, requested = row
        if status in TERMINAL:
            raise JobNotCancellable(
                f"job {job_id} already {status}",
                details={"status": status, "hint": "only queued or running jobs can be cancelled"},
            )
        stream = f"job:{job_id}"
        if status == "queued":
            append(tx, stream, None, [JobCancelled(job_id=job_id, attempt=attempt)], meta)
            system_line(tx, job_id, attempt, "cancelled while queued")
            tx.publish(JobWake("cancelled"))
            return "cancelled"
        if requested is None:
            append(tx, stream, None, [JobCancelRequested(job_id=job_id)], meta)
            system_line(tx, job_id, attempt, "cancellation requested")
        tx.publish(JobWake("cancel_requested"))
        return "cancel_requested"

    return command


@dataclass(frozen=True)
class Rescued:
    job_id: str
    attempt: int
    outcome: str


RescueReason = Literal["lease_expired", "daemon_restarted", "daemon_stopped"]


@dataclass
class RescueScope:
    """Which running attempts to rescue: all (start-up, shutdown) or only expired
    leases, never those this process is still running (`live_tokens`)."""

    all_running: bool = False
    live_tokens: set[str] = field(default_factory=set)
    reason: RescueReason = "lease_expired"


#: Attempts of one job a graceful stop of the daemon may interrupt without
#: counting them; after that, a stopped attempt counts like a crash.
STOPS_FORGIVEN = 3


def _stops(tx: WriteTx, job_id: str) -> int:
    """How many of the job's attempts a graceful stop interrupted, uncounted."""
    row = tx.conn.execute(
        "SELECT count(*) FROM job_attempts WHERE job_id = ? AND error_code = 'DAEMON_STOPPED'",
        (job_id,),
    ).fetchone()
    return int(row[0])


def rescue(scope: RescueScope) -> Callable[[WriteTx], list[Rescued]]:
    reason = scope.reason

    def command(tx: WriteTx) -> list[Rescued]:
        rows = tx.conn.execute(
            "SELECT j.id, j.attempt_count, j.max_attempts, j.lease_token, j.cancel_requested_at,"
            " coalesce(l.expires_at, j.lease_expires_at) FROM jobs j"
            " LEFT JOIN job_leases l ON l.job_id = j.id AND l.lease_token = j.lease_token"
            " WHERE j.status = 'running'"
        ).fetchall()
        rescued: list[Rescued] = []
        for job_id, attempt, max_attempts, token, cancel_requested, expires_at in rows:
            if token in scope.live_tokens:
                continue
            if not scope.all_running and expires_at > tx.now_ts:
                continue
            # A planned stop is not the job's doing: it gets the attempt back, so
            # restarts (upgrades) do not fail a job — up to STOPS_FORGIVEN times,
            # since a job can still bring its daemon down gracefully (a failing
            # health check, a playbook restarting it). A crash always counts.
            counted = reason != "daemon_stopped" or _stops(tx, job_id) >= STOPS_FORGIVEN
            outcome: Literal["requeued", "failed", "cancelled"]
            if cancel_requested is not None:
                outcome = "cancelled"
            elif attempt < max_attempts or not counted:
                outcome = "requeued"
            else:
                outcome = "failed"
            tx.conn.execute("DELETE FROM job_leases WHERE job_id = ?", (job_id,))
            event = JobLeaseExpired(
                job_id=job_id,
                attempt=attempt,
                lease_token=token,
                outcome=outcome,
                reason=reason,
                run_after=tx.now_ts if outcome == "requeued" else None,
                counted=counted or outcome != "requeued",
            )
            append(tx, f"job:{job_id}", None, [event], Meta(actor="system:rescuer"))
            if event.counted:
                line = f"attempt {attempt} lost its worker ({reason}): {outcome}"
            else:
                line = f"attempt {attempt} stopped with the daemon: requeued, not counted"
            system_line(tx, job_id, attempt, line)
            rescued.append(Rescued(job_id, attempt, outcome))
        if rescued:
            tx.publish(JobWake("rescued"))
        return rescued

    return command


def retry(job_id: str, meta: Meta) -> Callable[[WriteTx], str]:
    """Queue a failed or cancelled job again as a new job, once; returns the new id."""
    if not is_uuid(job_id):
        raise NotFound(f"no job {job_id}")

    def command(tx: WriteTx) -> str:
        row = tx.conn.execute(
            "SELECT status, job_type, payload_json, site_id, environment_id, node_id,"
            " max_attempts, timeout_seconds, node_lock, unique_key, holds_kind, holds_id, holds_as"
            " FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id}")
        (status, job_type, payload, site_id, environment_id, node_id, attempts, timeout,
         node_lock, key, holds_kind, holds_id, holds_as) = row  # fmt: skip
        if status not in ("failed", "cancelled"):
            raise Conflict(
                f"job {job_id} is {status}; only failed or cancelled jobs can be retried",
                details={"status": status},
            )
        retried = tx.conn.execute(
            "SELECT id FROM jobs WHERE retry_of = ? ORDER BY enqueued_seq LIMIT 1", (job_id,)
        ).fetchone()
        if retried is not None:  # a double click, or two operators: one retry, not two
            raise Conflict(
                f"job {job_id} was retried already, as job {retried[0]}",
                details={
                    "status": status,
                    "retried_by": retried[0],
                    "hint": "retry that job instead if it failed too",
                },
            )
        spec = JobSpec(
            job_type=job_type,
            payload=msgspec.json.decode(payload),
            site_id=site_id,
            environment_id=environment_id,
            node_id=node_id,
            # A fresh series: the attempts given back for graceful stops were the
            # old job's, not part of what it was enqueued with.
            max_attempts=attempts - _stops(tx, job_id),
            timeout_seconds=timeout,
            retry_of=job_id,
            node_lock=node_lock,
            unique=key is not None,
            holds=None if holds_kind is None else (holds_kind, holds_id, holds_as),
        )
        if spec.unique:
            # A unique job of its kind is queued or running already: that one is
            # the answer, as for a new request; the old job stays retryable.
            active = active_unique(tx.conn, spec.job_type, spec.target)
            if active is not None:
                _hasten(tx, active, meta)
                return active
        new_id = enqueue(tx, spec, meta)
        # The old job's own history says it was retried, and by whom (the audit).
        append(tx, f"job:{job_id}", None, [JobRetried(job_id=job_id, retried_by=new_id)], meta)
        return new_id

    return command
