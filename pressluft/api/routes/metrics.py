"""`/api/metrics` (JSON counters) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST

from pressluft.runtime import Runtime
from pressluft.services.counters import Counters, read_counters

__all__ = ["METRICS_ROUTES"]


@get("/api/metrics", operation_id="getMetrics", tags=["operations"])
async def counters(runtime: NamedDependency[Runtime]) -> Counters:
    return await read_counters(runtime.db)


@get("/metrics", operation_id="getPrometheusMetrics", tags=["operations"])
async def prometheus(runtime: NamedDependency[Runtime]) -> Response[bytes]:
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)


METRICS_ROUTES = [counters, prometheus]
