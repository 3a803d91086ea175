"""The worker pool: claims jobs and runs them, at most `slots` at a time.

One service in the daemon's loop:

- **claim loop**: claims as many runnable jobs as it has free slots (one
  transaction; the database decides what may run — no in-memory lock tables),
  starts an execution for each, then sleeps until something changes: a commit
  that enqueued/finished/cancelled a job wakes it at once (`wake()`, from the
  runtime's commit listener); otherwise it polls at the next due `run_after`,
  the next rescue, or `poll_seconds`.
- **leases**: one task renews the lease of every running attempt in one
  transaction every third of the lease; an attempt whose lease is gone is
  stopped (it has been rescued and may run elsewhere).
- **execution**: runs the job's worker (`registry`) with the job's timeout and cancellation
  (the handler's signal is set; after a grace period its task is cancelled,
  which kills its process group). The outcome is recorded with the attempt's
  lease token; a stale worker (lease taken over) is refused and changes nothing.
- **rescue**: at start-up every running attempt belongs to a dead process (this
  one holds the data dir), so all are rescued and the process groups they left
  are killed; afterwards, attempts whose lease expired are rescued periodically.
- **shutdown**: executions are cancelled (processes killed) and their attempts
  requeued, so nothing stays `running` while the daemon is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pressluft.clock import Clock, parse_ts
from pressluft.db import Database
from pressluft.errors import ServiceUnavailable
from pressluft.jobs.context import LocalPort, LogWriter
from pressluft.jobs.failures import JobCancelledError, JobFailure, retryable
from pressluft.jobs.logs import LeaseLost
from pressluft.jobs.process import kill_marked, kill_orphans
from pressluft.jobs.queue import (
    NODE_SITE_JOBS,
    Claim,
    Outcome,
    RescueScope,
    claim,
    finish_and_claim,
    renew,
    rescue,
)
from pressluft.jobs.registry import JobRegistry
from pressluft.logs import correlation_id, get_logger
from pressluft.vault import Vault

__all__ = ["PoolMetrics", "WorkerPool"]

log = get_logger("pressluft.jobs")

#: How long a cancelled handler may take to stop on its own before its task is cancelled.
CANCEL_GRACE_SECONDS = 2.0
#: The pool's writes (claims, outcomes, lease renewals) wait this long for a
#: request's write to share a commit with (group commit) — only while requests are
#: writing (the database decides): one fsync for several steps when busy, no wait
#: when the queue works on its own.
LINGER_SECONDS = 0.001
#: Backoff of a retried outcome write (while the database refuses writes).
RECORD_RETRY_FIRST = 0.25
RECORD_RETRY_MAX = 5.0


class PoolMetrics(Protocol):
    """What the pool reports (the daemon's `metrics.Metrics` is one)."""

    def observe_claim_failure(self) -> None: ...
    def observe_rescue(self) -> None: ...
    def observe_claim_latency(self, seconds: float) -> None: ...
    def observe_lease_rejection(self) -> None: ...
    def observe_attempt(self, job_type: str, status: str, seconds: float) -> None: ...


@dataclass
class _Execution:
    claim: Claim
    task: asyncio.Task[None] | None = None
    #: Set when anything needs the execution's attention: its handler ended, its
    #: cancellation was requested, or its lease was lost.
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    lease_lost: bool = False

    def lose_lease(self) -> None:
        self.lease_lost = True
        self.interrupt.set()


class WorkerPool:
    """Runs queued jobs in the daemon's event loop."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        registry: JobRegistry,
        metrics: PoolMetrics,
        *,
        vault: Callable[[], Vault],
        slots: int,
        lease_seconds: float,
        data_dir: Path,
        poll_seconds: float = 1.0,
        node_site_jobs: int = NODE_SITE_JOBS,
    ) -> None:
        self.db = db
        self.clock = clock
        self.registry = registry
        self.metrics = metrics
        #: The workers' secrets (a callable: the vault is loaded when the daemon starts).
        self.vault = vault
        self.slots = slots
        self.lease_seconds = lease_seconds
        #: Site jobs running at once on one node (the claim's cap).
        self.node_site_jobs = node_site_jobs
        self.poll_seconds = poll_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self.jobs_dir = data_dir / "jobs"
        self.run_dir = data_dir / "run"
        #: Running attempts, by lease token (a job may briefly have a stale one too).
        self.active: dict[str, _Execution] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    # -- signals from the rest of the daemon ---------------------------------------

    def wake(self) -> None:
        """The queue changed: look for work now."""
        self._wake.set()

    def request_cancel(self, job_id: str) -> None:
        """A running job's cancellation was recorded: tell its handler."""
        for execution in self.active.values():
            if execution.claim.job_id == job_id:
                execution.cancel_requested = True
                execution.interrupt.set()

    # -- the service ----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        # A restart by the supervisor (after a crash) runs this again on the same
        # pool: start clean, or every claim would be dropped as if shutting down.
        self._stopping = stopping.is_set()
        self._wake.clear()
        await self._rescue(RescueScope(all_running=True, reason="daemon_restarted"))
        kill_orphans(self.run_dir)
        # A crashed predecessor's leftovers (no job runs yet): processes that left
        # their job's group (ansible's workers) and the attempts' work dirs, with
        # the key files and extra vars they may hold.
        await asyncio.to_thread(_clear_leftovers, self.jobs_dir)
        watch_stop = asyncio.ensure_future(stopping.wait())
        watch_stop.add_done_callback(lambda _: self._begin_stopping())
        renewals = asyncio.create_task(self._renew_leases(stopping), name="job-leases")
        next_rescue = self.clock.monotonic() + self.lease_seconds / 2
        try:
            while not stopping.is_set():
                self._wake.clear()
                free = self.slots - len(self.active)
                next_due: str | None = None
                if free > 0:
                    try:
                        claims, next_due = await self.db.write(
                            claim(
                                free,
                                self.worker_id,
                                self.lease_seconds,
                                node_site_jobs=self.node_site_jobs,
                            ),
                            linger=LINGER_SECONDS,
                        )
                    except ServiceUnavailable as exc:
                        # The database cannot be written right now (a lock held by
                        # another process, a full disk): running jobs go on; look
                        # again soon rather than crash the pool and stop them.
                        self.metrics.observe_claim_failure()
                        log.warning("could not claim jobs; retrying: %s", exc.message)
                        await self._sleep(self.poll_seconds)
                        continue
                    for c in claims:
                        self._start(c)
                if self.clock.monotonic() >= next_rescue:
                    await self._rescue(self._live_scope())
                    next_rescue = self.clock.monotonic() + self.lease_seconds / 2
                # Everything runnable was claimed (or the slots are full): sleep until
                # a commit wakes us (enqueue, end, cancel) or something falls due.
                await self._sleep(self._next_wait(next_rescue, next_due))
        finally:
            self._stopping = True
            watch_stop.cancel()
            renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewals
            await self._stop_all()

    def _begin_stopping(self) -> None:
        """No new executions from now on (a finishing one claims no successor)."""
        self._stopping = True
        self._wake.set()

    def _next_wait(self, next_rescue: float, next_due: str | None) -> float:
        wait = min(self.poll_seconds, max(0.0, next_rescue - self.clock.monotonic()))
        if next_due is not None:
            until = (parse_ts(next_due) - self.clock.now()).total_seconds()
            wait = min(wait, max(0.0, until))
        return wait

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0 or self._wake.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    def _live_scope(self) -> RescueScope:
        return RescueScope(live_tokens={e.claim.lease_token for e in self.active.values()})

    async def _rescue(self, scope: RescueScope) -> None:
        try:
            rescued = await self.db.write(rescue(scope))
        except ServiceUnavailable:
            return
        for r in rescued:
            self.metrics.observe_rescue()
            log.warning(
                "rescued a job whose worker went away",
                extra={"job_id": r.job_id, "attempt": r.attempt, "outcome": r.outcome},
            )

    async def _renew_leases(self, stopping: asyncio.Event) -> None:
        """Every third of the lease: renew every running attempt's lease in one
        transaction; an attempt whose lease is gone is told to stop."""
        interval = max(0.05, self.lease_seconds / 3)
        while not stopping.is_set():
            await asyncio.sleep(interval)
            held = [e for e in self.active.values() if not e.lease_lost]
            if not held:
                continue
            leases = [(e.claim.job_id, e.claim.lease_token, e.claim.attempt) for e in held]
            try:
                lost = await self.db.write(renew(leases, self.lease_seconds), linger=LINGER_SECONDS)
            except ServiceUnavailable:
                continue
            except Exception:  # never let the renewals die quietly: leases would expire
                log.exception("could not renew job leases")
                continue
            for execution in held:
                if execution.claim.lease_token in lost:
                    execution.lose_lease()

    async def _stop_all(self) -> None:
        """Shutdown: stop every execution, then requeue what they were running."""
        executions = list(self.active.values())
        tasks = [e.task for e in executions if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Also takes back a job a finishing execution claimed as its successor
        # just before the pool stopped (it was never started).
        with contextlib.suppress(Exception):
            await self.db.write(rescue(RescueScope(all_running=True, reason="daemon_stopped")))

    # -- one execution ------------------------------------------------------------------

    def _start(self, c: Claim) -> None:
        if self._stopping:
            return  # shutting down: the final rescue puts it back in the queue
        latency = (parse_ts(c.claimed_at) - parse_ts(c.ready_at)).total_seconds()
        self.metrics.observe_claim_latency(max(0.0, latency))
        earlier = [e for e in self.active.values() if e.claim.job_id == c.job_id]
        for stale in earlier:  # its lease was taken away: it must stop before this one runs
            stale.lose_lease()
        execution = _Execution(claim=c)
        execution.task = asyncio.create_task(
            self._execute(execution, [e.task for e in earlier if e.task is not None]),
            name=f"job-{c.job_id}-{c.attempt}",
        )
        self.active[c.lease_token] = execution
        execution.task.add_done_callback(lambda _: self._finished(c.lease_token))

    def _finished(self, lease_token: str) -> None:
        self.active.pop(lease_token, None)
        self._wake.set()  # a slot is free

    async def _execute(self, execution: _Execution, earlier: list[asyncio.Task[None]]) -> None:
        c = execution.claim
        if earlier:  # a stale execution of the same job: never run a job twice at once
            await asyncio.wait(earlier)
        token = correlation_id.set(c.correlation_id)
        started = self.clock.monotonic()
        writer = LogWriter(self.db, c, execution.lose_lease)
        ctx = LocalPort(
            c,
            self.jobs_dir,
            writer,
            asyncio.Event(),
            db=self.db,
            vault=self.vault,
            run_dir=self.run_dir,
        )
        try:
            outcome = await self._run_handler(execution, ctx, writer)
        except asyncio.CancelledError:
            await writer.close(grace=CANCEL_GRACE_SECONDS)  # shutdown: do not wait on a bad disk
            await asyncio.shield(_remove(ctx))
            correlation_id.reset(token)
            raise  # shutdown: the pool requeues the attempt
        await writer.close()
        await _remove(ctx)
        try:
            if outcome is None or execution.lease_lost:
                raise LeaseLost(f"job {c.job_id} lost its lease")
            status, claims = await self._record(execution, outcome)
            for next_claim in claims:
                self._start(next_claim)
        except LeaseLost:
            self.metrics.observe_lease_rejection()
            log.warning("a stale worker's result was refused", extra={"job_id": c.job_id})
            return
        except ServiceUnavailable:
            log.warning(
                "could not record a job's outcome; it will be rescued", extra={"job_id": c.job_id}
            )
            return
        finally:
            correlation_id.reset(token)
        self.metrics.observe_attempt(c.job_type, status, self.clock.monotonic() - started)
        log.info(
            "job attempt ended",
            extra={
                "job_id": c.job_id,
                "job_type": c.job_type,
                "attempt": c.attempt,
                "status": status,
            },
        )

    async def _record(self, execution: _Execution, outcome: Outcome) -> tuple[str, list[Claim]]:
        """Record the attempt's outcome; while the database refuses writes, try again
        — however long that takes — rather than have a finished job rescued and run
        a second time. Nobody can take the lease meanwhile: this daemon alone owns
        the data dir, and its own rescue spares the attempts it still runs (this
        execution stays active until recorded); the write is fenced by the lease
        token, not by its expiry."""
        c = execution.claim
        delay = RECORD_RETRY_FIRST
        while True:
            # This slot is free again once the outcome is recorded: claim its next
            # job in the same transaction unless the pool is winding down.
            more = 0 if self._stopping else 1
            try:
                return await self.db.write(
                    finish_and_claim(
                        c,
                        outcome,
                        self.worker_id,
                        more,
                        self.lease_seconds,
                        node_site_jobs=self.node_site_jobs,
                    ),
                    linger=LINGER_SECONDS,
                )
            except ServiceUnavailable:
                if self._stopping or execution.lease_lost:
                    raise
            log.warning("could not record an outcome yet; retrying", extra={"job_id": c.job_id})
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECORD_RETRY_MAX)

    async def _run_handler(
        self, execution: _Execution, ctx: LocalPort, writer: LogWriter
    ) -> Outcome | None:
        """Run the worker; the outcome, or None when the lease was lost."""
        c = ctx.claim
        worker = self.registry.get(c.job_type)
        if worker is None:
            writer.write(f"no handler for job type {c.job_type!r}", "system")
            return Outcome("failed", "JOB_TYPE_UNKNOWN", f"unknown job type {c.job_type}")
        interrupt = execution.interrupt
        handler = asyncio.create_task(worker.run(ctx, c.payload))
        handler.add_done_callback(lambda _: interrupt.set())
        try:
            try:
                async with asyncio.timeout(c.timeout_seconds):
                    while not handler.done():
                        await interrupt.wait()
                        interrupt.clear()
                        if execution.lease_lost:
                            await _stop(handler)
                            return None
                        if execution.cancel_requested and not handler.done():
                            ctx.cancelled.set()  # ask nicely first
                            await asyncio.wait({handler}, timeout=CANCEL_GRACE_SECONDS)
                            if not handler.done():
                                await _stop(handler)
                                return Outcome("cancelled")
            except TimeoutError:
                if handler.done():
                    return _classify(handler, worker.backoff(c.attempt), writer)
                await _stop(handler)
                writer.write(f"timed out after {c.timeout_seconds} s", "system")
                return Outcome(
                    "failed",
                    worker.timeout_code,
                    f"timed out after {c.timeout_seconds} s",
                    retryable=retryable(worker.timeout_code),
                    backoff_seconds=worker.backoff(c.attempt),
                )
            if execution.lease_lost:
                return None
            return _classify(handler, worker.backoff(c.attempt), writer)
        finally:
            if not handler.done():
                await _stop(handler)


def _clear_leftovers(jobs_dir: Path) -> None:
    kill_marked(jobs_dir)
    if jobs_dir.is_dir():
        for child in jobs_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


async def _remove(ctx: LocalPort) -> None:
    """Remove the attempt's work dir, if it made one (secrets may have been materialized)."""
    if ctx.work_dir_created:
        work_dir = ctx.work_dir
        await asyncio.to_thread(shutil.rmtree, work_dir, True)
        with contextlib.suppress(OSError):
            work_dir.parent.rmdir()  # the job's dir, once its last attempt dir is gone


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _classify(handler: asyncio.Task[None], backoff: int, writer: LogWriter) -> Outcome:
    """The outcome of a handler task that has ended."""
    if handler.cancelled():
        return Outcome("cancelled")
    error = handler.exception()
    if error is None:
        return Outcome("succeeded")
    if isinstance(error, JobCancelledError):
        return Outcome("cancelled")
    if isinstance(error, JobFailure):
        return Outcome("failed", error.code, error.message, error.retryable, backoff)
    log.error("a job handler raised", exc_info=error)
    writer.write("".join(traceback.format_exception_only(type(error), error)).strip(), "system")
    return Outcome("failed", "HANDLER_ERROR", f"{type(error).__name__}: {error}")
