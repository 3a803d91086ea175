"""SQLite connections: the pragmas, set in one place, and the thread bridge.

Every connection gets `busy_timeout` first, then `foreign_keys=ON`; the writer
also sets WAL mode and the configured `synchronous` level; readers are
`query_only`. Async code reaches a connection only through `ThreadConnection`,
which runs a whole synchronous unit of work on aiosqlite's connection thread in
one hop (a hop costs ~100 µs; a transaction of five awaited statements would
cost five).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import aiosqlite

__all__ = ["SQLITE_MIN_VERSION", "ThreadConnection", "configure", "open_sync"]

T = TypeVar("T")

# STRICT tables (3.37) and RETURNING (3.35).
SQLITE_MIN_VERSION = (3, 37, 0)

Role = Literal["writer", "reader"]


def _check_version() -> None:
    if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
        need = ".".join(map(str, SQLITE_MIN_VERSION))
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old; Pressluft needs {need}+")


#: WAL pages (of 4 KiB) after which a commit checkpoints.
WAL_CHECKPOINT_PAGES = 4000


def configure(
    conn: sqlite3.Connection, role: Role, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000
) -> None:
    """Apply Pressluft's pragmas to a fresh connection."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if role == "writer":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch the database to WAL mode (got {mode})")
        # OFF is only for throw-away scratch databases (replay --verify).
        if synchronous.upper() not in ("FULL", "EXTRA", "NORMAL", "OFF"):
            raise ValueError(f"unsupported synchronous mode {synchronous!r}")
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA temp_store = MEMORY")
        # Checkpoint every ~16 MiB of WAL instead of SQLite's ~4 MiB: a commit that
        # crosses the threshold copies the WAL into the database, and pages written
        # again and again between checkpoints (the log head, a busy index leaf) are
        # copied once per checkpoint — fewer checkpoints, less writing. The file is
        # cut back to 64 MiB when a checkpoint resets it.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {64 * 1024 * 1024}")
    else:
        conn.execute("PRAGMA query_only = ON")


def open_sync(
    path: Path | str,
    role: Role = "writer",
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 5000,
) -> sqlite3.Connection:
    """A configured synchronous connection (CLI commands, migrations, replay)."""
    _check_version()
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    configure(conn, role, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    return conn


class ThreadConnection:
    """An aiosqlite connection whose thread runs whole units of work."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(
        cls,
        path: Path | str,
        role: Role,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
    ) -> ThreadConnection:
        _check_version()
        conn = await aiosqlite.connect(str(path), isolation_level=None)
        self = cls(conn)
        try:
            await self.run(
                lambda c: configure(
                    c, role, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
                )
            )
        except BaseException:
            await conn.close()
            raise
        return self

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on the connection's own thread."""
        # aiosqlite's `_execute` queues a callable for its worker thread; it is the
        # one non-public name we use (pinned in pyproject, covered by tests).
        execute = cast(Callable[..., Any], self._conn._execute)
        raw = self._conn._conn
        return cast(T, await execute(fn, raw))

    @property
    def alive(self) -> bool:
        return (
            bool(self._conn._running)
            and self._conn._connection is not None
            and self._conn._thread.is_alive()
        )

    async def close(self) -> None:
        await self._conn.close()
