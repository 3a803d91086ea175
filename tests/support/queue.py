"""A job queue on a real SQLite file, driven synchronously with a frozen clock.

The same commands the daemon's workers run (`pressluft.jobs.queue`), each in
its own transaction via `write_now`, with `now` under the test's control.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pressluft.clock import format_ts
from pressluft.db import WriteTx, open_sync, write_now
from pressluft.db.migrate import migrate
from pressluft.events import Meta
from pressluft.events.chain import verify_chain
from pressluft.features import MIGRATIONS, PROJECTORS, verify_replay
from pressluft.jobs.queue import JobSpec, enqueue

T = TypeVar("T")

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACTOR = Meta(actor="test:queue")


class QueueDb:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = START
        self.conn = open_sync(path, "writer")
        # Every feature's tables (a projector may touch any: a job's end reaches them all).
        migrate(self.conn, format_ts(self.now), sources=MIGRATIONS)
        self.published: list[Any] = []

    def close(self) -> None:
        self.conn.close()

    def run(self, command: Callable[[WriteTx], T]) -> T:
        def capture(tx: WriteTx) -> T:
            result = command(tx)
            self.published.extend(tx._published)
            return result

        return write_now(self.conn, capture, self.now, PROJECTORS)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    @property
    def now_ts(self) -> str:
        return format_ts(self.now)

    def enqueue(self, job_type: str = "noop", **fields: Any) -> str:
        spec = JobSpec(job_type=job_type, **fields)
        return self.run(lambda tx: enqueue(tx, spec, ACTOR))

    def job(self, job_id: str) -> dict[str, Any]:
        self.conn.row_factory = sqlite3.Row
        try:
            row = self.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        finally:
            self.conn.row_factory = None
        assert row is not None, job_id
        return dict(row)

    def status(self, job_id: str) -> str:
        return str(self.job(job_id)["status"])

    def running(self) -> list[tuple[str, str | None, str | None]]:
        return self.conn.execute(
            "SELECT id, site_id, node_id FROM jobs WHERE status = 'running'"
        ).fetchall()

    def events(self, job_id: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT type FROM events WHERE stream = ? ORDER BY seq", (f"job:{job_id}",)
            )
        ]

    def log(self, job_id: str) -> list[tuple[int, str, str]]:
        return self.conn.execute(
            "SELECT attempt, stream, text FROM job_logs WHERE job_id = ? ORDER BY seq", (job_id,)
        ).fetchall()

    def assert_consistent(self, scratch: Path) -> None:
        """The chain verifies and a replay equals the live projections."""
        assert verify_chain(self.conn).ok
        result = verify_replay(self.conn, self.now_ts, scratch_dir=scratch)
        assert result.ok, result.differences
