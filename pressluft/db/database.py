"""The database: one group-committing writer and a pool of readers.

Every mutation is a *command*: a synchronous function `fn(tx)` that reads,
decides and writes inside one transaction. `Database.write(fn)` runs it:

- If no batch is in flight, the caller becomes the leader: it yields once (so
  callers woken in the same loop iteration can join), then dispatches everything
  queued to the writer thread and drives it. A lone caller pays one loop
  iteration, no task and no committer wake-up.
- Otherwise it queues; when the in-flight batch is done, everything queued (up
  to `batch_max`) goes to the writer thread as the next batch.

A batch is ONE `BEGIN IMMEDIATE … COMMIT` (one fsync) with each command in its
own savepoint. A command that raises is rolled back to its savepoint and fails
alone; a failed COMMIT fails the whole batch, so nothing is acknowledged that is
not durable. The writer thread hands each finished batch back to the event loop
with one `call_soon_threadsafe`, which resolves the callers' futures, runs the
commit listeners (notifications, metrics) and dispatches the next batch — so a
caller that goes away (client disconnect) neither cancels its command nor stalls
the queue behind it.

`Database.read_cached(key, query)` answers a repeated read without a reader: a
result is kept only until the database changes. Whether it changed is SQLite's
`PRAGMA data_version`, read on the calling (loop) thread from a connection of its
own: it moves when any other connection commits — this daemon's writer, or
another process (the CLI writing beside a running daemon). The pragma reads the
WAL index (shared memory), takes ~5 µs, and never waits (no busy timeout: a
database it cannot read at once counts as changed). A kept result is therefore
what the query would answer now, as long as the query depends on nothing but
the database and its key (not on the time).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from pressluft.clock import Clock, format_ts
from pressluft.db.connection import ThreadConnection
from pressluft.errors import Conflict, PressluftError, ServiceUnavailable
from pressluft.logs import get_logger

__all__ = [
    "RETRY_AFTER_SECONDS",
    "CommitInfo",
    "Database",
    "WriteTx",
    "is_unavailable",
    "unavailable",
    "write_now",
]

T = TypeVar("T")
log = get_logger("pressluft.db")

#: Results `read_cached` keeps at most (all of them go when the database changes).
#: A result can be a page of up to 1,000 events; at this bound a client paging
#: through a large, unchanging log keeps some tens of MiB alive until the next
#: commit. Once full, further results are not kept (the kept ones still serve).
READ_CACHE_ENTRIES = 128

#: Background writes linger for a commit to share only while requests have been
#: writing this recently; otherwise (an idle API, a queue draining on its own) they
#: commit at once and lingering would only add latency.
FOREGROUND_WINDOW_SECONDS = 0.01


class WriteTx:
    """What a command sees: the connection inside the open transaction, and `now`.

    `memo` is shared by the commands of one group commit: a value computed by one
    command (the event log head) is reused by the next, and a write every command
    would repeat (moving the head) is deferred to `finishers`, which run once before
    COMMIT. A command that fails gets the memo and finishers it started with back,
    together with its savepoint. Without `batched` (a caller running a command on a
    plain transaction), nothing is deferred.

    Rules for commands: inside a batch, a deferred row (`event_log_head`) is stale
    until COMMIT — read the memo, not the row; never catch an exception raised by
    a memo user (`append`) and carry on, nor open savepoints of your own around
    one — the memo would disagree with the database; memo values are replaced,
    never mutated in place (the restore copy is shallow).
    """

    __slots__ = (
        "_published",
        "batched",
        "conn",
        "finishers",
        "memo",
        "now",
        "now_ts",
        "projectors",
    )

    def __init__(
        self,
        conn: sqlite3.Connection,
        now: datetime,
        now_ts: str | None = None,
        *,
        memo: dict[str, Any] | None = None,
        finishers: dict[str, Callable[[sqlite3.Connection, Any], None]] | None = None,
        projectors: Any = None,
    ) -> None:
        self.conn = conn
        #: The daemon's projector set (`events.ProjectorSet`), which `events.append` applies.
        self.projectors = projectors
        self.now = now
        self.now_ts = now_ts if now_ts is not None else format_ts(now)
        self._published: list[Any] = []
        self.batched = memo is not None and finishers is not None
        self.memo: dict[str, Any] = {} if memo is None else memo
        self.finishers = {} if finishers is None else finishers

    def publish(self, item: Any) -> None:
        """Hand `item` to the commit listeners once the transaction is durable."""
        self._published.append(item)


@dataclass
class CommitInfo:
    """One durable group commit."""

    batch_size: int
    published: list[Any] = field(default_factory=list)


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None
    published: list[Any] = field(default_factory=list)


_Command = Callable[[WriteTx], Any]
_Batch = list[tuple[_Command, "asyncio.Future[Any]"]]


class TransactionLost(RuntimeError):
    """SQLite ended the batch's transaction under a command (e.g. after an I/O error)."""


