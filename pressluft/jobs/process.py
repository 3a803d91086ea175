"""Subprocesses of jobs: their own process group, killed whole on cancel, timeout or crash.

`run_process` starts a command in a new session (its own process group),
streams its stdout/stderr into the job log line by line, and guarantees that
no process of the group outlives it: on cancellation it sends SIGTERM to the
group, then SIGKILL after a grace period; after a normal exit it kills any
stragglers. The group is recorded in `<data dir>/run/<job>-<attempt>.json`
while it runs, so a daemon that crashed can kill what its jobs left behind
(`kill_orphans`, at start-up). Children are released from the daemon's CPU pin
and inherit no descriptor but their stdio (`_Child`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from pressluft.affinity import release_process
from pressluft.jobs.failures import JobCancelledError
from pressluft.jobs.workers import WorkerPort
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


#: How long a job's output may still arrive after its process exited: a
#: straggler that left the group (setsid) and holds the pipe does not hold the job.
OUTPUT_GRACE_SECONDS = 1.0

#: Output is read in chunks of this size; a line longer than the reader's limit
#: (64 KiB) is stored in pieces of that size rather than failing the job.
_CHUNK = 65536


class _Child:
    """A job's process, started by the standard library and watched from the loop.

    Not `asyncio.create_subprocess_exec`: uvloop's spawner ignores `close_fds`, so
    the child inherited every descriptor of the daemon not marked close-on-exec
    (ones the daemon was started with) and uvloop's own copies of the child's
    stdio. `subprocess.Popen` closes every descriptor but stdio in the child. The
    output pipes are ours (read with `add_reader`, closed by us, once: uvloop's
    pipe transports close a descriptor the `Popen` object still thinks it owns),
    and the exit is seen through a pidfd.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None, cwd: Path | None):
        self._loop = asyncio.get_running_loop()
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        try:
            self.popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        except BaseException:
            for fd in (out_read, err_read):
                os.close(fd)
            raise
        finally:
            os.close(out_write)
            os.close(err_write)
        self.pid = self.popen.pid
        self._open: set[int] = set()
        self.stdout = self._reader(out_read)
        self.stderr = self._reader(err_read)
        self.exited: asyncio.Future[int] = self._loop.create_future()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except OSError:  # out of descriptors: do not leave it running unwatched
            _signal_group(self.pid, signal.SIGKILL)
            self.popen.wait()
            self.close()
            raise
        self._loop.add_reader(self._pidfd, self._reap)

    def _reader(self, fd: int) -> asyncio.StreamReader:
        os.set_blocking(fd, False)
        reader = asyncio.StreamReader(loop=self._loop)

        def readable() -> None:
            try:
                data = os.read(fd, _CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                reader.feed_data(data)
            else:  # every writer closed its end
                self._close_pipe(fd)
                reader.feed_eof()

        self._open.add(fd)
        self._loop.add_reader(fd, readable)
        return reader

    def _close_pipe(self, fd: int) -> None:
        if fd in self._open:
            self._open.discard(fd)
            self._loop.remove_reader(fd)
            os.close(fd)

    def _reap(self) -> None:
        """The pidfd is readable: the child has exited; collect its status."""
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        if not self.exited.done():
            self.exited.set_result(self.popen.wait())

    def close(self) -> None:
        """Stop reading its output (a straggler that left the group may hold it)."""
        for fd in list(self._open):
            self._close_pipe(fd)


async def _pump(ctx: WorkerPort, stream: asyncio.StreamReader, name: str) -> None:
    """Every output line into the job log; a line over the reader's limit in pieces."""
    in_pieces = False
    while True:
        try:
            chunk = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as end:  # the last line, without a newline
            if end.partial:
                ctx.log(end.partial.decode(errors="replace"), name)
            return
        except asyncio.LimitOverrunError as long:
            piece = await stream.readexactly(min(long.consumed, _CHUNK))
            ctx.log(piece.decode(errors="replace"), name)
            in_pieces = True
            continue
        if not (in_pieces and chunk == b"\n"):  # not the end of a line stored in pieces
            ctx.log(chunk.decode(errors="replace").rstrip("\n"), name)
        in_pieces = False


async def run_process(
    ctx: WorkerPort,
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
    proc = _Child(argv, env, cwd)
    pgid = proc.pid
    record: Path | None = None
    pumps = asyncio.gather(_pump(ctx, proc.stdout, "stdout"), _pump(ctx, proc.stderr, "stderr"))
    pumps.add_done_callback(_retrieve)
    waiter = asyncio.shield(proc.exited)  # cancelling the wait must not cancel the reaping
    stop: asyncio.Future[Any] = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        release_process(pgid)
        stat = _stat(pgid)
        if ctx.run_dir is not None and stat is not None:
            record = ctx.run_dir / f"{ctx.job_id}-{ctx.attempt}.json"
            _write_record(record, _Record(pgid=pgid, started=stat[2]))
        await asyncio.wait((waiter, stop), return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            await _terminate(pgid, grace)
            await waiter
            await _rest_of_output(pumps)
            raise JobCancelledError("cancelled; its processes were stopped")
        await _rest_of_output(pumps)
        return waiter.result()
    except asyncio.CancelledError:
        await asyncio.shield(_terminate(pgid, grace))
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await _rest_of_output(pumps)  # what it printed last
        raise
    finally:
        stop.cancel()
        if not waiter.done():
            waiter.cancel()
        if group_alive(pgid):  # whatever it left running
            _signal_group(pgid, signal.SIGKILL)
        if not pumps.done():
            pumps.cancel()
        proc.close()
        if record is not None:
            record.unlink(missing_ok=True)


async def _rest_of_output(pumps: asyncio.Future[Any]) -> None:
    """The output still in the pipes, for at most `OUTPUT_GRACE_SECONDS`."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pumps), OUTPUT_GRACE_SECONDS)


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
