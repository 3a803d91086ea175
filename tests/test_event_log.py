"""The event log: append, expected versions, the hash chain, projections, replay, upcasting."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from pressluft.contexts.settings.events import SettingsChanged
from pressluft.db import WriteTx, migrate
from pressluft.db.connection import open_sync
from pressluft.errors import Conflict, StreamConflict
from pressluft.events import NO_STREAM, Meta, append, decode_event, verify_chain
from pressluft.events.chain import GENESIS_HASH, event_hash
from pressluft.events.projection import Envelope, Projector, ProjectorSet
from pressluft.events.upcast import UPCASTERS, UnknownEventType
from pressluft.features import (
    MIGRATIONS,
    NON_PROJECTION_TABLES,
    PROJECTORS,
    rebuild_in_place,
    verify_replay,
)
from pressluft.runtime import Runtime

META = Meta(actor="test:suite", correlation_id="req-1")
NOW = "2026-01-01T00:00:00.000000Z"


def _append(stream: str, expected: int | None, *events: SettingsChanged):  # type: ignore[no-untyped-def]
    return lambda tx: append(tx, stream, expected, list(events), META)


@pytest.mark.spec("EVT-1")
async def test_append_assigns_versions_seqs_hashes_and_projects(runtime: Runtime) -> None:
    first = await runtime.db.write(
        _append("settings", NO_STREAM, SettingsChanged(control_plane_domain="a.example.com"))
    )
    second = await runtime.db.write(
        _append(
            "settings",
            1,
            SettingsChanged(control_plane_domain="b.example.com"),
            SettingsChanged(control_plane_domain="c.example.com"),
        )
    )
    assert [r.stream_version for r in first + second] == [1, 2, 3]
    assert [r.seq for r in first + second] == [1, 2, 3]

    def rows(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
        return conn.execute(
            "SELECT seq, stream, stream_version, type, schema_version, data, meta, recorded_at,"
            " prev_hash, hash FROM events ORDER BY seq"
        ).fetchall()

    stored = await runtime.db.read(rows)
    prev = GENESIS_HASH
    for seq, stream, version, type_, sv, data, meta, at, prev_hash, digest in stored:
        assert prev_hash == prev
        assert digest == event_hash(seq, stream, version, type_, sv, data, meta, at, prev_hash)  # type: ignore[arg-type]
        prev = digest
    assert msgspec.json.decode(stored[0][5]) == {"control_plane_domain": "a.example.com"}
    assert msgspec.json.decode(stored[0][6]) == {"actor": "test:suite", "correlation_id": "req-1"}
    settings = await runtime.db.read(
        lambda c: c.execute("SELECT control_plane_domain, state_version FROM settings").fetchone()
    )
    assert settings == ("c.example.com", 3)
    head = await runtime.db.read(
        lambda c: c.execute("SELECT seq, hash FROM event_log_head").fetchone()
    )
    assert head == (3, prev)


@pytest.mark.spec("EVT-2")
async def test_stale_expected_version_appends_nothing(runtime: Runtime) -> None:
    await runtime.db.write(_append("settings", NO_STREAM, SettingsChanged(preview_domain=None)))
    with pytest.raises(StreamConflict) as caught:
        await runtime.db.write(_append("settings", 0, SettingsChanged(preview_domain=None)))
    assert (caught.value.expected, caught.value.actual) == (0, 1)
    assert caught.value.status == 409 and caught.value.code == "conflict"
    with pytest.raises(StreamConflict):
        await runtime.db.write(_append("settings", 5, SettingsChanged(preview_domain=None)))
    count = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0])
    assert count == 1


@pytest.mark.spec("EVT-3")
def test_a_failing_projector_takes_the_event_with_it(tmp_path: Path) -> None:
    conn = open_sync(tmp_path / "x.db")
    migrate(conn, NOW, sources=MIGRATIONS)

    def explode(conn: sqlite3.Connection, event: object, env: Envelope) -> None:
        conn.execute("UPDATE settings SET state_version = 1")
        raise RuntimeError("projector bug")

    broken = ProjectorSet((Projector("broken", ("settings",), {SettingsChanged: explode}),))
    conn.execute("BEGIN IMMEDIATE")
    tx = WriteTx(conn, datetime(2026, 1, 1, tzinfo=UTC), projectors=PROJECTORS)
    with pytest.raises(RuntimeError):
        append(tx, "settings", None, [SettingsChanged(preview_domain=None)], META, broken)
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    assert conn.execute("SELECT seq FROM event_log_head").fetchone()[0] == 0


@pytest.mark.spec("EVT-4")
async def test_racing_appenders_exactly_one_wins_in_shared_transactions(runtime: Runtime) -> None:
    sizes: list[int] = []
    runtime.db.add_commit_listener(lambda info: sizes.append(info.batch_size))
    results = await asyncio.gather(
        *(
            runtime.db.write(
                _append(
                    "settings", NO_STREAM, SettingsChanged(control_plane_domain=f"h{i}.example.com")
                )
            )
            for i in range(64)
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, StreamConflict)]
    assert len(winners) == 1 and len(losers) == 63
    assert len(sizes) < 64
    assert verify_chain(open_sync(runtime.config.database_path, "reader")).ok


@pytest.mark.spec("EVT-17")
async def test_a_group_commit_moves_the_head_once_and_a_failed_append_leaves_no_gap(
    runtime: Runtime,
) -> None:
    sizes: list[int] = []
    runtime.db.add_commit_listener(lambda info: sizes.append(info.batch_size))

    def fails_after_appending(tx: WriteTx) -> None:
        append(tx, "other", None, [SettingsChanged(preview_domain=None)], META)
        raise RuntimeError("after the append")

    raw = open_sync(runtime.config.database_path, "reader")
    before = raw.execute("SELECT seq FROM event_log_head").fetchone()[0]
    seen = len(sizes)
    results = await asyncio.gather(
        runtime.db.write(_append("a", None, SettingsChanged(preview_domain=None))),
        runtime.db.write(fails_after_appending),
        runtime.db.write(_append("b", None, SettingsChanged(preview_domain=None))),
        return_exceptions=True,
    )
    # One group commit took all three (a background write may have joined it, and
    # another may have committed on its own since: not necessarily the last one).
    assert max(sizes[seen:]) >= 3, sizes[seen:]
    assert isinstance(results[1], RuntimeError)
    rows = raw.execute("SELECT stream FROM events WHERE seq > ? ORDER BY seq", (before,))
    streams = [stream for (stream,) in rows.fetchall()]
    assert "a" in streams and "b" in streams and "other" not in streams
    (head,) = raw.execute("SELECT seq FROM event_log_head").fetchone()
    assert head == before + len(streams)  # consecutive seqs, the head at the last one
    assert verify_chain(raw).ok
    raw.close()


@pytest.mark.spec("EVT-17")
async def test_a_group_commit_whose_only_append_fails_does_not_move_the_head(
    runtime: Runtime,
) -> None:
    def fails_after_appending(tx: WriteTx) -> None:
        append(tx, "lonely", None, [SettingsChanged(preview_domain=None)], META)
        raise RuntimeError("after the append")

    raw = open_sync(runtime.config.database_path, "reader")
    before = raw.execute("SELECT seq, hash FROM event_log_head").fetchone()
    results = await asyncio.gather(
        runtime.db.write(fails_after_appending),
        runtime.db.write(lambda tx: tx.conn.execute("SELECT 1").fetchone()),
        return_exceptions=True,
    )
    assert isinstance(results[0], RuntimeError)
    assert raw.execute("SELECT seq, hash FROM event_log_head").fetchone() == before
    assert raw.execute("SELECT count(*) FROM events WHERE stream = 'lonely'").fetchone() == (0,)
    assert verify_chain(raw).ok
    raw.close()


@pytest.mark.spec("EVT-5")
async def test_events_cannot_be_updated_or_deleted(runtime: Runtime) -> None:
    await runtime.db.write(_append("settings", None, SettingsChanged(preview_domain=None)))
    for sql in ("UPDATE events SET data = '{}'", "DELETE FROM events"):
        # Through the writer the abort is a client-visible conflict …
        with pytest.raises(Conflict):
            await runtime.db.write(lambda tx, sql=sql: tx.conn.execute(sql))
        # … and underneath it is SQLite's own trigger.
        raw = open_sync(runtime.config.database_path)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(sql)
        raw.close()
    count = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0])
    assert count == 1


def _seed(path: Path, count: int) -> sqlite3.Connection:
    conn = open_sync(path)
    migrate(conn, NOW, sources=MIGRATIONS)
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        tx = WriteTx(conn, datetime(2026, 1, 1, 0, 0, i % 60, tzinfo=UTC), projectors=PROJECTORS)
        append(
            tx, "settings", None, [SettingsChanged(control_plane_domain=f"h{i}.example.com")], META
        )
        conn.execute("COMMIT")
    return conn


def _unprotect(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER events_are_immutable")
    conn.execute("DROP TRIGGER events_are_permanent")


@pytest.mark.spec("EVT-6")
def test_an_intact_chain_verifies(tmp_path: Path) -> None:
    conn = _seed(tmp_path / "x.db", 5)
    result = verify_chain(conn)
    assert result.ok and result.checked == 5 and result.head_seq == 5


@pytest.mark.spec("EVT-8")
@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ("DELETE FROM events WHERE seq = 3", 3),
        ("DELETE FROM events WHERE seq = 5", 5),
        (
            "UPDATE events SET seq = seq + 100 WHERE seq IN (2, 4);"
            "UPDATE events SET seq = 4 WHERE seq = 102; UPDATE events SET seq = 2 WHERE seq = 104",
            2,
        ),
        ("UPDATE events SET recorded_at = '2030-01-01T00:00:00.000000Z' WHERE seq = 2", 2),
        ("UPDATE event_log_head SET seq = 4", 5),
    ],
)
def test_verify_names_the_first_bad_event(tmp_path: Path, tamper: str, first_bad: int) -> None:
    conn = _seed(tmp_path / "x.db", 5)
    _unprotect(conn)
    for statement in tamper.split(";"):
        conn.execute(statement)
    result = verify_chain(conn)
    assert not result.ok
    assert result.first_bad_seq == first_bad, result


@pytest.mark.spec("EVT-9")
def test_replay_verify_finds_a_corrupted_projection_row(tmp_path: Path) -> None:
    conn = _seed(tmp_path / "x.db", 20)
    clean = verify_replay(conn, NOW)
    assert clean.ok and clean.events == 20
    conn.execute("UPDATE settings SET control_plane_domain = 'evil.example.com'")
    dirty = verify_replay(conn, NOW)
    assert not dirty.ok
    [diff] = dirty.differences
    assert diff.table == "settings" and diff.key == (1,)
    assert diff.live is not None and "evil.example.com" in diff.live
    assert diff.replayed is not None and "h19.example.com" in diff.replayed


@pytest.mark.spec("EVT-10")
def test_rebuild_in_place_restores_the_projection(tmp_path: Path) -> None:
    conn = _seed(tmp_path / "x.db", 10)
    before = conn.execute("SELECT * FROM settings").fetchall()
    conn.execute("DELETE FROM settings")
    assert rebuild_in_place(conn) == 10
    assert conn.execute("SELECT * FROM settings").fetchall() == before
    assert verify_replay(conn, NOW).ok


@pytest.mark.spec("EVT-11")
def test_old_event_shapes_are_upcast_before_projection(tmp_path: Path) -> None:
    # Pretend settings.changed v1 stored the domain under another name.
    old = '{"cp_domain":"old.example.com"}'
    UPCASTERS[("settings.changed", 1)] = lambda d: {"control_plane_domain": d.pop("cp_domain")}
    original = SettingsChanged.SCHEMA_VERSION
    try:
        SettingsChanged.SCHEMA_VERSION = 2  # type: ignore[misc]
        event = decode_event("settings.changed", 1, old)
        assert event == SettingsChanged(control_plane_domain="old.example.com")
        with pytest.raises(UnknownEventType, match="newer than this code"):
            decode_event("settings.changed", 3, old)
        del UPCASTERS[("settings.changed", 1)]
        with pytest.raises(UnknownEventType, match="no upcaster"):
            decode_event("settings.changed", 1, old)
    finally:
        SettingsChanged.SCHEMA_VERSION = original  # type: ignore[misc]
        UPCASTERS.pop(("settings.changed", 1), None)
    with pytest.raises(UnknownEventType, match="unknown event type"):
        decode_event("node.teleported", 1, "{}")


@pytest.mark.spec("EVT-11")
def test_replay_of_an_unknown_event_type_fails_loudly(tmp_path: Path) -> None:
    conn = _seed(tmp_path / "x.db", 2)
    conn.execute(
        "INSERT INTO events VALUES (3, 'x', 1, 'node.teleported', 1, '{}', '{}', ?, ?, ?)",
        (NOW, "0" * 64, "0" * 64),
    )
    with pytest.raises(UnknownEventType):
        verify_replay(conn, NOW)


@pytest.mark.spec("EVT-1")
def test_every_state_table_is_a_projection_or_explained(tmp_path: Path) -> None:
    conn = open_sync(tmp_path / "x.db")
    migrate(conn, NOW, sources=MIGRATIONS)
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    projections = set(PROJECTORS.tables)
    assert projections.isdisjoint(NON_PROJECTION_TABLES)
    assert tables == projections | set(NON_PROJECTION_TABLES)
