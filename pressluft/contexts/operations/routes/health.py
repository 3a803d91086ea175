"""`/api/health`: 200 with every check, or 503 (the error envelope) naming the failed ones."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from pressluft.contexts.operations.health import Health, HealthReport
from pressluft.db import RETRY_AFTER_SECONDS
from pressluft.errors import ServiceUnavailable

__all__ = ["HEALTH_ROUTES"]


@get("/api/health", operation_id="getHealth", tags=["operations"])
async def health(health: NamedDependency[Health]) -> HealthReport:
    report = await health.report()
    if report.status != "ok":
        failed = [name for name, c in report.checks.items() if c.status == "fail"]
        raise ServiceUnavailable(
            "required checks failed: " + ", ".join(failed),
            details={
                "checks": msgspec.to_builtins(report.checks),
                "hint": "each failed check's detail says what is wrong",
            },
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return report


HEALTH_ROUTES = [health]
