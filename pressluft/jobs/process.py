"""Subprocesses of jobs: their own process group, killed whole on cancel, timeout or crash.

`run_process` starts a command in a new session (its own process group),
streams its stdout/stderr into the job log line by line, and guarantees that
no process of the group outlives it: on cancellation it sends SIGTERM to the
group, then SIGKILL after a grace period; after a normal exit it kills any
stragglers. The group is recorded in `<data dir>/run/<job>-<attempt>.json`
while it runs, so a daemon that crashed can kill what its jobs left behind
(`kill_orphans`, at start-up). Children are released from the daemon's CPU pin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from pressluft.affinity import release_process
from pressluft.jobs.context import JobCancelledError, JobContext
from pressluft.logs import get_logger

__all__ = [
    "RUN_MARKER",
    "group_alive",
    "kill_marked",
    "kill_orphans",
    "run_process",
]

log = get_logger("pressluft.jobs")

GRACE_SECONDS = 3.0


class _Record(msgspec.Struct):
    pgid: int
    started: int  # the leader's start time (clock ticks since boot), against pid reuse


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time) of a process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


def _members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    return bool(_members(pgid))


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _terminate(pgid: int, grace: float) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + grace
    # Polled: there is no notification for the death of processes we did not spawn.
    while group_alive(pgid) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def _write_record(path: Path, record: _Record) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.encode(record))


async def run_process(
    ctx: JobContext,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    grace: float = GRACE_SECONDS,
) -> int:
    """Run `argv` as the job's process group; returns its exit code.

    Raises JobCancelledError when the job's cancellation was requested (after the
    group is gone), and CancelledError when the caller cancels (timeout).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=env,
        cwd=cwd,
    )
    pgid = proc.pid
    release_process(proc.pid)
    record: Path | None = None
    stat = _stat(proc.pid)
    if ctx.run_dir is not None and stat is not None:
        record = ctx.run_dir / f"{ctx.job_id}-{ctx.attempt}.json"
        _write_record(record, _Record(pgid=pgid, started=stat[2]))

    async def pump(stream: asyncio.StreamReader | None, name: str) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            ctx.log(line.decode(errors="replace").rstrip("\n"), name)

    pumps = asyncio.gather(pump(proc.stdout, "stdout"), pump(proc.stderr, "stderr"))
    pumps.add_done_callback(_retrieve)
    waiter = asyncio.ensure_future(proc.wait())
    stop = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({waiter, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            await _terminate(pgid, grace)
            await waiter
            await pumps
            raise JobCancelledError("cancelled; its processes were stopped")
        await pumps
        return proc.returncode if proc.returncode is not None else -1
    except asyncio.CancelledError:
        await asyncio.shield(_terminate(pgid, grace))
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(pumps), 1.0)  # what it printed last
        raise
    finally:
        stop.cancel()
        if not waiter.done():
            waiter.cancel()
        if group_alive(pgid):  # whatever it left running
            _signal_group(pgid, signal.SIGKILL)
        if not pumps.done():
            pumps.cancel()
        if record is not None:
            record.unlink(missing_ok=True)


#: Environment variable naming the job attempt a process belongs to (its work dir).
#: Children inherit it even when they leave the process group (ansible's workers
#: call setsid), so `kill_marked` finds every process of a run, and only those.
RUN_MARKER = "PRESSLUFT_RUN"


def kill_marked(under: Path) -> int:
    """SIGKILL every process of this user whose `RUN_MARKER` names `under` or a dir
    below it; returns how many. Blocking (/proc scan): call it from a thread."""
    root = str(under).rstrip("/")
    uid = os.getuid()
    me = os.getpid()
    prefix = RUN_MARKER.encode() + b"="
    killed = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                value = item[len(prefix) :].decode(errors="replace").rstrip("/")
                if value == root or value.startswith(root + "/"):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(entry.name), signal.SIGKILL)
                        killed += 1
                break
    return killed


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a pump's outcome as seen (a cancelled pump is expected, not an error)."""
    if not future.cancelled():
        future.exception()


def kill_orphans(run_dir: Path) -> int:
    """Kill the process groups a previous (crashed) daemon's jobs left; returns how many."""
    killed = 0
    if not run_dir.is_dir():
        return 0
    for path in run_dir.glob("*.json"):
        try:
            rec = msgspec.json.decode(path.read_bytes(), type=_Record)
        except (OSError, msgspec.DecodeError):
            path.unlink(missing_ok=True)
            continue
        leader = _stat(rec.pgid)
        same_leader = leader is not None and leader[2] == rec.started
        members = [
            pid
            for pid in _members(rec.pgid)
            if (s := _stat(pid)) is not None and s[2] >= rec.started
        ]
        if same_leader or members:
            _signal_group(rec.pgid, signal.SIGKILL)
            killed += 1
            log.warning("killed processes left by a crashed daemon", extra={"pgid": rec.pgid})
        path.unlink(missing_ok=True)
    return killed
