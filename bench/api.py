"""API benchmark: what a request costs in a real daemon, against a bare Litestar app.

Measured in one run, from outside, with `wrk` (Debian's `wrk`, `make system-deps`)
in its own process: WRK_CONNECTIONS keep-alive connections on loopback, DURATION
seconds per measurement after a short warm-up.

1. Pressluft: a real `pressluft serve` process on loopback, its data dir seeded
   (through the service layer, before it starts) with SEED_JOBS finished no-op
   jobs, SEED_NODES recorded nodes and SEED_SITES sites on them (their creation
   jobs queued or failed: the bench runs without real servers), so the event log
   and the audit trail hold a few thousand rows. Each request carries an API
   token (`Authorization: Bearer`), as a script or the CLI would send it, and
   goes through everything a request goes through: the request context, the
   access guard, the query guard, the handler's read on a database thread, the
   access log line, the metrics.
2. bare: a Litestar app in another process, served by uvicorn in the same way
   (uvloop, httptools, no access log, no server header), answering every view
   with the very page Pressluft answered (decoded at start into the same
   msgspec view types, so the bytes on the wire and the encoding are the same):
   the framework's floor, with nothing of ours in it.

Each round measures every view on both servers back to back (which goes first
alternates); a ratio is the median over rounds of (Pressluft / bare) req/s.
Goal (issue 20): every list view >= 0.4x the bare app. `/api/health` (which
runs its checks on every call) is reported, not judged. Exits 1 when a goal is
missed. Timing is the bench's alone: tests/test_bench.py checks its verdicts
with fixed figures.
"""

# ruff: noqa: E402 (sys.path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: the repository root goes on sys.path for tests.support.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

#: The views measured: name → (path and query, whether the goal judges it).
VIEWS: dict[str, tuple[str, bool]] = {
    "health": ("/api/health", False),
    "jobs": ("/api/jobs?limit=50", True),
    "events": ("/api/events?limit=50", True),
    "audit": ("/api/audit?limit=50", True),
    "nodes": ("/api/nodes", True),
    "sites": ("/api/sites", True),
}
GOAL = 0.4
WRK_CONNECTIONS = 32
WRK_THREADS = 2
SEED_JOBS = 200
SEED_NODES = 10
SEED_SITES = 20
META_ACTOR = "bench"


# -- the load generator ---------------------------------------------------------------

_RATE = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.M)
_COUNT = re.compile(r"^\s*(\d+) requests in", re.M)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors:.*")


class LoadError(RuntimeError):
    """wrk failed, or some answers were not 2xx: the figure would measure errors."""


@dataclass(frozen=True)
class Sample:
    """One measurement: requests per second, and the server's CPU time per request
    (user + system, from /proc: steadier than the rate on a machine others share)."""

    rate: float
    cpu_ms: float


def parse_wrk(output: str) -> tuple[float, int]:
    """(requests per second, requests) from wrk's report; LoadError on errors or non-2xx."""
    rate, count = _RATE.search(output), _COUNT.search(output)
    if rate is None or count is None:
        raise LoadError(f"no rate in wrk's output:\n{output}")
    bad = _NON_2XX.search(output)
    if bad is not None and int(bad.group(1)) > 0:
        raise LoadError(f"{bad.group(1)} answers were not 2xx:\n{output}")
    errors = _SOCKET_ERRORS.search(output)
    if errors is not None:
        raise LoadError(f"socket errors:\n{output}")
    return float(rate.group(1)), int(count.group(1))


def wrk(url: str, headers: dict[str, str], seconds: float) -> tuple[float, int]:
    """(requests per second, requests) `wrk` reaches on `url` in `seconds`."""
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds:g}s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*argv, url], capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if done.returncode != 0:
        raise LoadError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(url: str, headers: dict[str, str], seconds: float, warmup: float, pid: int) -> Sample:
    """A measurement of the server `pid`: a short warm-up, then the timed run."""
    if warmup > 0:
        wrk(url, headers, warmup)
    before = cpu_seconds(pid)
    rate, count = wrk(url, headers, seconds)
    return Sample(rate, (cpu_seconds(pid) - before) * 1000 / count)


