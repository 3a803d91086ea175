"""Typed job workers and the port they work through.

A job type is a `JobWorker` subclass: its `kind`, its arguments (`args`, a
msgspec Struct decoded from the job's payload) and its settings — timeout,
attempts, backoff, timeout code, node lock, uniqueness — are class attributes,
the one source of truth: `enqueue_job` builds the job from them. A worker is
constructed with what it needs besides the job (providers, a setting), never
with the database or the vault.

`WorkerPort` is everything a worker may do while it runs: load what it works
on (named `Loader`s: typed queries the pool runs on a reader), open a sealed
secret, record events fenced by its lease (under the job's actor and
correlation id), run a named command fenced the same way (the one escape hatch
for a guarded read-then-write), write log lines, know whether this attempt is
the final one, see cancellation, and use its work dir. The daemon's pool
implements it over the local database (`jobs/context.py`); a worker on another
host will implement the same port over HTTP, so it stays small: keys, ids,
events and strings cross it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

import msgspec

from pressluft.events import Event, Meta
from pressluft.jobs.events import NodeLock
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.queue import JobSpec, enqueue

if TYPE_CHECKING:
    import sqlite3

    from pressluft.db import WriteTx

__all__ = [
    "DEFAULT_BACKOFF",
    "JobWorker",
    "Loader",
    "NoArgs",
    "WorkerPort",
    "enqueue_job",
    "job_actor",
]

#: The reference's backoff: 1 min, 5 min, 15 min.
DEFAULT_BACKOFF = (60, 300, 900)

A = TypeVar("A", bound=msgspec.Struct)
K = TypeVar("K")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def job_actor(job_id: str) -> str:
    """The actor of the events a job's worker records."""
    return f"system:job:{job_id}"


class NoArgs(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of a job that takes none (everything is in its scope)."""


@dataclass(frozen=True)
class Loader(Generic[K, T_co]):
    """A named, typed query a worker may run through its port: `query(conn, key)`
    on a reader connection, in one snapshot. The name identifies it to a port
    that runs it elsewhere."""

    name: str
    query: Callable[[sqlite3.Connection, K], T_co]


#: Seals a secret in the caller's transaction: (conn, purpose, plaintext, now) → its id.
Sealer = Callable[["sqlite3.Connection", str, bytes, str], str]


class WorkerPort(Protocol):
    """What a running worker may do and know (one attempt of one job)."""

    job_id: str
    job_type: str
    attempt: int
    max_attempts: int
    site_id: str | None
    environment_id: str | None
    node_id: str | None
    correlation_id: str | None
    #: When this attempt was claimed (the control plane's clock).
    claimed_at: str
    #: Set when cancellation is requested (subprocess runners watch it).
    cancelled: asyncio.Event
    #: Where subprocess records live (so a crashed daemon's leftovers can be killed).
    run_dir: Path | None

    @property
    def work_dir(self) -> Path:
        """The attempt's private directory (0700), created on first use and removed
        when the attempt ends."""
        ...

    @property
    def final_attempt(self) -> bool:
        """Whether no attempt follows this one, whatever happens."""
        ...

    def is_final(self, failure: JobFailure) -> bool:
        """Whether `failure` would end the job (not retryable, or no attempt left)."""
        ...

    def log(self, text: str, stream: str = "stdout") -> None:
        """Record output lines (never blocks; stored in order, fenced by the lease)."""
        ...

    def check_cancelled(self) -> None:
        """Raise JobCancelledError if cancellation was requested."""
        ...

    async def load(self, loader: Loader[K, T], key: K) -> T:
        """Run a named query (reader connection, one snapshot)."""
        ...

    async def secret(self, secret_id: str) -> str:
        """Open a sealed secret (its plaintext, UTF-8)."""
        ...

    def sealer(self) -> Sealer:
        """Seal a secret inside a `command`'s transaction: `(conn, purpose, plaintext,
        now) → its id` (a worker never holds the vault)."""
        ...

    async def record(
        self, stream: str, events: Sequence[Event], expected_version: int | None = None
    ) -> None:
        """Append events as the job, in one transaction, only while this attempt
        holds its lease (LeaseLost otherwise: a stale worker changes nothing)."""
        ...

    async def command(self, fn: Callable[[WriteTx, Meta], T]) -> T:
        """Run a named command `fn(tx, meta)` in one transaction, fenced like
        `record` — the escape hatch for a guarded read-then-write a plain record
        cannot say. `fn` is a module-level command of the worker's service, never
        a worker's own SQL."""
        ...


class JobWorker(Generic[A]):
    """A job type. Subclasses set `kind` and `args` and implement `work`."""

    kind: ClassVar[str]
    #: The Struct the payload decodes to (`type[A]`; a ClassVar cannot say so).
    args: ClassVar[type[msgspec.Struct]] = NoArgs
    timeout_seconds: ClassVar[int] = 1800
    max_attempts: ClassVar[int] = 3
    backoff_seconds: ClassVar[tuple[int, ...]] = DEFAULT_BACKOFF
    #: What a timeout is called (Ansible workers: ANSIBLE_TIMEOUT, retryable).
    timeout_code: ClassVar[str] = "JOB_TIMEOUT"
    #: How the job holds its node: alone (`exclusive`) or beside others (`shared`).
    node_lock: ClassVar[NodeLock] = "exclusive"
    #: At most one queued or running job per (kind, target) when True.
    unique: ClassVar[bool] = False

    async def work(self, ctx: WorkerPort, args: A) -> None:
        raise NotImplementedError

    @classmethod
    def backoff(cls, attempt: int) -> int:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        steps = cls.backoff_seconds or DEFAULT_BACKOFF
        return steps[min(attempt, len(steps)) - 1]

    def decode(self, payload: dict[str, Any]) -> A:
        """The job's arguments; a payload that does not fit is the caller's bug."""
        try:
            return cast(A, msgspec.convert(payload, self.args))
        except msgspec.ValidationError as exc:
            raise JobFailure("HANDLER_ERROR", f"bad arguments for {self.kind}: {exc}") from exc

    async def run(self, ctx: WorkerPort, payload: dict[str, Any]) -> None:
        """Decode the payload and work (what the pool calls)."""
        await self.work(ctx, self.decode(payload))


def enqueue_job(
    tx: WriteTx,
    worker: type[JobWorker[A]],
    args: A,
    meta: Meta,
    *,
    site_id: str | None = None,
    environment_id: str | None = None,
    node_id: str | None = None,
    holds: tuple[str, str, str] | None = None,
    run_after: str | None = None,
    node_lock: NodeLock | None = None,
    unique: bool | None = None,
) -> str:
    """Queue a job of `worker`'s kind inside the caller's transaction: timeout,
    attempts, node lock and uniqueness come from the class (a command may name
    another lock or uniqueness for one job, saying why). `holds` is
    (aggregate, id, status): the row the job keeps in that status while it runs."""
    if not isinstance(args, worker.args):
        raise TypeError(f"{worker.kind} takes {worker.args.__name__}, not {type(args).__name__}")
    spec = JobSpec(
        job_type=worker.kind,
        payload=msgspec.to_builtins(args),
        site_id=site_id,
        environment_id=environment_id,
        node_id=node_id,
        max_attempts=worker.max_attempts,
        timeout_seconds=worker.timeout_seconds,
        run_after=run_after,
        node_lock=worker.node_lock if node_lock is None else node_lock,
        unique=worker.unique if unique is None else unique,
        holds=holds,
    )
    return enqueue(tx, spec, meta)
