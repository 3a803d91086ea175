"""The database: one group-committing writer and a pool of readers.

Every mutation is a *command*: a synchronous function `fn(tx)` that reads,
decides and writes inside one transaction. `Database.write(fn)` queues it; the
committer takes everything queued (up to `batch_max`), runs the batch on the
writer thread as ONE `BEGIN IMMEDIATE … COMMIT` (one fsync), each command inside
its own savepoint, and only then resolves the callers' futures. A command that
raises is rolled back to its savepoint and fails alone; a failed COMMIT fails the
whole batch, so nothing is acknowledged that is not durable. Sequential callers
get batches of one and pay no added latency; concurrent callers share fsyncs.

Commit listeners run on the event loop after each durable commit (notifications,
metrics); they receive what the commands `publish`ed.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from pressluft.clock import Clock, format_ts
from pressluft.db.connection import ThreadConnection
from pressluft.errors import Conflict, PressluftError, ServiceUnavailable
from pressluft.logs import get_logger

__all__ = ["CommitInfo", "Database", "WriteTx"]

T = TypeVar("T")
log = get_logger("pressluft.db")


class WriteTx:
    """What a command sees: the connection inside the open transaction, and `now`."""

    __slots__ = ("_published", "conn", "now", "now_ts")

    def __init__(self, conn: sqlite3.Connection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        self.now_ts = format_ts(now)
        self._published: list[Any] = []

    def publish(self, item: Any) -> None:
        """Hand `item` to the commit listeners once the transaction is durable."""
        self._published.append(item)


@dataclass
class CommitInfo:
    """One durable group commit."""

    batch_size: int
    published: list[Any] = field(default_factory=list)


@dataclass
class _Outcome(Generic[T]):
    value: T | None = None
    error: BaseException | None = None
    published: list[Any] = field(default_factory=list)


_Command = Callable[[WriteTx], Any]


def _translate(exc: BaseException) -> BaseException:
    """Constraint violations become a client-visible conflict; the rest stays internal."""
    if isinstance(exc, sqlite3.IntegrityError):
        log.warning("command rejected by a database constraint", extra={"sqlite": str(exc)})
        return Conflict(
            "the change conflicts with the current state",
            details={"hint": "re-read the resource and retry"},
        )
    return exc


class Database:
    """The daemon's handle on its SQLite file."""

    def __init__(
        self,
        path: Path,
        clock: Clock,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        readers: int = 4,
        batch_max: int = 512,
    ) -> None:
        self.path = path
        self.clock = clock
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._reader_count = readers
        self._batch_max = batch_max
        self._writer: ThreadConnection | None = None
        self._readers: asyncio.Queue[ThreadConnection] = asyncio.Queue()
        self._all_readers: list[ThreadConnection] = []
        self._pending: list[tuple[_Command, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._listeners: list[Callable[[CommitInfo], None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        self._writer = await ThreadConnection.open(
            self.path,
            "writer",
            synchronous=self._synchronous,
            busy_timeout_ms=self._busy_timeout_ms,
        )
        for _ in range(self._reader_count):
            reader = await ThreadConnection.open(
                self.path, "reader", busy_timeout_ms=self._busy_timeout_ms
            )
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)
        self._committer = asyncio.create_task(self._commit_loop(), name="pressluft-committer")

    async def close(self) -> None:
        """Refuse new writes, commit what is queued, close every connection."""
        self._closing = True
        self._wakeup.set()
        if self._committer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @property
    def writer_alive(self) -> bool:
        return (
            self._writer is not None
            and self._writer.alive
            and self._committer is not None
            and not self._committer.done()
        )

    def add_commit_listener(self, listener: Callable[[CommitInfo], None]) -> None:
        self._listeners.append(listener)

    # -- writing -----------------------------------------------------------------

    async def write(self, command: Callable[[WriteTx], T]) -> T:
        """Run `command(tx)` in a durable transaction; returns its result after commit."""
        if self._closing or self._committer is None:
            raise ServiceUnavailable("the database is shutting down")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._wakeup.set()
        # Shield: a caller that goes away (client disconnect) must not cancel a
        # command that may already be committed together with others.
        return await asyncio.shield(future)

    async def _commit_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._batch_max]
                del self._pending[: self._batch_max]
                await self._commit_batch(batch)
            if self._closing:
                return

    async def _commit_batch(self, batch: list[tuple[_Command, asyncio.Future[Any]]]) -> None:
        assert self._writer is not None
        commands = [command for command, _ in batch]
        now = self.clock.now()
        try:
            outcomes = await self._writer.run(lambda conn: _run_batch(conn, commands, now))
        except BaseException as exc:  # the COMMIT (or BEGIN) failed: nothing is durable
            log.error("group commit failed", exc_info=exc, extra={"batch_size": len(batch)})
            failure = (
                exc
                if isinstance(exc, PressluftError)
                else ServiceUnavailable("the database could not commit the change")
            )
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        info = CommitInfo(batch_size=len(batch))
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if outcome.error is None:
                info.published.extend(outcome.published)
                if not future.done():
                    future.set_result(outcome.value)
            elif not future.done():
                future.set_exception(outcome.error)
        for listener in self._listeners:
            try:
                listener(info)
            except Exception:
                log.exception("commit listener failed")

    async def checkpoint(self) -> tuple[int, int, int]:
        """Run a passive WAL checkpoint on the writer thread, between batches."""
        assert self._writer is not None

        def run(conn: sqlite3.Connection) -> tuple[int, int, int]:
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(busy), int(frames), int(done)

        return await self._writer.run(run)

    # -- reading -----------------------------------------------------------------

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query(conn)` on a reader inside one snapshot."""
        reader = await self._readers.get()
        try:
            return await reader.run(lambda conn: _in_snapshot(conn, query))
        finally:
            self._readers.put_nowait(reader)


def _in_snapshot(conn: sqlite3.Connection, query: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return query(conn)
    finally:
        conn.execute("COMMIT")


def _run_batch(
    conn: sqlite3.Connection, commands: list[_Command], now: datetime
) -> list[_Outcome[Any]]:
    """Runs on the writer thread: one transaction, one savepoint per command."""
    outcomes: list[_Outcome[Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        if len(commands) == 1:
            # No savepoint needed: the command's failure rolls back the transaction.
            tx = WriteTx(conn, now)
            try:
                value = commands[0](tx)
            except Exception as exc:
                conn.execute("ROLLBACK")
                return [_Outcome(error=_translate(exc))]
            outcomes.append(_Outcome(value=value, published=tx._published))
        else:
            for command in commands:
                tx = WriteTx(conn, now)
                conn.execute("SAVEPOINT command")
                try:
                    value = command(tx)
                except Exception as exc:
                    conn.execute("ROLLBACK TO command")
                    conn.execute("RELEASE command")
                    outcomes.append(_Outcome(error=_translate(exc)))
                    continue
                conn.execute("RELEASE command")
                outcomes.append(_Outcome(value=value, published=tx._published))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes
