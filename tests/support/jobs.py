"""Helpers for tests that run jobs in an in-process runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pressluft.contexts.operations.jobs import (
    DiagnosticJobRequest,
    JobView,
    diagnostic_command,
    get_job,
    wait_for_end,
)
from pressluft.events import Meta
from pressluft.jobs.process import group_alive
from pressluft.runtime import Runtime

TEST_ACTOR = Meta(actor="test:jobs")


async def submit(runtime: Runtime, **request: Any) -> str:
    command = diagnostic_command(DiagnosticJobRequest(**request), TEST_ACTOR)
    return (await runtime.db.write(command)).job_id


async def job(runtime: Runtime, job_id: str) -> JobView:
    return await runtime.db.read(lambda conn: get_job(conn, job_id))


async def until_ended(runtime: Runtime, job_id: str, within: float = 60.0) -> JobView:
    await wait_for_end(runtime.db, runtime.job_changes, job_id, within)
    return await job(runtime, job_id)


async def until(predicate: Any, within: float = 30.0, step: float = 0.02) -> None:
    """Wait for an async predicate (a condition of the system, not a timing claim)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(step)


async def log_lines(runtime: Runtime, job_id: str) -> list[tuple[int, str, str]]:
    rows = await runtime.db.read(
        lambda conn: conn.execute(
            "SELECT attempt, stream, text FROM job_logs WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()
    )
    return [tuple(r) for r in rows]


def recorded_groups(run_dir: Path) -> list[int]:
    """Process groups of running job subprocesses, from their records."""
    import msgspec

    groups = []
    for path in run_dir.glob("*.json"):
        groups.append(int(msgspec.json.decode(path.read_bytes())["pgid"]))
    return groups


def any_alive(groups: list[int]) -> bool:
    return any(group_alive(g) for g in groups)
