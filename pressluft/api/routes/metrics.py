"""`/api/metrics` (JSON counters) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from pressluft.clock import format_ts
from pressluft.runtime import Runtime
from pressluft.services.counters import Counters, read_counters
from pressluft.services.jobs import job_counts

__all__ = ["METRICS_ROUTES"]


@get("/api/metrics", operation_id="getMetrics", tags=["operations"])
async def counters(runtime: NamedDependency[Runtime]) -> Counters:
    return await read_counters(runtime.db)


@get("/metrics", operation_id="getPrometheusMetrics", tags=["operations"])
async def prometheus(runtime: NamedDependency[Runtime]) -> Response[bytes]:
    now = format_ts(runtime.clock.now())
    counts, due = await runtime.db.read(lambda conn: job_counts(conn, now))
    runtime.metrics.set_jobs(counts, due)
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)


METRICS_ROUTES = [counters, prometheus]
