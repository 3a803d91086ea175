"""Events of jobs (stream `job:<id>`).

Transitions a worker makes carry the attempt's `lease_token`; the projector
applies them only to the running attempt holding that token (fencing). Lease
renewals (heartbeats) are not events: they are liveness, kept in `job_leases`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from pressluft.events.types.base import Event

__all__ = [
    "JobCancelRequested",
    "JobCancelled",
    "JobClaimed",
    "JobEnqueued",
    "JobFailed",
    "JobHastened",
    "JobHolds",
    "JobLeaseExpired",
    "JobOutputDropped",
    "JobRetried",
    "JobRetryScheduled",
    "JobSucceeded",
    "NodeLock",
    "legacy_holds",
    "scope_node_lock",
]

NodeLock = Literal["exclusive", "shared"]


def scope_node_lock(site_id: str | None, node_id: str | None) -> NodeLock:
    """The node lock a job gets when none is named: what the queue did before lock
    scopes, as far as the new rule can say it — a job on a node without a site (a
    node mutation, a check, a diagnostic) runs alone on it, a site's job shares it
    (its site stays exclusive). Fixed, so the events recorded before lock scopes
    replay into the same rows (a job without a node: `shared`, which means nothing)."""
    return "exclusive" if node_id is not None and site_id is None else "shared"


class JobHolds(msgspec.Struct, frozen=True, kw_only=True):
    """What a job holds: the row (`aggregate`, `id`) it keeps in `status` while it
    runs. When the job ends failed or cancelled, the row's owner fails it if it
    still has that status (specs/jobs.md, JOB-48)."""

    aggregate: str
    id: str
    status: str


#: The jobs that held a row before jobs said so (events recorded before migration
#: 0016): derived from the job type, the same way every time, so a replay of an old
#: log rebuilds the rows the migration filled. New events name their holds.
_LEGACY_HOLDS = {
    "site_create": ("environment", "creating"),
    "env_create": ("environment", "cloning"),
    "env_delete": ("environment", "deleting"),
    "site_delete": ("environment", "deleting"),
    "node_provision": ("node", "provisioning"),
}


def legacy_holds(job_type: str, environment_id: str | None, node_id: str | None) -> JobHolds | None:
    """The holds of a job enqueued before jobs named them."""
    found = _LEGACY_HOLDS.get(job_type)
    if found is None:
        return None
    aggregate, status = found
    held = environment_id if aggregate == "environment" else node_id
    return None if held is None else JobHolds(aggregate=aggregate, id=held, status=status)


class JobEnqueued(Event, frozen=True, tag="job.enqueued"):
    job_id: str
    job_type: str
    payload: dict[str, Any]
    max_attempts: int
    timeout_seconds: int
    site_id: str | None = None
    environment_id: str | None = None
    node_id: str | None = None
    run_after: str | None = None
    retry_of: str | None = None
    #: How the job holds its node (`exclusive`: alone on it; `shared`: beside other
    #: shared jobs). None only in events recorded before lock scopes (migration
    #: 0015): the projector derives it from the job's scope, the same way every
    #: time (`scope_node_lock`), so a replay rebuilds the same rows.
    node_lock: NodeLock | None = None
    #: `<job_type>:<target>` of a unique job (at most one queued or running per
    #: key); None for any other job and in events recorded before lock scopes.
    unique_key: str | None = None
    #: What the job holds (None: nothing, or an event from before holds — see
    #: `legacy_holds`).
    holds: JobHolds | None = None


class JobClaimed(Event, frozen=True, tag="job.claimed"):
    job_id: str
    attempt: int
    worker: str
    lease_token: str
    lease_expires_at: str


class JobSucceeded(Event, frozen=True, tag="job.succeeded"):
    job_id: str
    attempt: int
    lease_token: str


class JobRetryScheduled(Event, frozen=True, tag="job.retry_scheduled"):
    job_id: str
    attempt: int
    lease_token: str
    error_code: str
    error_message: str
    run_after: str


class JobFailed(Event, frozen=True, tag="job.failed"):
    job_id: str
    attempt: int
    lease_token: str
    error_code: str
    error_message: str


class JobHastened(Event, frozen=True, tag="job.hastened"):
    """A request for a unique job found it queued, waiting out a retry's backoff:
    the request brings it forward (due now) instead of leaving the operator to
    wait up to the backoff for what was just asked for."""

    job_id: str
    #: When it would have run.
    run_after_was: str


class JobOutputDropped(Event, frozen=True, tag="job.output_dropped"):
    """Lines the running attempt printed that its log does not hold (the database
    refused writes for longer than the worker's buffer lasted); the log has a
    `system` line where they are missing."""

    job_id: str
    attempt: int
    lease_token: str
    lines: int
    reason: str


class JobCancelRequested(Event, frozen=True, tag="job.cancel_requested"):
    job_id: str


class JobCancelled(Event, frozen=True, tag="job.cancelled"):
    """Cancelled while queued (no lease), or by its worker (its lease)."""

    job_id: str
    attempt: int
    lease_token: str | None = None


class JobRetried(Event, frozen=True, tag="job.retried"):
    """An operator retried the ended job as a new one (`retried_by`, whose
    job.enqueued names this job in `retry_of`). An audit record on the old job's
    stream: its row is unchanged, its `retried_by` is read from the new job."""

    job_id: str
    retried_by: str


class JobLeaseExpired(Event, frozen=True, tag="job.lease_expired"):
    """The attempt's worker is gone: requeued (attempts left), else failed or cancelled."""

    job_id: str
    attempt: int
    lease_token: str
    outcome: Literal["requeued", "failed", "cancelled"]
    reason: Literal["lease_expired", "daemon_restarted", "daemon_stopped"]
    run_after: str | None = None
    #: False for a planned stop (`daemon_stopped`): the job gets the attempt back.
    counted: bool = True
