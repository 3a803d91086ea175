"""Replay: rebuild projections from the log, in place or into a scratch database.

`rebuild_in_place` empties every projection table and re-applies the whole log
in one transaction (the daemon must not be running). `verify_replay` rebuilds
into a scratch database and compares it row by row with the live tables, all
inside one read snapshot of the live database, so it is exact even while the
daemon keeps writing.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from pressluft.db.connection import open_sync
from pressluft.db.migrate import Sources, current_version, latest_version, migrate
from pressluft.events.log import rebuild
from pressluft.events.projection import Difference, ProjectorSet, diff_tables

__all__ = ["ReplayResult", "rebuild_in_place", "verify_replay"]


class ReplayResult:
    """What a replay did."""

    def __init__(self, events: int, differences: list[Difference]) -> None:
        self.events = events
        self.differences = differences

    @property
    def ok(self) -> bool:
        return not self.differences


def _require_current_schema(conn: sqlite3.Connection, migrations: Sources) -> None:
    version, latest = current_version(conn), latest_version(migrations)
    if version != latest:
        raise RuntimeError(
            f"the database is at schema version {version}, this code expects {latest}; "
            "run `pressluft migrate` first"
        )


def rebuild_in_place(
    conn: sqlite3.Connection, projectors: ProjectorSet, migrations: Sources = ()
) -> int:
    """Rebuild every projection table of `conn` from its own log; returns the event count."""
    _require_current_schema(conn, migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        count = rebuild(conn, conn, projectors)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return count


def verify_replay(
    live: sqlite3.Connection,
    now: str,
    projectors: ProjectorSet,
    scratch_dir: Path | None = None,
    migrations: Sources = (),
) -> ReplayResult:
    """Replay the log of `live` into a scratch database and diff every projection."""
    _require_current_schema(live, migrations)
    with tempfile.TemporaryDirectory(prefix="pressluft-replay-", dir=scratch_dir) as tmp:
        scratch = open_sync(Path(tmp) / "replay.db", "writer", synchronous="OFF")
        try:
            scratch.execute("PRAGMA journal_mode = OFF")
            migrate(scratch, now, sources=migrations)
            live.execute("BEGIN")
            try:
                scratch.execute("BEGIN")
                count = rebuild(live, scratch, projectors)
                scratch.execute("COMMIT")
                differences = diff_tables(live, scratch, projectors.tables)
            finally:
                live.execute("COMMIT")
        finally:
            scratch.close()
    return ReplayResult(count, differences)
