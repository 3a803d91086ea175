"""Job-queue benchmark: Pressluft's full job path against huey's SqliteHuey, and idle latency.

Measured in one run, on the same disk (a scratch dir under .artifacts/bench), both
with `synchronous=FULL` (every enqueue and every state change durable):

1. throughput: N no-op jobs spread over 100 sites, enqueued and run to
   completion, with 1 producer and with 16 concurrent producers (each producer's
   enqueue is durable before its next; huey's producers are threads, Pressluft's
   are coroutines submitting through the same write path as the API).
   - Pressluft: the daemon's runtime in this process — `job.enqueued` events in
     the hash-chained log, the claim with its per-site/per-node locks, fenced
     leases, heartbeats, log lines, `job.claimed`/`job.succeeded` events,
     `workers` = 4 slots.
   - huey: `SqliteHuey` with a thread consumer of 4 workers running the same
     no-op task (no locks, leases, events or logs). Its polling is tuned in its
     favour (first retry after 10 ms, at most 100 ms).
   Rounds alternate the two; the ratio is the median of per-round ratios.
2. idle latency: one job at a time into an idle queue; the time from the
   enqueue call to the handler starting (p50/p99), for both.

Goals (issue 4): throughput >= 1.0x huey with 16 producers; Pressluft idle p99
<= 50 ms. Exits 1 when a goal is missed. The 1-producer ratio is reported, not
judged: one serial producer measures the round trip of one durable enqueue (its
next enqueue waits for the commit), in which Pressluft's one commit carries the
whole job path and huey's two carry one row each (specs/jobs.md, Decisions;
changes/queue-throughput/results.md § 8).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvloop
from huey import SqliteHuey
from huey.consumer import Consumer

from pressluft.config import resolve
from pressluft.db import CommitInfo
from pressluft.events import Meta, Recorded
from pressluft.jobs.queue import JobSpec, enqueue
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort
from pressluft.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
META = Meta(actor="bench")
SITES = [f"00000000-0000-4000-8000-{i:012d}" for i in range(100)]
WORKERS = 4
#: Producer counts held to the throughput goal: concurrent producers measure the
#: queue; one serial producer measures a durable round trip (see the docstring).
JUDGED_PRODUCERS = (16,)


# -- Pressluft ----------------------------------------------------------------------------


def _runtime(data_dir: Path) -> Runtime:
    config, _ = resolve(
        "serve",
        {
            "data_dir": str(data_dir),
            "workers": str(WORKERS),
        },
        environ={},
    )
    return Runtime(config)


async def pressluft_throughput(data_dir: Path, count: int, producers: int = 1) -> float:
    runtime = _runtime(data_dir)
    await runtime.start()
    done = asyncio.Event()
    finished = 0

    def count_ends(info: CommitInfo) -> None:
        nonlocal finished
        for item in info.published:
            if isinstance(item, Recorded) and item.type == "job.succeeded":
                finished += 1
                if finished == count:
                    done.set()

    runtime.db.add_commit_listener(count_ends)
    try:

        async def produce(first: int) -> None:
            for i in range(first, count, producers):  # each enqueue durable before the next
                spec = JobSpec(job_type="noop", site_id=SITES[i % len(SITES)])
                await runtime.db.write(lambda tx, spec=spec: enqueue(tx, spec, META))

        started = time.perf_counter()
        await asyncio.gather(*(produce(p) for p in range(producers)))
        await done.wait()
        elapsed = time.perf_counter() - started
    finally:
        await runtime.stop()
    return count / elapsed


class _Probe(JobWorker[NoArgs]):
    """Notes when each job starts."""

    kind = "probe"
    args = NoArgs

    def __init__(self, began: dict[str, float], started: asyncio.Event) -> None:
        self.began = began
        self.started = started

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        self.began[ctx.job_id] = time.perf_counter()
        self.started.set()


async def pressluft_latency(data_dir: Path, samples: int) -> list[float]:
    runtime = _runtime(data_dir)
    began: dict[str, float] = {}
    started = asyncio.Event()

    runtime.jobs.register(_Probe(began, started))
    await runtime.start()
    latencies = []
    try:
        for _ in range(samples):
            await asyncio.sleep(0.005)  # idle: the pool is asleep
            started.clear()
            spec = JobSpec(job_type="probe")
            t0 = time.perf_counter()
            job_id = await runtime.db.write(lambda tx, spec=spec: enqueue(tx, spec, META))
            while job_id not in began:
                await started.wait()
                started.clear()
            latencies.append(began[job_id] - t0)
    finally:
        await runtime.stop()
    return latencies


# -- huey -----------------------------------------------------------------------------------


def _huey(path: Path) -> SqliteHuey:
    return SqliteHuey("bench", filename=str(path), fsync=True)


def _consumer(huey: SqliteHuey) -> Consumer:
    return Consumer(
        huey,
        workers=WORKERS,
        worker_type="thread",
        periodic=False,
        initial_delay=0.01,
        backoff=1.15,
        max_delay=0.1,
        check_worker_health=False,
    )


def huey_throughput(path: Path, count: int, producers: int = 1) -> float:
    huey = _huey(path)
    lock = threading.Lock()
    done = threading.Event()
    finished = 0

    @huey.task()
    def noop(site: str) -> None:
        nonlocal finished
        with lock:
            finished += 1
            if finished == count:
                done.set()

    def produce(first: int) -> None:
        for i in range(first, count, producers):
            noop(SITES[i % len(SITES)])

    consumer = _consumer(huey)
    consumer.start()
    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.wait()
        elapsed = time.perf_counter() - started
    finally:
        consumer.stop(graceful=True)
    return count / elapsed


def huey_latency(path: Path, samples: int) -> list[float]:
    huey = _huey(path)
    began: dict[int, float] = {}

    @huey.task()
    def probe(i: int) -> None:
        began[i] = time.perf_counter()

    consumer = _consumer(huey)
    consumer.start()
    latencies = []
    try:
        for i in range(samples):
            time.sleep(0.005)
            t0 = time.perf_counter()
            probe(i)
            while i not in began:
                time.sleep(0.0005)
            latencies.append(began[i] - t0)
    finally:
        consumer.stop(graceful=True)
    return latencies


# -- report ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="jobs per throughput round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median ratio)")
    parser.add_argument("--samples", type=int, default=300, help="idle latency samples")
    args = parser.parse_args()
    logging.getLogger("huey").setLevel(logging.ERROR)

    base = ROOT / ".artifacts" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="queue-", dir=base))
    print(f"scratch dir: {work}")
    print(f"SQLite {sqlite3.sqlite_version}, synchronous=FULL, {os.cpu_count()} CPUs, ", end="")
    print(f"{WORKERS} workers, {args.count} no-op jobs over {len(SITES)} sites per round\n")
    producers = (1, 16)
    ours: dict[int, list[float]] = {p: [] for p in producers}
    theirs: dict[int, list[float]] = {p: [] for p in producers}
    try:
        for r in range(args.rounds):
            for p in producers:
                theirs[p].append(huey_throughput(work / f"huey-{p}-{r}.db", args.count, p))
                ours[p].append(
                    uvloop.run(pressluft_throughput(work / f"pl-{p}-{r}", args.count, p))
                )
        our_lat = uvloop.run(pressluft_latency(work / "pl-latency", args.samples))
        their_lat = huey_latency(work / "huey-latency.db", args.samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ok = True
    print(f"{'measurement':<48} {'value':>14} {'goal':>10}")
    for p in producers:
        ratio = statistics.median(o / t for o, t in zip(ours[p], theirs[p], strict=True))
        judged = p in JUDGED_PRODUCERS
        met = ratio >= 1.0 or not judged
        ok &= met
        label = f"{p} producer{'s' if p > 1 else ''}"
        print(f"{'huey SqliteHuey, ' + label:<48} {statistics.median(theirs[p]):>10,.0f} j/s")
        print(f"{'pressluft full job path, ' + label:<48} {statistics.median(ours[p]):>10,.0f} j/s")
        verdict = "" if met else "MISSED"
        goal = ">=1.0x" if judged else "reported"
        print(f"{'  ratio pressluft / huey, ' + label:<48} {ratio:>13.2f}x {goal:>10} {verdict}")
    p50, p99 = percentile(our_lat, 0.50) * 1000, percentile(our_lat, 0.99) * 1000
    h50, h99 = percentile(their_lat, 0.50) * 1000, percentile(their_lat, 0.99) * 1000
    latency_ok = p99 <= 50
    ok &= latency_ok
    print(f"{'pressluft idle enqueue->start p50':<48} {p50:>11.2f} ms")
    verdict = "" if latency_ok else "MISSED"
    print(f"{'pressluft idle enqueue->start p99':<48} {p99:>11.2f} ms {'<=50 ms':>10} {verdict}")
    print(f"{'huey idle enqueue->start p50 / p99':<48} {h50:>6.2f} / {h99:.2f} ms")
    for p in producers:
        ratios = [o / t for o, t in zip(ours[p], theirs[p], strict=True)]
        print(f"\nper-round jobs/s, {p} producer(s): pressluft", [round(v) for v in ours[p]])
        print(f"per-round jobs/s, {p} producer(s): huey     ", [round(v) for v in theirs[p]])
        print(
            f"per-round ratios, {p} producer(s):          ",
            [round(r, 2) for r in ratios],
            f"(range {min(ratios):.2f}-{max(ratios):.2f}x)",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
