"""Health of the daemon: is it able to do its job right now?

Checks (all required): the database takes a real write (one row of
`health_probe` rewritten and committed) within 2 s — a full, read-only or
locked disk fails it as it fails every user's change; the data dir's file
system is writable and has room; every background service is running and none
is crash-looping; `ansible-playbook` can be found (every change to a node runs
through it); the package's playbooks are Pressluft's and all there (the manifest
and the files it names: a few stats; `pressluft doctor` says where it looked).

`Health` is the check the daemon runs (`/api/health`, the overview page): one
shared write probe, and the uptime since the daemon started.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

import msgspec

from pressluft import __version__
from pressluft.clock import Clock
from pressluft.contexts.operations.probes import PlaybooksCheck, probe_playbooks
from pressluft.db import Database, WriteTx
from pressluft.errors import PressluftError
from pressluft.executables import find_ansible_playbook
from pressluft.supervisor import ServiceState, Supervisor

__all__ = ["Check", "Health", "HealthReport", "WriteProbe", "check_health", "probe_write"]

WRITE_PROBE_TIMEOUT = 2.0
#: A probe's answer is given to every caller for this long (seconds of loop time).
PROBE_REUSE_SECONDS = 1.0
#: Below this much free space on the data dir's file system, writes are about to fail.
MIN_FREE_BYTES = 32 * 1024 * 1024


class Check(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "fail"]
    required: bool
    detail: str


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "fail"]
    version: str
    uptime_seconds: float
    checks: dict[str, Check]


def probe_write(tx: WriteTx) -> None:
    """A real, cheap write that is no event: the probe row gets the time."""
    tx.conn.execute("UPDATE health_probe SET probed_at = ? WHERE id = 1", (tx.now_ts,))


class WriteProbe:
    """The database check, shared: callers while a probe is in flight wait for it,
    and its answer is reused for `PROBE_REUSE_SECONDS` of loop time — `/api/health`
    is public, and each probe is a committed (fsynced) write."""

    def __init__(self) -> None:
        self._inflight: asyncio.Future[Check] | None = None
        self._last: tuple[float, Check] | None = None

    async def check(self, db: Database) -> Check:
        loop = asyncio.get_running_loop()
        if self._last is not None and loop.time() - self._last[0] < PROBE_REUSE_SECONDS:
            return self._last[1]
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(_database(db))
            self._inflight.add_done_callback(self._done)
        return await asyncio.shield(self._inflight)

    def _done(self, future: asyncio.Future[Check]) -> None:
        self._inflight = None
        if not future.cancelled() and future.exception() is None:
            self._last = (asyncio.get_running_loop().time(), future.result())


async def _database(db: Database) -> Check:
    if not db.writer_alive:
        return Check(status="fail", required=True, detail="the writer is not running")
    try:
        # Shielded: a probe that outlives its timeout still commits (or fails) in
        # its turn, and must not be cancelled half-way through the writer's queue.
        await asyncio.wait_for(asyncio.shield(db.write(probe_write)), WRITE_PROBE_TIMEOUT)
    except TimeoutError:
        return Check(status="fail", required=True, detail="no write committed within 2 s")
    except PressluftError as exc:
        return Check(status="fail", required=True, detail=f"write failed: {exc.message}")
    except Exception as exc:
        return Check(status="fail", required=True, detail=f"write failed: {type(exc).__name__}")
    return Check(status="ok", required=True, detail="accepts writes")


def _disk(data_dir: Path) -> Check:
    try:
        stat = os.statvfs(data_dir)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__  # no path: the answer is public
        return Check(status="fail", required=True, detail=f"cannot stat the data dir: {reason}")
    if stat.f_flag & os.ST_RDONLY:
        return Check(status="fail", required=True, detail="the data dir's file system is read-only")
    free = stat.f_bavail * stat.f_frsize
    mib = free // (1024 * 1024)
    if free < MIN_FREE_BYTES:
        return Check(
            status="fail",
            required=True,
            detail=f"{mib} MiB free on the data dir's file system (needs 32 MiB)",
        )
    return Check(status="ok", required=True, detail=f"{mib} MiB free")


def _services(states: Mapping[str, ServiceState], now: float) -> Check:
    down = [s.name for s in states.values() if not s.running]
    looping = [s.name for s in states.values() if s.running and s.crash_looping(now)]
    problems = []
    if down:
        problems.append("not running: " + ", ".join(_describe(states[name]) for name in down))
    if looping:
        problems.append("crash-looping: " + ", ".join(_describe(states[name]) for name in looping))
    if problems:
        return Check(status="fail", required=True, detail="; ".join(problems))
    names = ", ".join(sorted(states)) or "none"
    return Check(status="ok", required=True, detail=f"running: {names}")


def _describe(state: ServiceState) -> str:
    """The service and its restart count (its last error is in the log and the
    metrics, not in this public answer: it may name paths and addresses)."""
    if not state.restarts:
        return state.name
    return f"{state.name} ({state.restarts} restarts)"


def _ansible(find: Callable[[], str | None]) -> Check:
    path = find()
    if path is None:
        return Check(status="fail", required=True, detail="ansible-playbook not found on PATH")
    return Check(status="ok", required=True, detail="ansible-playbook found")


def _playbooks(check: PlaybooksCheck) -> Check:
    # Public answer: the problem, never the path (doctor names it).
    if check.problem is not None:
        detail = f"Pressluft's playbooks: {check.problem}; run `pressluft doctor`"
        return Check(status="fail", required=True, detail=detail)
    return Check(status="ok", required=True, detail=f"{len(check.playbooks)} playbooks")


async def check_health(
    probe: WriteProbe,
    db: Database,
    services: Mapping[str, ServiceState],
    find_ansible: Callable[[], str | None],
    *,
    playbooks: Callable[[], PlaybooksCheck] = lambda: probe_playbooks(deep=False),
    data_dir: Path,
    now: float,
    version: str,
    uptime_seconds: float,
) -> HealthReport:
    """`now` is the clock's monotonic time (crash-loop windows are measured in it)."""
    checks = {
        "database": await probe.check(db),
        "disk": _disk(data_dir),
        "services": _services(services, now),
        "ansible": _ansible(find_ansible),
        "playbooks": _playbooks(playbooks()),
    }
    failed = any(c.required and c.status == "fail" for c in checks.values())
    return HealthReport(
        status="fail" if failed else "ok",
        version=version,
        uptime_seconds=round(uptime_seconds, 3),
        checks=checks,
    )


class Health:
    """The daemon's health check: its database, data dir, services and ansible."""

    def __init__(self, db: Database, clock: Clock, supervisor: Supervisor, data_dir: Path) -> None:
        self._db = db
        self._clock = clock
        self._supervisor = supervisor
        self._data_dir = data_dir
        self._probe = WriteProbe()
        self._started_at = clock.monotonic()

    def mark_started(self) -> None:
        """The daemon has started: its uptime counts from now."""
        self._started_at = self._clock.monotonic()

    async def report(self) -> HealthReport:
        now = self._clock.monotonic()
        return await check_health(
            self._probe,
            self._db,
            self._supervisor.states,
            find_ansible_playbook,
            data_dir=self._data_dir,
            now=now,
            version=__version__,
            uptime_seconds=now - self._started_at,
        )
