"""Schema migrations: numbered, forward-only SQL files applied in order.

Files live in `pressluft/db/migrations/NNNN_name.sql` and in the migration
directories of the daemon's features (`sources`): one numbering across all. Each runs in its own
`BEGIN IMMEDIATE` transaction together with its row in `schema_migrations`
(version, name, checksum, applied_at). An applied file that changed afterwards,
or a database newer than this code, stops the migration with a clear error.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from pressluft.db.connection import open_sync

__all__ = [
    "Migration",
    "MigrationError",
    "Sources",
    "applied",
    "current_version",
    "latest_version",
    "load_migrations",
    "migrate",
    "migrate_file",
]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY CHECK (version > 0),
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL CHECK (length(checksum) = 64),
    applied_at TEXT NOT NULL
) STRICT
"""


class MigrationError(RuntimeError):
    """The database cannot be brought to this code's schema."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


Sources = Sequence[Traversable | Path]


def load_migrations(sources: Sources = ()) -> list[Migration]:
    """Every migration shipped with this code and `sources`, in version order."""
    found: list[Migration] = []
    for directory in (resources.files("pressluft.db.migrations"), *sources):
        for entry in directory.iterdir():
            match = _NAME.match(entry.name)
            if match:
                sql = entry.read_text(encoding="utf-8")
                found.append(Migration(int(match[1]), match[2], sql))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration numbers must be contiguous and unique; at {expected:04d} found "
                f"{migration.version:04d}_{migration.name}"
            )
    return found


def latest_version(sources: Sources = ()) -> int:
    migrations = load_migrations(sources)
    return migrations[-1].version if migrations else 0


def _has_table(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ).fetchone()
    return row is not None


def applied(conn: sqlite3.Connection) -> dict[int, str]:
    """version → checksum of every applied migration."""
    if not _has_table(conn):
        return {}
    rows = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return {int(v): str(c) for v, c in rows}


def current_version(conn: sqlite3.Connection) -> int:
    done = applied(conn)
    return max(done) if done else 0


def _statements(sql: str) -> list[str]:
    """Split a script into complete statements (no `executescript`: it commits)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise MigrationError(f"incomplete SQL statement at end of migration: {buf.strip()[:60]!r}")
    return out


def migrate(
    conn: sqlite3.Connection, now: str, target: int | None = None, sources: Sources = ()
) -> list[Migration]:
    """Apply pending migrations up to `target` (default: all); returns those applied."""
    migrations = load_migrations(sources)
    known = {m.version: m for m in migrations}
    conn.execute(_BOOTSTRAP)
    done = applied(conn)
    for version, checksum in done.items():
        if version not in known:
            raise MigrationError(
                f"the database is at schema version {max(done)}, newer than this Pressluft "
                f"(knows up to {migrations[-1].version}); upgrade Pressluft instead"
            )
        if known[version].checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{known[version].name} was changed after it was applied"
            )
    target = migrations[-1].version if target is None else target
    ran: list[Migration] = []
    for migration in migrations:
        if migration.version in done or migration.version > target:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, migration.checksum, now),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        ran.append(migration)
    return ran


def migrate_file(
    path: str, now: str, *, synchronous: str = "FULL", sources: Sources = ()
) -> list[Migration]:
    """Open the database at `path` and bring it to the latest schema."""
    conn = open_sync(path, "writer", synchronous=synchronous)
    try:
        return migrate(conn, now, sources=sources)
    finally:
        conn.close()
