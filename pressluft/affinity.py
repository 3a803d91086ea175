"""CPU placement of the daemon's own threads.

The event loop thread and the SQLite threads hand work to each other for every
transaction. On virtual machines a hand-off to a thread on another (idle) core
costs an inter-processor interrupt: measured here, a writer round trip took
~110 µs across cores and ~26 µs on one core. Python's GIL already keeps the
daemon's Python code on one core at a time, so `colocate_current_thread()` pins
the calling thread (the loop) to the CPU it runs on; threads it creates later
(the database connections) inherit that CPU. Threads that start subprocesses
(job runners) must call `release_current_thread()` first, so child processes
may use every CPU the process was given. Linux only; elsewhere these are no-ops.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = [
    "colocate_current_thread",
    "release_current_thread",
    "release_process",
    "restore_current_thread",
]

#: The process's CPU mask before Pressluft narrowed any thread's (an operator's
#: taskset is respected: releasing returns to it, not to every CPU).
_original: set[int] | None = None


def _supported() -> bool:
    return hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def _current_cpu() -> int | None:
    """The CPU the calling thread last ran on (field 39 of /proc/thread-self/stat)."""
    try:
        stat = Path("/proc/thread-self/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[36]) if len(fields) > 36 else None


def colocate_current_thread() -> set[int] | None:
    """Pin the calling thread to its current CPU; returns the previous mask (None: no-op)."""
    global _original
    if not _supported():
        return None
    previous = os.sched_getaffinity(0)
    if _original is None:
        _original = set(previous)
    cpu = _current_cpu()
    if cpu is None or cpu not in previous:
        cpu = min(previous)
    os.sched_setaffinity(0, {cpu})
    return previous


def restore_current_thread(previous: set[int] | None) -> None:
    """Undo `colocate_current_thread` for the calling thread."""
    if previous and _supported():
        os.sched_setaffinity(0, previous)


def release_current_thread() -> None:
    """Let the calling thread (and the processes it starts) use the process's CPUs again."""
    if _supported():
        os.sched_setaffinity(0, _original or os.sched_getaffinity(0))


def release_process(pid: int) -> None:
    """Let a child process (forked from the pinned loop) use the process's CPUs."""
    if _supported():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(pid, _original or os.sched_getaffinity(0))