# -- the two servers ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def seed(data_dir: Path) -> None:
    """Rows for the list views, written through the service layer before the daemon starts."""
    import uvloop

    from pressluft.config import resolve
    from pressluft.contexts.sites.creation import CreateSiteRequest, create_site_command
    from pressluft.events import Meta
    from pressluft.jobs.queue import JobSpec, cancel, enqueue
    from pressluft.runtime import Runtime
    from tests.support.nodes import record_node

    meta = Meta(actor=META_ACTOR)

    async def main() -> None:
        config, _ = resolve("serve", {"data_dir": str(data_dir)}, environ={})
        runtime = Runtime(config)
        await runtime.start()
        try:
            nodes = [await record_node(runtime) for _ in range(SEED_NODES)]
            for i in range(SEED_SITES):
                request = CreateSiteRequest(
                    name=f"Bench site {i}", slug=f"bench-{i}", node_id=nodes[i % len(nodes)]
                )
                site = await runtime.db.write(create_site_command(request, runtime.vault, meta))
                # No server behind the node: the creation job is cancelled (its site
                # fails), so no playbook runs beside the measurements.
                await runtime.db.write(cancel(site.job_id, meta))
            noop = JobSpec(job_type="noop")
            for _ in range(SEED_JOBS):
                await runtime.db.write(lambda tx: enqueue(tx, noop, meta))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # every job ends before the daemon starts
                (pending,) = await runtime.db.read(
                    lambda conn: conn.execute(
                        "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
                        " AND job_type IN ('noop', 'site_create')"
                    ).fetchone()
                )
                if pending == 0:
                    break
                await asyncio.sleep(0.1)
        finally:
            await runtime.stop()

    uvloop.run(main())


@dataclass
class Servers:
    pressluft: str
    bare: str
    headers: dict[str, str]
    #: The processes' ids (CPU time; a profiler: `py-spy record --pid`).
    pressluft_pid: int
    bare_pid: int
    counts: dict[str, int] = field(default_factory=dict)


def _page_types() -> dict[str, Any]:
    """The view type each measured path answers with (the handler's return type)."""
    from pressluft.contexts.nodes.views import NodePage
    from pressluft.contexts.operations.audit import AuditPage
    from pressluft.contexts.operations.feed import EventPage
    from pressluft.contexts.operations.health import HealthReport
    from pressluft.contexts.operations.jobs import JobPage
    from pressluft.contexts.sites.queries import SitePage

    return {
        "health": HealthReport,
        "jobs": JobPage,
        "events": EventPage,
        "audit": AuditPage,
        "nodes": NodePage,
        "sites": SitePage,
    }


