"""The `housekeeping` job: deletes what has outlived its retention.

Scheduled every 6 hours (the reference's period for periodic cleanups): the
output lines of jobs that ended more than `job_log_retention_days` ago (job
rows stay), and expired idempotency keys with their sealed responses. It works
in short transactions (200 jobs each) and is idempotent, so a retry or an
overlap is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from pressluft.clock import format_ts
from pressluft.db import WriteTx
from pressluft.events import Meta
from pressluft.http.idempotency import prune_expired
from pressluft.jobs.logs import prune_before
from pressluft.jobs.scheduler import Schedule
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = ["HOUSEKEEPING_EVERY_SECONDS", "Housekeeping", "housekeeping_schedule"]

HOUSEKEEPING_EVERY_SECONDS = 6 * 3600
#: A fresh daemon first cleans up after this long (nothing is old yet anyway).
FIRST_AFTER_SECONDS = 3600


def prune_logs(retention_days: int, after: int) -> Callable[[WriteTx, Meta], tuple[int, int]]:
    """One batch of log lines of jobs that ended over `retention_days` ago, after
    job row `after`: (lines deleted, cursor; 0 when done)."""

    def command(tx: WriteTx, meta: Meta) -> tuple[int, int]:
        cutoff = format_ts(tx.now - timedelta(days=retention_days))
        return prune_before(tx, cutoff, after)

    return command


def prune_idempotency_keys(tx: WriteTx, meta: Meta) -> int:
    """Expired idempotency keys and their sealed responses."""
    return prune_expired(tx)


class Housekeeping(JobWorker[NoArgs]):
    kind = "housekeeping"
    args = NoArgs
    timeout_seconds = 600

    def __init__(self, retention_days: int) -> None:
        self.retention_days = retention_days

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        pruned, cursor = 0, 0
        while True:  # in batches: the writer stays responsive
            ctx.check_cancelled()
            deleted, cursor = await ctx.command(prune_logs(self.retention_days, cursor))
            pruned += deleted
            if cursor == 0:
                break
        ctx.log(
            f"deleted {pruned} log line(s) of jobs that ended over {self.retention_days} day(s) ago"
        )
        expired = await ctx.command(prune_idempotency_keys)
        ctx.log(f"deleted {expired} expired idempotency key(s)")


def housekeeping_schedule() -> Schedule:
    return Schedule(
        Housekeeping.kind,
        HOUSEKEEPING_EVERY_SECONDS,
        max_attempts=Housekeeping.max_attempts,
        timeout_seconds=Housekeeping.timeout_seconds,
        first_after_seconds=FIRST_AFTER_SECONDS,
        # The daemon's own database, on no node: it locks nothing.
        node_lock="shared",
    )
