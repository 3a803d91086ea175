"""Health of the daemon: is it able to do its job right now?

Checks (all required): the database accepts a write transaction within 2 s;
every background service is running; `ansible-playbook` can be found (every
change to a node runs through it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from pressluft.db import Database, WriteTx
from pressluft.services.background import ServiceState

__all__ = ["Check", "HealthReport", "check_health"]

WRITE_PROBE_TIMEOUT = 2.0


class Check(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "fail"]
    required: bool
    detail: str


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "fail"]
    version: str
    uptime_seconds: float
    checks: dict[str, Check]


def _probe(tx: WriteTx) -> None:
    tx.conn.execute("SELECT 1 FROM event_log_head").fetchone()


async def _database(db: Database) -> Check:
    if not db.writer_alive:
        return Check(status="fail", required=True, detail="the writer is not running")
    try:
        await asyncio.wait_for(db.write(_probe), WRITE_PROBE_TIMEOUT)
    except TimeoutError:
        return Check(status="fail", required=True, detail="no write lock within 2 s")
    except Exception as exc:
        return Check(status="fail", required=True, detail=f"write failed: {type(exc).__name__}")
    return Check(status="ok", required=True, detail="accepts writes")


def _services(states: Mapping[str, ServiceState]) -> Check:
    down = [s.name for s in states.values() if not s.running]
    if down:
        return Check(status="fail", required=True, detail="not running: " + ", ".join(down))
    names = ", ".join(sorted(states)) or "none"
    return Check(status="ok", required=True, detail=f"running: {names}")


def _ansible(find: Callable[[], str | None]) -> Check:
    path = find()
    if path is None:
        return Check(status="fail", required=True, detail="ansible-playbook not found on PATH")
    return Check(status="ok", required=True, detail="ansible-playbook found")


async def check_health(
    db: Database,
    services: Mapping[str, ServiceState],
    find_ansible: Callable[[], str | None],
    *,
    version: str,
    uptime_seconds: float,
) -> HealthReport:
    checks = {
        "database": await _database(db),
        "services": _services(services),
        "ansible": _ansible(find_ansible),
    }
    failed = any(c.required and c.status == "fail" for c in checks.values())
    return HealthReport(
        status="fail" if failed else "ok",
        version=version,
        uptime_seconds=round(uptime_seconds, 3),
        checks=checks,
    )