def _items(body: bytes) -> int:
    decoded = json.loads(body)
    return len(decoded["items"]) if isinstance(decoded, dict) and "items" in decoded else 1


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} not up after {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def start_servers(work: Path) -> Iterator[Servers]:
    """A seeded `pressluft serve` and the bare app answering its pages; stopped after."""
    from tests.support.daemon import Daemon

    data_dir = work / "data"
    seed(data_dir)
    daemon = Daemon(work, mode="serve", args=("--data-dir", str(data_dir)))
    daemon.start()
    bare: subprocess.Popen[bytes] | None = None
    try:
        daemon.wait_ready(60)
        headers = {"Authorization": f"Bearer {daemon.token(('read',))}"}
        pages: dict[str, str] = {}
        counts: dict[str, int] = {}
        for name, (path, _) in VIEWS.items():
            answer = httpx.get(daemon.url + path, headers=headers, timeout=30)
            if answer.status_code != 200:
                raise RuntimeError(f"{path}: {answer.status_code} {answer.text}")
            pages[name] = answer.text
            counts[name] = _items(answer.content)
        fixture = work / "pages.json"
        fixture.write_text(json.dumps(pages))
        port = free_port()
        log = work / "bare.log"
        with log.open("wb") as out:
            bare = subprocess.Popen(
                [sys.executable, __file__, "--serve-bare", str(port), str(fixture)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        bare_url = f"http://127.0.0.1:{port}"
        _wait_http(bare_url + "/bare/health", bare, log)
        assert daemon.proc is not None
        yield Servers(daemon.url, bare_url, headers, daemon.proc.pid, bare.pid, counts)
    finally:
        if bare is not None:
            _stop(bare)
        daemon.stop()


def _answering(page: Any) -> Any:
    async def answer() -> Any:
        return page

    return answer


def serve_bare(port: int, fixture: Path) -> None:
    """The bare app: each view's page, decoded once into its view type, answered as is."""
    import uvicorn
    import uvloop
    from litestar import Litestar, get
    from litestar.types import ControllerRouterHandler

    types = _page_types()
    raw = json.loads(fixture.read_text())
    handlers: list[ControllerRouterHandler] = []
    for name, text in raw.items():
        page = msgspec.json.decode(text, type=types[name])
        handlers.append(get(f"/bare/{name}")(_answering(page)))
    app = Litestar(route_handlers=handlers, openapi_config=None, logging_config=None, debug=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
    )
    uvloop.run(uvicorn.Server(config).serve(sockets=[sock]))


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Results:
    ours: dict[str, list[Sample]]
    bare: dict[str, list[Sample]]
    counts: dict[str, int]


def measure(servers: Servers, rounds: int, seconds: float, warmup: float) -> Results:
    ours: dict[str, list[Sample]] = {name: [] for name in VIEWS}
    bare: dict[str, list[Sample]] = {name: [] for name in VIEWS}
    for r in range(rounds):
        for i, (name, (path, _)) in enumerate(VIEWS.items()):
            first_bare = (r + i) % 2 == 0
            for side in ("bare", "pressluft") if first_bare else ("pressluft", "bare"):
                if side == "bare":
                    url, pid, into = f"{servers.bare}/bare/{name}", servers.bare_pid, bare
                else:
                    url, pid, into = servers.pressluft + path, servers.pressluft_pid, ours
                into[name].append(load(url, servers.headers, seconds, warmup, pid))
            o, b = ours[name][-1], bare[name][-1]
            print(
                f"  round {r + 1} {name:<7} pressluft {o.rate:>7,.0f} req/s {o.cpu_ms:5.2f} ms CPU"
                f"   bare {b.rate:>7,.0f} req/s {b.cpu_ms:5.2f} ms CPU",
                flush=True,
            )
    return Results(ours, bare, servers.counts)


def _median(samples: list[Sample], what: str) -> float:
    return statistics.median(getattr(s, what) for s in samples)


def report(results: Results) -> int:
    """The table and the verdict: 1 when a judged view is below the goal."""
    ok = True
    width = 30
    print(
        f"\n{'view (items)':<{width}} {'pressluft':>9} {'bare':>7} {'ratio':>6} {'goal':>8}"
        f"   {'CPU ms/request: pressluft':>25} {'bare':>5}"
    )
    for name, (path, judged) in VIEWS.items():
        ours, bare = results.ours[name], results.bare[name]
        ratio = statistics.median(o.rate / b.rate for o, b in zip(ours, bare, strict=True))
        met = ratio >= GOAL or not judged
        ok &= met
        label = f"{path} ({results.counts.get(name, 0)})"
        goal = f">={GOAL}x" if judged else "reported"
        print(
            f"{label:<{width}} {_median(ours, 'rate'):>9,.0f} {_median(bare, 'rate'):>7,.0f}"
            f" {math.floor(ratio * 100) / 100:>5.2f}x {goal:>8}   {_median(ours, 'cpu_ms'):>25.2f}"
            f" {_median(bare, 'cpu_ms'):>5.2f} {'' if met else 'MISSED'}"
        )
    print(
        "(req/s and CPU: medians over rounds; ratio: the median of per-round ratios,"
        " cut to 2 decimals)"
    )
    for name in VIEWS:
        ours, bare = results.ours[name], results.bare[name]
        ratios = [round(o.rate / b.rate, 2) for o, b in zip(ours, bare, strict=True)]
        print(
            f"per-round {name:<7} pressluft {[round(s.rate) for s in ours]}"
            f" bare {[round(s.rate) for s in bare]} ratios {ratios}"
        )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each one")
    parser.add_argument(
        "--hold", action="store_true", help="start both servers, print their URLs, wait for ^C"
    )
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "PAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: `make system-deps` installs it (Debian: apt-get install wrk)")
        return 1

    base = ROOT / ".artifacts" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="api-", dir=base))
    print(f"scratch dir: {work}")
    print(
        f"{os.cpu_count()} CPUs (shared with wrk), wrk {WRK_CONNECTIONS} connections /"
        f" {WRK_THREADS} threads, {args.duration:g} s per measurement, {args.rounds} rounds\n"
    )
    try:
        with start_servers(work) as servers:
            if args.hold:
                print(f"pressluft {servers.pressluft} (pid {servers.pressluft_pid})")
                print(f"bare {servers.bare}/bare/<view> (pid {servers.bare_pid})")
                print(f"header: Authorization: {servers.headers['Authorization']}")
                signal.signal(signal.SIGTERM, signal.default_int_handler)
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
                return 0
            results = measure(servers, args.rounds, args.duration, args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
