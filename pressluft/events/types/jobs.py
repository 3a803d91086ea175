"""Events of jobs (stream `job:<id>`).

Transitions a worker makes carry the attempt's `lease_token`; the projector
applies them only to the running attempt holding that token (fencing). Lease
renewals (heartbeats) are not events: they are liveness, kept in `job_leases`.
"""

from __future__ import annotations

from typing import Any, Literal

from pressluft.events.types.base import Event

__all__ = [
    "JobCancelRequested",
    "JobCancelled",
    "JobClaimed",
    "JobEnqueued",
    "JobFailed",
    "JobLeaseExpired",
    "JobOutputDropped",
    "JobRetried",
    "JobRetryScheduled",
    "JobSucceeded",
]


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
