"""The `housekeeping` job: deletes what has outlived its retention.

Scheduled every 6 hours (the reference's period for periodic cleanups): the
output lines of jobs that ended more than `job_log_retention_days` ago (job
rows stay), and expired idempotency keys with their sealed responses. It works
in short transactions (200 jobs each) and is idempotent, so a retry or an
overlap is harmless.
"""

from __future__ import annotations

from datetime import timedelta

from pressluft.clock import format_ts
from pressluft.db import Database, WriteTx
from pressluft.http.idempotency import prune_expired
from pressluft.jobs.context import JobContext
from pressluft.jobs.logs import prune_before
from pressluft.jobs.registry import JobRegistry, JobType
from pressluft.jobs.scheduler import Schedule, Scheduler

__all__ = ["HOUSEKEEPING_EVERY_SECONDS", "register_housekeeping"]

HOUSEKEEPING_EVERY_SECONDS = 6 * 3600
#: A fresh daemon first cleans up after this long (nothing is old yet anyway).
FIRST_AFTER_SECONDS = 3600


def register_housekeeping(
    registry: JobRegistry, scheduler: Scheduler, db: Database, retention_days: int
) -> None:
    async def housekeeping(ctx: JobContext) -> None:
        pruned, cursor = 0, 0
        while True:  # in batches: the writer stays responsive
            ctx.check_cancelled()

            def logs(tx: WriteTx, after: int = cursor) -> tuple[int, int]:
                cutoff = format_ts(tx.now - timedelta(days=retention_days))
                return prune_before(tx, cutoff, after)

            deleted, cursor = await db.write(logs)
            pruned += deleted
            if cursor == 0:
                break
        ctx.log(f"deleted {pruned} log line(s) of jobs that ended over {retention_days} day(s) ago")
        expired = await db.write(prune_expired)
        ctx.log(f"deleted {expired} expired idempotency key(s)")

    registry.register(JobType("housekeeping", housekeeping, timeout_seconds=600))
    scheduler.add(
        Schedule(
            "housekeeping",
            HOUSEKEEPING_EVERY_SECONDS,
            timeout_seconds=600,
            first_after_seconds=FIRST_AFTER_SECONDS,
            # The daemon's own database, on no node: it locks nothing.
            node_lock="shared",
        )
    )
