"""`/api/metrics` (JSON counters) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from pressluft.api.daemon import Daemon
from pressluft.clock import format_ts
from pressluft.contexts.operations.counters import Counters, read_counters
from pressluft.contexts.operations.jobs import job_counts
from pressluft.jobs.queue import STATUSES as JOB_STATUSES

__all__ = ["METRICS_ROUTES"]


@get("/api/metrics", operation_id="getMetrics", tags=["operations"])
async def counters(runtime: NamedDependency[Daemon]) -> Counters:
    return await read_counters(runtime.db)


@get("/metrics", operation_id="getPrometheusMetrics", tags=["operations"])
async def prometheus(runtime: NamedDependency[Daemon]) -> Response[bytes]:
    now = format_ts(runtime.clock.now())
    counts, due = await runtime.db.read(lambda conn: job_counts(conn, now))
    runtime.metrics.set_jobs(counts, due, runtime.jobs.names(), JOB_STATUSES)
    # The classic text format that `render` writes; Litestar adds the charset.
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")


METRICS_ROUTES = [counters, prometheus]