#: Seconds a client is asked to wait before retrying a change the database refused.
RETRY_AFTER_SECONDS = 5

#: SQLite's primary result codes for a database that cannot work right now (held
#: locks, a full or read-only disk, I/O errors) — as opposed to a bug (a bad
#: statement, a missing table), which stays an internal error.
_UNAVAILABLE_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: another process holds the write lock past busy_timeout
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY: a write-protected file or file system
        10,  # SQLITE_IOERR
        13,  # SQLITE_FULL: the disk is full
        14,  # SQLITE_CANTOPEN: the WAL or a temp file cannot be created
        15,  # SQLITE_PROTOCOL
    }
)


def unavailable(cause: str = "") -> ServiceUnavailable:
    """The error for a change the database could not take: 503, retry later."""
    hint = "the database cannot be written right now (disk full, read-only or locked)"
    return ServiceUnavailable(
        "the database could not confirm the change" + (f": {cause}" if cause else ""),
        details={
            "hint": f"{hint}; re-read before retrying: the change may or may not be stored",
            "retry_after": RETRY_AFTER_SECONDS,
        },
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def is_unavailable(exc: BaseException, *, reading: bool = False) -> bool:
    """Whether `exc` says the database cannot work right now (not a bug). For a
    reader (`query_only`), SQLITE_READONLY means a query tried to write: a bug."""
    if isinstance(exc, TransactionLost):
        return True
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) or isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
    ):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None or (reading and code & 0xFF == 8):
        return False
    return code & 0xFF in _UNAVAILABLE_CODES


