"""Storage: pragmas, STRICT schema with CHECKs, migrations, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite
import pytest

from pressluft.clock import FrozenClock
from pressluft.db import Database, MigrationError, WriteTx, current_version, latest_version, migrate
from pressluft.db.connection import open_sync
from pressluft.db.database import open_version_watch, read_version
from pressluft.db.migrate import load_migrations
from pressluft.errors import Conflict, ServiceUnavailable
from pressluft.runtime import Runtime

NOW = "2026-01-01T00:00:00.000000Z"


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    return [(t, n, s or "") for t, n, s in rows]


@pytest.mark.spec("STO-1")
async def test_connections_use_wal_full_sync_foreign_keys_and_readonly_readers(
    runtime: Runtime,
) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
            conn.execute("PRAGMA busy_timeout").fetchone()[0],
            conn.execute("PRAGMA query_only").fetchone()[0],
        )

    mode, fks, busy, query_only = await runtime.db.read(pragmas)
    assert (mode, fks, busy, query_only) == ("wal", 1, 5000, 1)

    def writer_pragmas(tx: WriteTx) -> tuple[int, int]:
        return (
            tx.conn.execute("PRAGMA synchronous").fetchone()[0],
            tx.conn.execute("PRAGMA foreign_keys").fetchone()[0],
        )

    assert await runtime.db.write(writer_pragmas) == (2, 1)  # 2 = FULL

    def sneaky_write(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE event_log_head SET seq = 99")

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await runtime.db.read(sneaky_write)


@pytest.mark.spec("STO-1")
def test_thread_bridge_relies_on_aiosqlite_execute() -> None:
    # The one non-public aiosqlite name we use; fail loudly if an upgrade drops it.
    assert callable(aiosqlite.Connection._execute)


@pytest.mark.spec("STO-2")
def test_every_table_is_strict_and_checks_its_values(tmp_path: Path) -> None:
    conn = open_sync(tmp_path / "x.db")
    migrate(conn, NOW)
    tables = conn.execute("PRAGMA table_list").fetchall()
    ours = [
        (name, strict)
        for _, name, kind, _, _, strict in tables
        if kind == "table" and not name.startswith("sqlite_")
    ]
    assert ours, "no tables"
    assert all(strict == 1 for _, strict in ours), ours
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO settings (id, dns01_provider, state_version, updated_at)"
            " VALUES (1, 'godaddy', 1, ?)",
            (NOW,),
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO settings (id, preview_domain, state_version, updated_at)"
            " VALUES (1, 'p.example.com', 1, ?)",
            (NOW,),
        )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO settings (id, state_version, updated_at) VALUES (2, 1, ?)", (NOW,)
        )


@pytest.mark.spec("STO-3")
@pytest.mark.parametrize("start", range(latest_version() + 1))
def test_migrating_from_any_version_equals_a_fresh_schema(tmp_path: Path, start: int) -> None:
    fresh = open_sync(tmp_path / "fresh.db")
    migrate(fresh, NOW)
    old = open_sync(tmp_path / "old.db")
    migrate(old, NOW, target=start)
    assert current_version(old) == start
    migrate(old, NOW)
    assert current_version(old) == latest_version()
    assert _schema(old) == _schema(fresh)
    assert migrate(old, NOW) == []


@pytest.mark.spec("STO-3")
def test_migrations_are_contiguous_and_checksummed(tmp_path: Path) -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    conn = open_sync(tmp_path / "x.db")
    migrate(conn, NOW)
    stored = dict(conn.execute("SELECT version, checksum FROM schema_migrations"))
    assert stored == {m.version: m.checksum for m in migrations}


@pytest.mark.spec("STO-4")
def test_a_changed_migration_is_refused(tmp_path: Path) -> None:
    conn = open_sync(tmp_path / "x.db")
    migrate(conn, NOW)
    conn.execute("UPDATE schema_migrations SET checksum = ? WHERE version = 1", ("0" * 64,))
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(conn, NOW)


@pytest.mark.spec("STO-4")
def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    conn = open_sync(tmp_path / "x.db")
    migrate(conn, NOW)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from_the_future', ?, ?)",
        (latest_version() + 1, "f" * 64, NOW),
    )
    with pytest.raises(MigrationError, match="newer than this Pressluft"):
        migrate(conn, NOW)


def _blocker(tx: WriteTx) -> str:
    """Holds the writer for a moment, so the commands sent meanwhile form one batch."""
    time.sleep(0.2)
    return "blocker"


async def _database(tmp_path: Path, **options: float) -> Database:
    path = tmp_path / "db.sqlite"
    conn = open_sync(path)
    migrate(conn, NOW)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT")
    conn.close()
    db = Database(path, FrozenClock(), **options)
    await db.open()
    return db


@pytest.mark.spec("STO-5")
async def test_a_failing_command_fails_alone_in_its_batch(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    sizes: list[int] = []
    db.add_commit_listener(lambda info: sizes.append(info.batch_size))

    def insert(key: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def command(tx: WriteTx) -> str:
            tx.conn.execute("INSERT INTO t VALUES (?, 1)", (key,))
            if fail:
                raise ValueError("boom")
            return key

        return command

    try:
        blocker = asyncio.create_task(db.write(_blocker))
        await asyncio.sleep(0.05)  # the blocker is on the writer thread now
        results = await asyncio.gather(
            blocker,
            db.write(insert("a")),
            db.write(insert("b", fail=True)),
            db.write(insert("c")),
            db.write(insert("a")),  # duplicate key: a constraint → Conflict
            return_exceptions=True,
        )
        assert results[1] == "a" and results[3] == "c"
        assert isinstance(results[2], ValueError)
        assert isinstance(results[4], Conflict)
        rows = await db.read(lambda c: c.execute("SELECT k FROM t ORDER BY k").fetchall())
        assert rows == [("a",), ("c",)]
        assert sizes == [1, 4], "the four commands were not committed together"
    finally:
        await db.close()


@pytest.mark.spec("STO-6")
async def test_a_failed_commit_acknowledges_nothing(tmp_path: Path) -> None:
    db = await _database(tmp_path)

    def setup(tx: WriteTx) -> None:
        tx.conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY) STRICT")
        tx.conn.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL"
            " REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED) STRICT"
        )

    def good(tx: WriteTx) -> str:
        tx.conn.execute("INSERT INTO t VALUES ('ok', 1)")
        return "ok"

    def orphan(tx: WriteTx) -> str:
        # A deferred foreign-key violation surfaces only at COMMIT.
        tx.conn.execute("INSERT INTO child VALUES (1, 42)")
        return "orphan"

    try:
        await db.write(setup)
        blocker = asyncio.create_task(db.write(_blocker))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            blocker, db.write(good), db.write(orphan), return_exceptions=True
        )
        assert results[0] == "blocker"
        assert all(isinstance(r, ServiceUnavailable) for r in results[1:]), results
        rows = await db.read(
            lambda c: (
                c.execute("SELECT count(*) FROM t").fetchone()[0],
                c.execute("SELECT count(*) FROM child").fetchone()[0],
            )
        )
        assert rows == (0, 0)
        assert await db.write(good) == "ok"  # the writer recovered
    finally:
        await db.close()


@pytest.mark.spec("STO-7")
async def test_concurrent_commands_share_transactions(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    sizes: list[int] = []
    db.add_commit_listener(lambda info: sizes.append(info.batch_size))

    def insert(i: int):  # type: ignore[no-untyped-def]
        return lambda tx: tx.conn.execute("INSERT INTO t VALUES (?, ?)", (f"k{i}", i)) and i

    try:
        results = await asyncio.gather(*(db.write(insert(i)) for i in range(200)))
        assert sorted(results) == list(range(200))
        assert sum(sizes) == 200
        assert len(sizes) < 200
    finally:
        await db.close()


def _put(key: str) -> Callable[[WriteTx], str]:
    def command(tx: WriteTx) -> str:
        tx.conn.execute("INSERT INTO t VALUES (?, 1)", (key,))
        return key

    return command


def _slow(tx: WriteTx) -> str:
    """Holds the writer for a second: a commit that outlasts a half-second window."""
    time.sleep(1.0)
    return "slow"


@pytest.mark.spec("STO-8")
async def test_background_writes_wait_for_a_commit_only_while_requests_write(
    tmp_path: Path,
) -> None:
    # An hour's linger: a write that waited for it would never end within the test.
    hour = 3600.0
    (tmp_path / "idle").mkdir()
    (tmp_path / "busy").mkdir()
    # An hour's window too: whatever the machine's pace, a write counted as a request's
    # would keep the next background write waiting.
    idle = await _database(tmp_path / "idle", foreground_window=hour)
    try:
        # No request has written: the background write commits at once, alone — and
        # so does the next: a background commit is not a request writing (a queue
        # draining on its own waited its linger before every commit).
        assert await asyncio.wait_for(idle.write(_put("alone"), linger=hour), 60) == "alone"
        # (90 s: a write that waited would fail the wait below, and the close after it
        # would still end.)
        assert await asyncio.wait_for(idle.write(_put("again"), linger=90), 60) == "again"
    finally:
        await idle.close()

    busy = await _database(tmp_path / "busy", foreground_window=hour)
    sizes: list[int] = []
    busy.add_commit_listener(lambda info: sizes.append(info.batch_size))
    try:
        assert await busy.write(_put("request")) == "request"
        background = asyncio.create_task(busy.write(_put("rider"), linger=hour))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not background.done() and sizes == [1]  # it waits for a commit to share
        assert await busy.write(_put("next")) == "next"
        assert await background == "rider"
        assert sizes == [1, 2]  # one commit for both
    finally:
        await busy.close()

    # A slow disk: the request's commit outlasts the window, yet requests are still
    # writing — the window counts from the commit, not only from the submission.
    (tmp_path / "slow").mkdir()
    slow = await _database(tmp_path / "slow", foreground_window=0.5)
    sizes.clear()
    slow.add_commit_listener(lambda info: sizes.append(info.batch_size))
    try:
        assert await slow.write(_slow) == "slow"  # 1 s: longer than the window
        background = asyncio.create_task(slow.write(_put("late rider"), linger=hour))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not background.done() and sizes == [1]
        assert await slow.write(_put("after")) == "after"
        assert await background == "late rider"
        assert sizes == [1, 2]
    finally:
        await slow.close()


@pytest.mark.spec("STO-8")
async def test_a_lingering_write_waits_for_its_own_linger_and_not_for_a_close(
    tmp_path: Path,
) -> None:
    hour = 3600.0
    long = 90.0  # a write that waited this long would fail a wait below, and still end
    db = await _database(tmp_path, foreground_window=hour)
    try:
        assert await db.write(_put("request")) == "request"
        # A write that may wait long rides with the next request's commit...
        rider = asyncio.create_task(db.write(_put("rider"), linger=long))
        await asyncio.sleep(0)
        assert await db.write(_put("next")) == "next" and await rider == "rider"
        # ...which leaves no long timer behind for the next one to wait on: a
        # write that may wait 50 ms commits after its own linger.
        short = db.write(_put("short"), linger=0.05)
        assert await asyncio.wait_for(short, 60) == "short"
        # A close does not wait out a linger: it commits what is queued.
        waiting = asyncio.create_task(db.write(_put("waiting"), linger=long))
        await asyncio.sleep(0)
        await asyncio.wait_for(db.close(), 60)
        assert await waiting == "waiting"
    finally:
        await db.close()


@pytest.mark.spec("STO-5")
async def test_a_caller_that_goes_away_does_not_stall_or_cancel_its_command(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    try:
        leader = asyncio.create_task(db.write(_blocker))
        await asyncio.sleep(0.05)
        follower = asyncio.create_task(
            db.write(lambda tx: tx.conn.execute("INSERT INTO t VALUES ('f', 1)") and "f")
        )
        await asyncio.sleep(0.01)
        leader.cancel()
        follower_gone = asyncio.create_task(
            db.write(lambda tx: tx.conn.execute("INSERT INTO t VALUES ('g', 1)") and "g")
        )
        await asyncio.sleep(0.01)
        follower_gone.cancel()
        assert await follower == "f"
        rows = await db.read(lambda c: c.execute("SELECT k FROM t ORDER BY k").fetchall())
        assert rows == [("f",), ("g",)]  # the cancelled caller's command still committed
        assert await db.write(lambda tx: "after") == "after"
    finally:
        await db.close()


@pytest.mark.spec("STO-6")
async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    await db.close()
    with pytest.raises(ServiceUnavailable):
        await db.write(lambda tx: None)


@pytest.mark.spec("STO-5")
async def test_a_listener_that_blows_up_does_not_stall_the_writer(tmp_path: Path) -> None:
    db = await _database(tmp_path)

    def explode(info: object) -> None:
        raise RuntimeError("listener bug")

    db.add_commit_listener(explode)
    try:
        assert await db.write(lambda tx: "first") == "first"  # committed: the caller hears so
        results = await asyncio.gather(*(db.write(lambda tx, i=i: i) for i in range(5)))
        assert results == list(range(5))
        assert await asyncio.wait_for(db.write(lambda tx: "after"), 5) == "after"
    finally:
        await db.close()


@pytest.mark.spec("STO-6")
async def test_a_command_that_ends_the_transaction_fails_its_batch(tmp_path: Path) -> None:
    db = await _database(tmp_path)

    def rogue(tx: WriteTx) -> str:
        tx.conn.execute("COMMIT")  # pretend SQLite rolled back under us
        return "rogue"

    try:
        blocker = asyncio.create_task(db.write(_blocker))
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            blocker,
            db.write(lambda tx: tx.conn.execute("INSERT INTO t VALUES ('x', 1)") and "x"),
            db.write(rogue),
            return_exceptions=True,
        )
        assert results[0] == "blocker"
        assert all(isinstance(r, ServiceUnavailable) for r in results[1:]), results
        assert await db.write(lambda tx: "after") == "after"
    finally:
        await db.close()


@pytest.mark.spec("STO-6")
async def test_reads_and_checkpoints_after_close_are_service_unavailable(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    await db.close()
    with pytest.raises(ServiceUnavailable):
        await db.read(lambda c: 1)
    with pytest.raises(ServiceUnavailable):
        await db.checkpoint()


@pytest.mark.spec("STO-9")
async def test_a_repeated_read_is_kept_until_any_connection_commits(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    reads = 0

    def count(conn: sqlite3.Connection) -> int:
        nonlocal reads
        reads += 1
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    def nothing(conn: sqlite3.Connection) -> None:
        nonlocal reads
        reads += 1

    try:
        assert [await db.read_cached("n", count) for _ in range(3)] == [0, 0, 0]
        assert reads == 1
        await db.write(_put("ours"))  # this daemon's writer commits
        assert await db.read_cached("n", count) == 1
        assert reads == 2
        other = open_sync(tmp_path / "db.sqlite")  # another process's connection (the CLI)
        other.execute("INSERT INTO t VALUES ('theirs', 1)")
        other.close()
        assert [await db.read_cached("n", count) for _ in range(2)] == [2, 2]
        assert reads == 3
        await db.read_cached("none", nothing)
        await db.read_cached("none", nothing)
        assert reads == 5  # None is never kept
    finally:
        await db.close()


@pytest.mark.spec("STO-9")
async def test_a_database_it_cannot_read_at_once_counts_as_changed(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    path = tmp_path / "db.sqlite"
    await db.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # no other connection may read
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO t VALUES ('held', 1)")
    watch = open_version_watch(path)
    try:
        assert read_version(watch) is None  # SQLITE_BUSY at once: no wait on the loop
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        assert read_version(watch) is not None
    finally:
        watch.close()
