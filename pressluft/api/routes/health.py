"""`/api/health`: 200 with every check, or 503 (the error envelope) naming the failed ones."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from pressluft.errors import ServiceUnavailable
from pressluft.executables import find_ansible_playbook
from pressluft.runtime import Runtime
from pressluft.services.health import HealthReport, check_health

__all__ = ["HEALTH_ROUTES"]


@get("/api/health", operation_id="getHealth", tags=["operations"])
async def health(runtime: NamedDependency[Runtime]) -> HealthReport:
    report = await check_health(
        runtime.db,
        runtime.supervisor.states,
        find_ansible_playbook,
        version=runtime.version,
        uptime_seconds=runtime.clock.monotonic() - runtime.started_at,
    )
    if report.status != "ok":
        failed = [name for name, c in report.checks.items() if c.status == "fail"]
        raise ServiceUnavailable(
            "required checks failed: " + ", ".join(failed),
            details={"checks": msgspec.to_builtins(report.checks)},
        )
    return report


HEALTH_ROUTES = [health]
