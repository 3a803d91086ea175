"""`/api/metrics` (JSON counters) and `/metrics` (Prometheus text format)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from pressluft.contexts.operations.counters import Counters
from pressluft.contexts.operations.service import Operations

__all__ = ["METRICS_ROUTES"]


@get("/api/metrics", operation_id="getMetrics", tags=["operations"])
async def counters(operations: NamedDependency[Operations]) -> Counters:
    return await operations.counters()


@get("/metrics", operation_id="getPrometheusMetrics", tags=["operations"])
async def prometheus(operations: NamedDependency[Operations]) -> Response[bytes]:
    # The classic text format that `render` writes; Litestar adds the charset.
    return Response(await operations.prometheus(), media_type="text/plain; version=0.0.4")


METRICS_ROUTES = [counters, prometheus]