def _translate(exc: BaseException) -> BaseException:
    """Constraint violations become a client-visible conflict; a database that
    cannot work right now (locked, full, read-only) a 503; the rest stays internal."""
    if isinstance(exc, sqlite3.IntegrityError):
        log.warning("command rejected by a database constraint", extra={"sqlite": str(exc)})
        return Conflict(
            "the change conflicts with the current state",
            details={"hint": "re-read the resource and retry"},
        )
    if is_unavailable(exc):
        log.error("the database refused a command", extra={"sqlite": str(exc)})
        return unavailable(str(exc))
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
        foreground_window: float = FOREGROUND_WINDOW_SECONDS,
        projectors: Any = None,
    ) -> None:
        self.path = path
        #: Handed to every transaction: the storage layer knows no projector.
        self.projectors = projectors
        self.clock = clock
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._reader_count = readers
        self._batch_max = batch_max
        self._writer: ThreadConnection | None = None
        self._readers: asyncio.Queue[ThreadConnection] = asyncio.Queue()
        self._all_readers: list[ThreadConnection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: _Batch = []
        self._inflight = 0  # batches handed to the writer thread, not yet delivered
        self._gathering = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._listeners: list[Callable[[CommitInfo], None]] = []
        self._dispatches: set[asyncio.Task[None]] = set()
        self._linger: asyncio.TimerHandle | None = None
        self._linger_seconds = 0.0
        self._lingering: set[asyncio.Future[Any]] = set()  # pending writes that may wait
        # Pending background writes (given a linger), whether they wait or not: their
        # commits are not requests writing, or a queue draining on its own would keep
        # its own foreground window open and wait its linger before every commit.
        self._background: set[asyncio.Future[Any]] = set()
        self._foreground_window = foreground_window
        # Loop time a write that may not wait was last submitted or committed (on a
        # slow disk a commit outlasts the window: requests are still writing).
        self._foreground_at = float("-inf")
        self._inflight_foreground = False  # the batch in flight holds such a write
        # read_cached: results of the database as of `_cache_version`.
        self._version_conn: sqlite3.Connection | None = None
        self._cache: dict[object, Any] = {}
        self._cache_version: int | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
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
            self._version_conn = open_version_watch(self.path)
        except BaseException:
            await self.close()  # threads are not daemons: never leave one behind
            raise

    async def close(self) -> None:
        """Refuse new writes, commit what is queued, close every connection."""
        self._closing = True
        self._dispatch_pending()  # a lingering write has nobody left to wait for
        await self._idle.wait()
        if self._version_conn is not None:
            self._version_conn.close()
            self._version_conn = None
        self._cache.clear()
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @property
    def writer_alive(self) -> bool:
        return self._writer is not None and self._writer.alive and not self._closing

    def add_commit_listener(self, listener: Callable[[CommitInfo], None]) -> None:
        self._listeners.append(listener)

    # -- writing -----------------------------------------------------------------

    async def write(self, command: Callable[[WriteTx], T], *, linger: float = 0.0) -> T:
        """Run `command(tx)` in a durable transaction; returns its result after commit.

        `linger` (seconds) is for background work (the job workers): rather than
        start a transaction of its own, the command waits up to that long for
        another write to start one and rides along — one commit (one fsync) for
        several writers. It lingers only while requests are writing (one came
        within the foreground window); otherwise it commits at once. Requests
        never linger.
        """
        if self._closing or self._writer is None or self._loop is None:
            raise ServiceUnavailable("the database is shutting down")
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((command, future))
        self._idle.clear()
        if linger > 0:
            self._background.add(future)
            if not self._foreground_recent():
                linger = 0.0  # nobody to ride along with: waiting would only add latency
        else:
            self._foreground_at = self._loop_time()
        if linger > 0:
            self._lingering.add(future)
            self._linger_seconds = linger
        if self._inflight or self._gathering:
            return await future  # a follower: the batch in flight hands it on
        if linger > 0:
            self._arm_linger(linger)
            return await future
        # The leader: yield once so callers woken in this same loop iteration can
        # join the batch, then dispatch everything queued and drive it.
        self._gathering = True
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._gathering = False
            future.cancel()  # its command stays queued and still commits
            self._dispatch_pending()
            raise
        self._gathering = False
        if not self._pending or self._inflight:
            return await future  # a lingering write's timer dispatched it meanwhile
        batch = self._take_batch()
        try:
            await self._dispatch(batch)
        except asyncio.CancelledError:
            future.cancel()  # the batch still commits; nobody is left to hear of it
            raise
        return await future

    def _take_batch(self) -> _Batch:
        """Take the next batch off the queue; it counts as in flight from now on."""
        batch = self._pending[: self._batch_max]
        del self._pending[: self._batch_max]
        self._inflight += 1
        background = sum(1 for _, future in batch if future in self._background)
        self._inflight_foreground = background < len(batch)
        if background:
            futures = [future for _, future in batch]
            self._background.difference_update(futures)
            self._lingering.difference_update(futures)
        if not self._lingering and self._linger is not None:
            # Its writes are taken: a later lingering write arms its own timer.
            self._linger.cancel()
            self._linger = None
        return batch

    def _foreground_recent(self) -> bool:
        """Whether a write that may not wait (a request's) was seen within the
        foreground window: only then is a background write likely to find a commit
        to share by lingering."""
        return self._loop_time() - self._foreground_at < self._foreground_window

    def _loop_time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _arm_linger(self, seconds: float) -> None:
        if self._linger is None:
            assert self._loop is not None
            self._linger = self._loop.call_later(seconds, self._linger_expired)

    def _linger_expired(self) -> None:
        self._linger = None
        self._dispatch_pending()

    def _dispatch_pending(self) -> None:
        """Dispatch what is queued from a task (no caller is driving it)."""
        if self._pending and not self._inflight and not self._gathering:
            task = asyncio.ensure_future(self._dispatch(self._take_batch()))
            self._dispatches.add(task)
            task.add_done_callback(self._dispatches.discard)

    async def _dispatch(self, batch: _Batch) -> None:
        """Send `batch` to the writer thread; returns when the thread is done with it."""
        delivered = False
        try:
            assert self._writer is not None
            assert self._loop is not None
            commands = [command for command, _ in batch]
            now = self.clock.now()
            projectors = self.projectors
            loop = self._loop

            def run(conn: sqlite3.Connection) -> None:
                nonlocal delivered
                try:
                    result: list[_Outcome] | BaseException = _run_batch(
                        conn, commands, now, projectors
                    )
                except BaseException as exc:  # BEGIN or COMMIT failed
                    result = exc
                delivered = True
                loop.call_soon_threadsafe(self._deliver, batch, result)

            await self._writer.run(run)
        except asyncio.CancelledError:
            if not delivered and self._writer is None:
                self._deliver(batch, ServiceUnavailable("the database is closed"))
            raise  # otherwise the thread still runs the batch and delivers it
        except BaseException as exc:  # never reached the writer thread
            if not delivered:
                self._deliver(batch, exc)

    def _deliver(self, batch: _Batch, result: list[_Outcome] | BaseException) -> None:
        """On the loop: resolve the batch's futures, notify listeners, dispatch the next batch."""
        try:
            if isinstance(result, BaseException):
                self._fail(batch, result)
            else:
                self._succeed(batch, result)
        finally:
            # Whatever happened above, the queue must move on.
            self._inflight -= 1
            if self._inflight_foreground:
                self._foreground_at = self._loop_time()
            if self._pending:
                if (
                    len(self._lingering) < len(self._pending)
                    or not self._foreground_recent()
                    or self._closing
                ):
                    self._dispatch_pending()  # someone waits, or nobody is coming to lead
                else:  # only background writes: give a request the chance to lead
                    self._arm_linger(self._linger_seconds)
            elif not self._gathering and not self._inflight:
                self._idle.set()

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        if is_unavailable(error):  # the disk or a lock, not a bug: no traceback
            log.error("group commit failed: %s", error, extra={"batch_size": len(batch)})
        else:
            log.error("group commit failed", exc_info=error, extra={"batch_size": len(batch)})
        failure = (
            error
            if isinstance(error, PressluftError)
            else unavailable(str(error) if isinstance(error, sqlite3.Error) else "")
        )
        for _, future in batch:
            if not future.done():
                future.set_exception(failure)

    def _succeed(self, batch: _Batch, outcomes: list[_Outcome]) -> None:
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
        if self._writer is None:
            raise ServiceUnavailable("the database is closed")

        def run(conn: sqlite3.Connection) -> tuple[int, int, int]:
            busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(busy), int(frames), int(done)

        try:
            return await self._writer.run(run)
        except sqlite3.Error as exc:
            if is_unavailable(exc):
                raise unavailable(str(exc)) from exc
            raise

    # -- reading -----------------------------------------------------------------

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run `query(conn)` on a reader inside one snapshot."""
        if self._closing and not self._all_readers:
            raise ServiceUnavailable("the database is closed")
        reader = await self._readers.get()
        try:
            return await reader.run(lambda conn: _in_snapshot(conn, query))
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if is_unavailable(exc, reading=True):
                raise unavailable(str(exc)) from exc
            raise
        finally:
            self._readers.put_nowait(reader)

    def data_version(self) -> int | None:
        """A number that differs after any commit by any other connection (ours or
        another process's); None when it cannot be read at once."""
        return None if self._version_conn is None else read_version(self._version_conn)

    async def read_cached(self, key: object, query: Callable[[sqlite3.Connection], T]) -> T:
        """`read(query)`, or the result it gave for `key` if the database has not
        changed since. `key` must name everything `query` depends on (beside the
        database); a query that depends on the time must not be cached. Results are
        shared between callers: frozen views only. None is never kept."""
        version = self.data_version()  # before the read: its snapshot is as new or newer
        if version is None:
            return await self.read(query)
        if version != self._cache_version:
            self._cache.clear()
            self._cache_version = version
        found = self._cache.get(key, _MISSING)
        if found is not _MISSING:
            return cast(T, found)
        result = await self.read(query)
        # A commit since `version` may be in the result: the next call sees a new
        # version and drops it; a result older than `version` cannot happen.
        if (
            result is not None
            and self._cache_version == version
            and len(self._cache) < READ_CACHE_ENTRIES
        ):
            self._cache[key] = result
        return result


_MISSING = object()


def open_version_watch(path: Path) -> sqlite3.Connection:
    """The loop thread's own connection: `PRAGMA data_version` and nothing else."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 0")  # never wait on the loop thread
    conn.execute("PRAGMA query_only = ON")
    return conn


def read_version(conn: sqlite3.Connection) -> int | None:
    """`PRAGMA data_version`, or None when the database cannot be read at once."""
    try:
        row = conn.execute("PRAGMA data_version").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def _in_snapshot(conn: sqlite3.Connection, query: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN")
    try:
        return query(conn)
    finally:
        conn.execute("COMMIT")


def _still_in_transaction(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:
        raise TransactionLost("the transaction ended inside a command")


def _run_batch(
    conn: sqlite3.Connection, commands: list[_Command], now: datetime, projectors: Any = None
) -> list[_Outcome]:
    """Runs on the writer thread: one transaction, one savepoint per command."""
    outcomes: list[_Outcome] = []
    now_ts = format_ts(now)
    memo: dict[str, Any] = {}
    finishers: dict[str, Callable[[sqlite3.Connection, Any], None]] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        if len(commands) == 1:
            # No savepoint needed: the command's failure rolls back the transaction.
            tx = WriteTx(conn, now, now_ts, memo=memo, finishers=finishers, projectors=projectors)
            try:
                value = commands[0](tx)
                _still_in_transaction(conn)
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return [_Outcome(error=_translate(exc))]
            outcomes.append(_Outcome(value=value, published=tx._published))
        else:
            for command in commands:
                tx = WriteTx(
                    conn, now, now_ts, memo=memo, finishers=finishers, projectors=projectors
                )
                memo_before, finishers_before = dict(memo), dict(finishers)
                conn.execute("SAVEPOINT command")
                try:
                    value = command(tx)
                except Exception as exc:
                    _still_in_transaction(conn)  # else the whole batch is lost: fail it
                    conn.execute("ROLLBACK TO command")
                    conn.execute("RELEASE command")
                    memo.clear()
                    memo.update(memo_before)
                    finishers.clear()
                    finishers.update(finishers_before)
                    outcomes.append(_Outcome(error=_translate(exc)))
                    continue
                _still_in_transaction(conn)
                conn.execute("RELEASE command")
                outcomes.append(_Outcome(value=value, published=tx._published))
        for key, finisher in finishers.items():
            finisher(conn, memo[key])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def write_now(
    conn: sqlite3.Connection, command: Callable[[WriteTx], T], now: datetime, projectors: Any = None
) -> T:
    """Run one command in its own transaction on a synchronous connection (CLI tools).

    The same commands the daemon runs; SQLite's locking serializes them with a
    daemon that may be running on the same file.
    """
    try:
        [outcome] = _run_batch(conn, [command], now, projectors)
    except sqlite3.Error as exc:  # BEGIN or COMMIT
        if is_unavailable(exc):
            raise unavailable(str(exc)) from exc
        raise
    if outcome.error is not None:
        raise outcome.error
    return cast(T, outcome.value)
