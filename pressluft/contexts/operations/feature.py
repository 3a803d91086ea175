"""The operations capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.operations.health import Health
from pressluft.contexts.operations.housekeeping import Housekeeping, housekeeping_schedule
from pressluft.contexts.operations.pages import PAGES
from pressluft.contexts.operations.routes.audit import AUDIT_ROUTES
from pressluft.contexts.operations.routes.events import EVENT_ROUTES
from pressluft.contexts.operations.routes.health import HEALTH_ROUTES
from pressluft.contexts.operations.routes.jobs import JOB_ROUTES
from pressluft.contexts.operations.routes.metrics import METRICS_ROUTES
from pressluft.contexts.operations.service import Operations
from pressluft.feature import Feature, Kernel, Parts
from pressluft.jobs.builtin import DIAGNOSTIC_WORKERS
from pressluft.jobs.events import (
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobEnqueued,
    JobFailed,
    JobHastened,
    JobLeaseExpired,
    JobOutputDropped,
    JobRetried,
    JobRetryScheduled,
    JobSucceeded,
)
from pressluft.jobs.projector import JOBS_PROJECTOR

__all__ = ["FEATURE"]


def _assemble(kernel: Kernel) -> Parts:
    operations = Operations(
        kernel.db,
        kernel.clock,
        kernel.writer,
        kernel.config,
        notifier=kernel.notifier,
        job_changes=kernel.job_changes,
        stopping=kernel.stopping,
        metrics=kernel.metrics,
        job_kinds=kernel.job_kinds,
    )
    health = Health(kernel.db, kernel.clock, kernel.supervisor, kernel.config.data_dir)
    return Parts(
        workers=[*DIAGNOSTIC_WORKERS, Housekeeping(kernel.config.job_log_retention_days)],
        schedules=[housekeeping_schedule()],
        services={"operations": operations, "health": health},
    )


FEATURE = Feature(
    name="operations",
    events=(
        JobEnqueued,
        JobClaimed,
        JobSucceeded,
        JobRetryScheduled,
        JobFailed,
        JobCancelRequested,
        JobCancelled,
        JobLeaseExpired,
        JobOutputDropped,
        JobRetried,
        JobHastened,
    ),
    projectors=(JOBS_PROJECTOR,),
    non_projection_tables={
        "job_leases": "liveness: heartbeats extend a running attempt's lease (not history)",
        "job_logs": "job output lines: bulk data, pruned by retention; not state changes",
        "idempotency_keys": "request-level cache of responses, expiring after a day",
        "health_probe": "the health check's write probe: one row rewritten, no state",
    },
    routes=(
        *AUDIT_ROUTES,
        *EVENT_ROUTES,
        *HEALTH_ROUTES,
        *JOB_ROUTES,
        *METRICS_ROUTES,
    ),
    pages=tuple(PAGES),
    templates=Path(str(resources.files("pressluft.contexts.operations") / "templates")),
    assemble=_assemble,
)
