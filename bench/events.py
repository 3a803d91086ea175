"""Event-log benchmark: Pressluft's append path against raw sqlite3, and replay speed.

Measured in one run, on the same disk (a scratch dir under .artifacts/bench), with
the same `synchronous` setting (FULL, the daemon's default):

1. raw sqlite3: one INSERT per `BEGIN IMMEDIATE … COMMIT` — the per-transaction
   fsync limit of this disk;
2. sequential appends: one `settings.changed` event per command through the real
   path (Database.write → events.append: version check, hash chain, projection,
   log head), awaited one after another;
3. 64 concurrent appenders through the group commit;
4. replay: rebuilding the projections from a log of REPLAY_EVENTS events.

Each of 1-3 runs ROUNDS times interleaved; a ratio is the median over rounds of
(Pressluft / raw) measured back to back in the same round.
Goals (issue 2): 64 concurrent >= 2x raw, replay >= 50,000 events/s. Exits 1 when
one of them is missed. The sequential ratio (issue 2 asked >= 0.5x) is reported, not
judged (issue 19): one awaited append per transaction measures one durable round
trip through the hash chain and projections, a figure no user of a control plane
feels — commands arrive concurrently and share the group commit, which the
64-appender goal holds (specs/events.md, Decisions).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from pressluft.affinity import colocate_current_thread, restore_current_thread
from pressluft.clock import SystemClock
from pressluft.contexts.settings.events import SettingsChanged
from pressluft.db import Database, WriteTx, migrate
from pressluft.db.connection import open_sync
from pressluft.events import Meta, append
from pressluft.events.log import rebuild
from pressluft.features import PROJECTORS

ROOT = Path(__file__).resolve().parents[1]
META = Meta(actor="bench", correlation_id="bench")
NOW = "2026-01-01T00:00:00.000000Z"

#: Goals held against raw sqlite3 (ratio >= goal); a measurement not named here is
#: printed with its ratio and "reported", and never makes the run fail.
JUDGED_RATIOS = {"concurrent64": 2.0}
#: Sequential appends: the issue-2 goal, shown next to the figure but not judged.
REPORTED_RATIOS = {"sequential": 0.5}
REPLAY_GOAL = 50_000.0


def verdict(ratios: dict[str, float], replay: float) -> dict[str, bool]:
    """Whether each judged goal is met; the run fails when one is not."""
    met = {name: ratios[name] >= goal for name, goal in JUDGED_RATIOS.items()}
    met["replay"] = replay >= REPLAY_GOAL
    return met


def raw_sqlite(path: Path, count: int, synchronous: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, stream TEXT, data TEXT) STRICT")
    started = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO t (stream, data) VALUES (?, ?)",
            ("settings", f'{{"control_plane_domain":"h{i}.example.com"}}'),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


async def _open(path: Path, synchronous: str) -> Database:
    conn = open_sync(path)
    migrate(conn, NOW)
    conn.close()
    db = Database(path, SystemClock(), synchronous=synchronous, projectors=PROJECTORS)
    await db.open()
    return db


def _command(i: int, stream: str):  # type: ignore[no-untyped-def]
    event = SettingsChanged(control_plane_domain=f"h{i}.example.com")
    return lambda tx: append(tx, stream, None, [event], META)


async def pressluft_appends(path: Path, count: int, concurrency: int, synchronous: str) -> float:
    # As the daemon does (setting cpu_affinity=colocate, pressluft/affinity.py).
    previous = colocate_current_thread()
    db = await _open(path, synchronous)
    per_worker = count // concurrency

    async def worker(k: int) -> None:
        for i in range(per_worker):
            await db.write(_command(i, f"bench-{k}"))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
        restore_current_thread(previous)
    return per_worker * concurrency / elapsed


def build_log(path: Path, count: int) -> None:
    conn = open_sync(path, synchronous="OFF")
    migrate(conn, NOW)
    batch = 10_000
    written = 0
    while written < count:
        conn.execute("BEGIN IMMEDIATE")
        tx = WriteTx(conn, datetime(2026, 1, 1, tzinfo=UTC), projectors=PROJECTORS)
        for i in range(written, min(count, written + batch)):
            append(
                tx,
                f"stream-{i % 1000}",
                None,
                [SettingsChanged(control_plane_domain=f"h{i}.example.com")],
                META,
            )
        conn.execute("COMMIT")
        written = min(count, written + batch)
    conn.close()


def replay_speed(path: Path, scratch: Path) -> float:
    source = open_sync(path, "reader")
    target = open_sync(scratch, synchronous="OFF")
    migrate(target, NOW)
    target.execute("BEGIN")
    source.execute("BEGIN")
    started = time.perf_counter()
    count = rebuild(source, target, PROJECTORS)
    elapsed = time.perf_counter() - started
    source.execute("COMMIT")
    target.execute("COMMIT")
    source.close()
    target.close()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000, help="appends per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replay-events", type=int, default=200_000)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    args = parser.parse_args()

    base = ROOT / ".artifacts" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="events-", dir=base))
    print(f"scratch dir: {work} (same filesystem as the data dir)")
    print(
        f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous}, {os.cpu_count()} CPUs\n"
    )
    results: dict[str, list[float]] = {"raw": [], "sequential": [], "concurrent64": []}
    try:
        for r in range(args.rounds):
            results["raw"].append(raw_sqlite(work / f"raw-{r}.db", args.count, args.synchronous))
            # uvloop: the loop the daemon runs on (pressluft.cli).
            results["sequential"].append(
                uvloop.run(pressluft_appends(work / f"seq-{r}.db", args.count, 1, args.synchronous))
            )
            results["concurrent64"].append(
                uvloop.run(
                    pressluft_appends(work / f"c64-{r}.db", args.count * 4, 64, args.synchronous)
                )
            )
        build_log(work / "replay.db", args.replay_events)
        replay = max(replay_speed(work / "replay.db", work / f"scratch-{i}.db") for i in range(2))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    raw = statistics.median(results["raw"])

    def paired(name: str) -> float:
        # Each round measured raw and Pressluft back to back; pairing them cancels
        # the disk's drift between rounds.
        return statistics.median(p / r for p, r in zip(results[name], results["raw"], strict=True))

    ratios = {name: paired(name) for name in ("sequential", "concurrent64")}
    met = verdict(ratios, replay)
    rows: list[tuple[str, float, str | None]] = [
        ("raw sqlite3, 1 row/transaction", raw, None),
        ("pressluft sequential appends", statistics.median(results["sequential"]), "sequential"),
        (
            "pressluft 64 concurrent appenders",
            statistics.median(results["concurrent64"]),
            "concurrent64",
        ),
    ]
    print(f"{'measurement':<36} {'events/s':>12} {'ratio':>8} {'goal':>10}")
    for label, rate, name in rows:
        ratio_s = f"{ratios[name]:.2f}x" if name is not None else ""
        if name is None:
            goal_s, mark = "", ""
        elif name in JUDGED_RATIOS:
            goal_s = f">={JUDGED_RATIOS[name]}x"
            mark = "" if met[name] else "MISSED"
        elif name in REPORTED_RATIOS:
            goal_s = "reported"
            mark = f"(issue 2 asked >={REPORTED_RATIOS[name]}x; not judged)"
        print(f"{label:<36} {rate:>12,.0f} {ratio_s:>8} {goal_s:>10} {mark}")
    label = f"replay ({args.replay_events:,} events)"
    mark = "" if met["replay"] else "MISSED"
    print(f"{label:<36} {replay:>12,.0f} {'':>8} {'>=50k/s':>10} {mark}")
    print("\nper-round events/s:", {k: [round(v) for v in vs] for k, vs in results.items()})
    for name in ("sequential", "concurrent64"):
        per_round = [round(p / r, 2) for p, r in zip(results[name], results["raw"], strict=True)]
        print(f"per-round ratios {name}: {per_round}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
