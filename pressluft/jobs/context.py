"""What a job handler gets: its claim, a log, a cancellation signal and a work dir.

`log()` never blocks the handler: lines go to a buffer that one writer task
flushes in order, one transaction at a time (so lines batch up under load and
flow within milliseconds when idle). Every flush presents the attempt's lease;
when it is refused the attempt has lost its lease and the handler is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from pressluft.db import Database, WriteTx
from pressluft.errors import ServiceUnavailable
from pressluft.jobs.logs import LeaseLost, append_lines
from pressluft.jobs.queue import Claim
from pressluft.logs import get_logger

__all__ = ["JobCancelledError", "JobContext", "LogWriter"]

log = get_logger("pressluft.jobs")

MAX_LINE = 64 * 1024
#: Output lines wait this long to share a commit with other writes.
LOG_LINGER_SECONDS = 0.001


class JobCancelledError(Exception):
    """Raised by a handler (or its subprocess runner) that stopped because it was asked to."""


class LogWriter:
    """Ordered, batched, fenced writes of one attempt's output lines.

    The flushing task starts with the first line (most jobs of a busy queue
    never print anything)."""

    def __init__(self, db: Database, claim: Claim, on_lease_lost: Callable[[], None]) -> None:
        self._db = db
        self._claim = claim
        self._on_lease_lost = on_lease_lost
        self._buffer: list[tuple[str, str]] = []
        self._ready = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def write(self, text: str, stream: str = "stdout") -> None:
        if self._closed:
            return
        for line in text.splitlines() or [""]:
            self._buffer.append((stream, line[:MAX_LINE]))
        self._ready.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"job-log-{self._claim.job_id}")

    async def _run(self) -> None:
        c = self._claim
        while True:
            await self._ready.wait()
            self._ready.clear()
            if not self._buffer:
                if self._closed:
                    return
                continue
            batch, self._buffer = self._buffer, []

            def command(tx: WriteTx, batch: list[tuple[str, str]] = batch) -> int:
                return append_lines(tx, c.job_id, c.lease_token, c.attempt, batch)

            try:
                await self._db.write(command, linger=LOG_LINGER_SECONDS)
            except LeaseLost:
                log.warning("job lost its lease while logging", extra={"job_id": c.job_id})
                self._on_lease_lost()
                return
            except ServiceUnavailable:  # the database is closing: the attempt is rescued later
                log.warning("could not store job output", extra={"job_id": c.job_id})
                return
            if self._closed and not self._buffer:
                return

    async def close(self) -> None:
        """Flush everything written so far."""
        self._closed = True
        self._ready.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class JobContext:
    """The handler's view of its job."""

    def __init__(
        self,
        claim: Claim,
        jobs_dir: Path,
        writer: LogWriter,
        cancelled: asyncio.Event,
        *,
        run_dir: Path | None = None,
    ) -> None:
        self.claim = claim
        #: Where subprocess records live (so a crashed daemon's leftovers can be killed).
        self.run_dir = run_dir
        self.job_id = claim.job_id
        self.attempt = claim.attempt
        self.payload = claim.payload
        self._jobs_dir = jobs_dir
        self.work_dir_created = False
        self.cancelled = cancelled
        self._writer = writer

    @property
    def work_dir(self) -> Path:
        """The attempt's private directory (0700), created on first use and removed
        when the attempt ends — whatever the outcome."""
        path = self._jobs_dir / self.job_id / f"attempt-{self.attempt}"
        if not self.work_dir_created:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.work_dir_created = True
        return path

    def log(self, text: str, stream: str = "stdout") -> None:
        """Record output (never blocks; lines are stored in order)."""
        self._writer.write(text, stream)

    def check_cancelled(self) -> None:
        """Stop here if cancellation was requested."""
        if self.cancelled.is_set():
            raise JobCancelledError("cancelled")
