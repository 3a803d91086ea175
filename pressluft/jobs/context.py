"""The worker port of the daemon's own pool (`LocalPort`), and its log writer.

`LocalPort` implements `jobs.workers.WorkerPort` over the local database and
vault: loaders run on a reader, secrets open from the vault, records and named
commands run in one transaction after `require_lease` (the one place a worker's
writes are fenced), as the job's actor with its correlation id.

`log()` never blocks the handler: lines go to a buffer that one writer task
flushes in order, one transaction at a time (so lines batch up under load and
flow within milliseconds when idle). Every flush presents the attempt's lease;
when it is refused the attempt has lost its lease and the handler is stopped.

A flush the database refuses (its write lock held by another process, a full
disk) is retried with backoff, and the lines wait in memory meanwhile — up to a
bound, beyond which the oldest unsent lines are dropped and counted. Lines that
are truly lost are said so where they are missing: a `system` line and a
`job.output_dropped` event, in the transaction of the next lines stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from pressluft.db import Database, WriteTx
from pressluft.errors import ServiceUnavailable
from pressluft.events import Event, Meta, append
from pressluft.jobs.failures import JobCancelledError, JobFailure, retryable
from pressluft.jobs.logs import LeaseLost, append_lines
from pressluft.jobs.queue import Claim, require_lease
from pressluft.jobs.workers import Loader, job_actor
from pressluft.logs import get_logger
from pressluft.vault import Vault

__all__ = ["JobCancelledError", "LocalPort", "LogWriter"]

K = TypeVar("K")
T = TypeVar("T")

log = get_logger("pressluft.jobs")

MAX_LINE = 64 * 1024
#: Output lines wait this long to share a commit with other writes.
LOG_LINGER_SECONDS = 0.001
#: Unsent output held while the database refuses writes (characters, lines);
#: beyond either bound the oldest unsent lines are dropped and counted.
MAX_PENDING_CHARS = 4 * 1024 * 1024
MAX_PENDING_LINES = 20_000
#: Lines per transaction (a backlog is stored in several).
BATCH_MAX_LINES = 2_000
#: A refused write is retried after this long, doubling up to the cap.
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0


def _size(line: str) -> int:
    return len(line) + 1


class LogWriter:
    """Ordered, batched, fenced writes of one attempt's output lines.

    The flushing task starts with the first line (most jobs of a busy queue
    never print anything)."""

    def __init__(self, db: Database, claim: Claim, on_lease_lost: Callable[[], None]) -> None:
        self._db = db
        self._claim = claim
        self._on_lease_lost = on_lease_lost
        self._pending: deque[tuple[str, str]] = deque()
        self._pending_chars = 0
        self._max_chars = MAX_PENDING_CHARS
        self._max_lines = MAX_PENDING_LINES
        #: Lines dropped and not yet said so in the log; dropped while a batch was in flight.
        self._dropped = 0
        self._dropped_in_flight = 0
        self._in_flight = False
        #: The current run of refused writes: since when (loop time), how many, why.
        self._refused_since: float | None = None
        self._refusals = 0
        self._refusal = ""
        #: Lines lost in all (said so in the log, or given up at shutdown).
        self.lost = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def write(self, text: str, stream: str = "stdout") -> None:
        if self._closed:
            return
        for line in text.splitlines() or [""]:
            piece = line[:MAX_LINE]
            self._pending.append((stream, piece))
            self._pending_chars += _size(piece)
        self._trim()
        self._ready.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"job-log-{self._claim.job_id}")

    def _trim(self) -> None:
        """Hold memory to its bound: drop the oldest unsent lines, counting them."""
        while self._pending and (
            self._pending_chars > self._max_chars or len(self._pending) > self._max_lines
        ):
            _, line = self._pending.popleft()
            self._pending_chars -= _size(line)
            self._dropped += 1
            if self._in_flight:
                self._dropped_in_flight += 1

    def _take(self) -> list[tuple[str, str]]:
        count = min(len(self._pending), BATCH_MAX_LINES)
        batch = [self._pending.popleft() for _ in range(count)]
        self._pending_chars -= sum(_size(line) for _, line in batch)
        return batch

    def _put_back(self, batch: list[tuple[str, str]]) -> None:
        if self._dropped_in_flight:
            # Newer lines were dropped while it was in flight: these are older, so
            # they go too (one gap, where the log will say so).
            self._dropped += len(batch)
            return
        self._pending.extendleft(reversed(batch))
        self._pending_chars += sum(_size(line) for _, line in batch)
        self._trim()

    def _loss_note(self, count: int) -> str:
        held = f"{self._max_lines} lines or {self._max_chars} characters"
        if self._refused_since is None:
            return f"{count} lines of output lost: they could not be stored"
        seconds = asyncio.get_running_loop().time() - self._refused_since
        return (
            f"{count} lines of output lost: the database refused writes for {seconds:.0f} s"
            f" ({self._refusal}); at most {held} are held meanwhile"
        )

    async def _run(self) -> None:
        c = self._claim
        delay = RETRY_FIRST_SECONDS
        while True:
            if not self._pending and not self._dropped:
                if self._closed:
                    return
                await self._ready.wait()
                self._ready.clear()
                continue
            batch = self._take()
            dropped = self._dropped
            note = self._loss_note(dropped) if dropped else ""

            def command(
                tx: WriteTx,
                batch: list[tuple[str, str]] = batch,
                lost: int = dropped,
                note: str = note,
            ) -> int:
                return append_lines(
                    tx, c.job_id, c.lease_token, c.attempt, batch, lost=lost, lost_note=note
                )

            self._in_flight, self._dropped_in_flight = True, 0
            try:
                await self._db.write(command, linger=LOG_LINGER_SECONDS)
            except LeaseLost:
                log.warning("job lost its lease while logging", extra={"job_id": c.job_id})
                self._on_lease_lost()
                return
            except (ServiceUnavailable, sqlite3.Error) as exc:
                self._in_flight = False
                self._put_back(batch)
                if not self._db.writer_alive:  # the database is closing
                    self._give_up()
                    return
                self._refused(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            except Exception as exc:  # these lines can never be stored: say so, go on
                self._in_flight = False
                log.error("job output refused", exc_info=exc, extra={"job_id": c.job_id})
                if not batch:  # not even the note: the daemon's log has to say it
                    self.lost += self._dropped
                    self._dropped = 0
                self._dropped += len(batch)
                continue
            self._in_flight = False
            self._dropped -= dropped
            self.lost += dropped
            delay = RETRY_FIRST_SECONDS
            if self._refused_since is not None:
                log.info(
                    "job output stored again",
                    extra={"job_id": c.job_id, "refused_writes": self._refusals},
                )
                self._refused_since, self._refusals, self._refusal = None, 0, ""
            self._trim()

    def _refused(self, exc: BaseException) -> None:
        self._refusals += 1
        if isinstance(exc, sqlite3.Error):
            self._refusal = str(exc)
        elif not self._refusal:
            self._refusal = exc.message if isinstance(exc, ServiceUnavailable) else str(exc)
        if self._refused_since is None:
            self._refused_since = asyncio.get_running_loop().time()
            log.warning(
                "could not store job output; retrying",
                extra={"job_id": self._claim.job_id, "error": self._refusal},
            )

    def _give_up(self, why: str = "the database closed before it could be stored") -> None:
        unsent = len(self._pending) + self._dropped
        self._pending.clear()
        self._pending_chars = self._dropped = 0
        if unsent:
            self.lost += unsent
            log.error(
                "job output lost: %s", why, extra={"job_id": self._claim.job_id, "lines": unsent}
            )

    async def close(self, grace: float | None = None) -> None:
        """Flush everything written so far (retrying while the database refuses) —
        for at most `grace` seconds when given (the daemon is stopping: what is
        still unsent then is given up, counted and logged)."""
        self._closed = True
        self._ready.set()
        if self._task is None:
            return
        if grace is not None:
            await asyncio.wait({self._task}, timeout=grace)
            if not self._task.done():
                self._task.cancel()
                self._give_up("the daemon stopped while the database refused writes")
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class LocalPort:
    """The worker port of one attempt, over this daemon's database and vault."""

    def __init__(
        self,
        claim: Claim,
        jobs_dir: Path,
        writer: LogWriter,
        cancelled: asyncio.Event,
        *,
        db: Database,
        vault: Callable[[], Vault],
        run_dir: Path | None = None,
    ) -> None:
        self.claim = claim
        self.run_dir = run_dir
        self.job_id = claim.job_id
        self.job_type = claim.job_type
        self.attempt = claim.attempt
        self.max_attempts = claim.max_attempts
        self.site_id = claim.site_id
        self.environment_id = claim.environment_id
        self.node_id = claim.node_id
        self.correlation_id = claim.correlation_id
        self.claimed_at = claim.claimed_at
        self.cancelled = cancelled
        self.work_dir_created = False
        self._jobs_dir = jobs_dir
        self._writer = writer
        self._db = db
        self._vault = vault
        self._meta = Meta(actor=job_actor(claim.job_id), correlation_id=claim.correlation_id)

    @property
    def work_dir(self) -> Path:
        """The attempt's private directory (0700), created on first use and removed
        when the attempt ends — whatever the outcome."""
        path = self._jobs_dir / self.job_id / f"attempt-{self.attempt}"
        if not self.work_dir_created:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.work_dir_created = True
        return path

    @property
    def final_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def is_final(self, failure: JobFailure) -> bool:
        return not retryable(failure.code) or self.final_attempt

    def log(self, text: str, stream: str = "stdout") -> None:
        """Record output (never blocks; lines are stored in order)."""
        self._writer.write(text, stream)

    def check_cancelled(self) -> None:
        """Stop here if cancellation was requested."""
        if self.cancelled.is_set():
            raise JobCancelledError("cancelled")

    async def load(self, loader: Loader[K, T], key: K) -> T:
        return await self._db.read(lambda conn: loader.query(conn, key))

    async def secret(self, secret_id: str) -> str:
        vault = self._vault()
        plain = await self._db.read(lambda conn: vault.open(conn, secret_id))
        return plain.decode()

    def sealer(self) -> Callable[[sqlite3.Connection, str, bytes, str], str]:
        return self._vault().seal

    async def record(
        self, stream: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        def fn(tx: WriteTx, meta: Meta) -> None:
            append(tx, stream, expected_version, events, meta)

        await self.command(fn)

    async def command(self, fn: Callable[[WriteTx, Meta], T]) -> T:
        c, meta = self.claim, self._meta

        def fenced(tx: WriteTx) -> T:
            require_lease(tx.conn, c.job_id, c.lease_token, c.attempt)
            return fn(tx, meta)

        return await self._db.write(fenced)
