"""The daemon's runtime: everything one `pressluft` process owns, started and stopped together.

Start order: create the directory tree, take the data-dir lock, pin the loop's
CPU, migrate, load the master key (refusing to mint a new one while sealed
secrets exist), open the database, seed the notifier and metrics with the log
head, start the background services. Stop in reverse: services, then the
database (which commits whatever is still queued), the CPU mask, the lock. A
start that fails half-way undoes what it started, so the process can exit.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import sqlite3
from pathlib import Path
from typing import TypeVar

from pressluft import __version__
from pressluft.affinity import colocate_current_thread, restore_current_thread
from pressluft.clock import Clock, SystemClock, format_ts
from pressluft.config import Config
from pressluft.contexts.access.service import Access
from pressluft.contexts.access.users import count_users, create_user_command
from pressluft.contexts.operations.health import Health, probe_write
from pressluft.datadir import DataDirLock, prepare
from pressluft.db import CommitInfo, Database, is_unavailable, migrate_file, open_sync
from pressluft.errors import ServiceUnavailable
from pressluft.events import Meta, Recorded, head_seq
from pressluft.events.notify import KeyedNotifier, LogNotifier
from pressluft.feature import Feature, Kernel, Parts
from pressluft.features import FEATURES, migrations_of, projectors_of
from pressluft.http.writes import Writer
from pressluft.jobs.logs import LogAppended
from pressluft.jobs.queue import JobWake
from pressluft.jobs.registry import JobRegistry
from pressluft.jobs.scheduler import Scheduler
from pressluft.jobs.worker import WorkerPool
from pressluft.logs import get_logger
from pressluft.metrics import Metrics
from pressluft.supervisor import Service, Supervisor
from pressluft.vault import Vault

__all__ = ["Runtime"]

S = TypeVar("S")

log = get_logger("pressluft.runtime")

CHECKPOINT_INTERVAL_SECONDS = 300.0
INITIAL_ADMIN_EMAIL = "admin@pressluft.local"
INITIAL_ADMIN_FILE = "initial-admin-password"
FIRST_RUN_ACTOR = "system:first-run"
_ENDS_CREDENTIALS = frozenset(
    {"auth.session_revoked", "auth.session_expired", "token.revoked", "user.password_changed"}
)


def _sealed_secret_count(path: Path) -> int:
    conn = open_sync(path, "reader")
    try:
        return int(conn.execute("SELECT count(*) FROM secrets").fetchone()[0])
    finally:
        conn.close()


class Runtime:
    """One daemon's state and background services."""

    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        *,
        features: tuple[Feature, ...] = FEATURES,
    ) -> None:
        self.config = config
        self.features = features
        self.migrations = migrations_of(features)
        self.clock: Clock = clock or SystemClock()
        self.version = __version__
        self.metrics = Metrics()
        self.notifier = LogNotifier()
        self.db = Database(
            config.database_path,
            self.clock,
            synchronous=config.db_synchronous,
            busy_timeout_ms=config.db_busy_timeout_ms,
            readers=config.db_readers,
            batch_max=config.write_batch_max,
            projectors=projectors_of(features),
        )
        self.supervisor = Supervisor(self.clock, metrics=self.metrics)
        #: Wakes whoever waits on one job (its end, its log lines).
        self.job_changes = KeyedNotifier()
        #: The job workers: the features' (see `parts` below).
        self.jobs = JobRegistry()
        self.scheduler = Scheduler(self.db, self.clock)
        vault = lambda: self.vault  # noqa: E731 - opened at start
        writer = Writer(self.db, vault, config.idempotency_ttl_seconds)
        self.stopping = asyncio.Event()
        #: Moves whenever a session or token ends, so long-lived streams re-check theirs.
        self.auth_epoch = 0
        self.kernel = kernel = Kernel(
            config,
            self.clock,
            self.db,
            self.metrics,
            vault,
            writer,
            notifier=self.notifier,
            job_changes=self.job_changes,
            stopping=self.stopping,
            auth_epoch=lambda: self.auth_epoch,
            supervisor=self.supervisor,
            job_kinds=self.jobs.names,
        )
        self.parts: list[Parts] = [feature.parts(kernel) for feature in features]
        access = self.service("access", Access)
        self.hasher = access.hasher
        for parts in self.parts:
            for worker in parts.workers:
                self.jobs.register(worker)
            for schedule in parts.schedules:
                self.scheduler.add(schedule)
        self.workers = WorkerPool(
            self.db,
            self.clock,
            self.jobs,
            self.metrics,
            vault=lambda: self.vault,
            slots=config.workers,
            lease_seconds=config.lease_seconds,
            data_dir=config.data_dir,
            node_site_jobs=config.node_site_jobs,
        )
        self._lock = DataDirLock(config.data_dir, f"pressluft {config.mode}")
        self._vault: Vault | None = None
        self._affinity: set[int] | None = None
        #: Set on the first `dev` start: (email, password) to show once, then cleared.
        self.initial_admin: tuple[str, str] | None = None
        self.user_count = 0
        self.started = False

    def service(self, name: str, kind: type[S]) -> S:
        """The service a feature registered under `name` (the composition root's view)."""
        for parts in self.parts:
            found = parts.services.get(name)
            if isinstance(found, kind):
                return found
        raise LookupError(f"no {kind.__name__} service named {name!r}")

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            raise RuntimeError("the runtime is not started")
        return self._vault

    async def start(self) -> None:
        """Start everything; on any failure, undo what was started and re-raise.

        A data dir or database that cannot be written (read-only or full disk, a
        lock held by another process) refuses the start with `ServiceUnavailable`
        saying so: a daemon that cannot record a change must not serve.
        """
        try:
            prepare(self.config.data_dir)
            self._lock.acquire()
        except OSError as exc:
            refusal = self._unwritable(exc)
            if refusal is None:
                raise
            raise refusal from exc
        if self.config.cpu_affinity == "colocate":
            # First: every thread the loop creates from here on inherits its CPU.
            self._affinity = colocate_current_thread()
        try:
            try:
                await self._start()
            except (OSError, sqlite3.Error, ServiceUnavailable) as exc:
                refusal = self._unwritable(exc)
                if refusal is None:
                    raise
                raise refusal from exc
        except BaseException:
            await self._shutdown()
            raise
        self.started = True
        log.info("runtime started", extra={"data_dir": str(self.config.data_dir)})

    async def _start(self) -> None:
        applied = await asyncio.to_thread(
            migrate_file,
            str(self.config.database_path),
            format_ts(self.clock.now()),
            synchronous=self.config.db_synchronous,
            sources=self.migrations,
        )
        for migration in applied:
            log.info("applied migration %04d_%s", migration.version, migration.name)
        sealed = await asyncio.to_thread(_sealed_secret_count, self.config.database_path)
        self._vault = Vault.load_or_create(self.config.data_dir / "secrets", sealed=sealed)
        await self.db.open()
        await self.db.write(probe_write)  # refuse to serve what could not be recorded
        head = await self.db.read(head_seq)
        self.notifier.advance(head)
        self.metrics.log_head.set(head)
        self.db.add_commit_listener(self._on_commit)
        self.user_count = await self.db.read(count_users)
        if self.user_count == 0 and self.config.mode == "dev":
            await self._create_initial_admin()
        self.supervisor.start(Service("wal-checkpoint", self._checkpoint_loop))
        self.supervisor.start(Service("workers", self.workers.run))
        self.supervisor.start(Service("scheduler", self.scheduler.run))
        for parts in self.parts:
            for service in parts.background:
                self.supervisor.start(service)
        self.service("health", Health).mark_started()

    def _unwritable(self, exc: BaseException) -> ServiceUnavailable | None:
        """The refusal for a start that met a data dir it cannot write; None for any
        other failure (it stays what it is)."""
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
            hint = "run Pressluft as the user that owns the data dir, or fix its permissions"
        elif (
            isinstance(exc, ServiceUnavailable)
            or (isinstance(exc, sqlite3.Error) and is_unavailable(exc))
            or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT))
        ):
            hint = (
                "make sure its file system is mounted read-write, has free space and that "
                "no other process holds the database's write lock; then start again"
            )
        else:
            return None
        cause = exc.message if isinstance(exc, ServiceUnavailable) else str(exc)
        return ServiceUnavailable(
            f"cannot write to the data dir {self.config.data_dir}: {cause}",
            details={"hint": hint},
        )

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        await self._shutdown()
        log.info("runtime stopped; database closed")

    async def _shutdown(self) -> None:
        """Stop services, close the database, restore the CPU mask, release the lock."""
        self.stopping.set()
        try:
            await self.supervisor.stop(grace=self.config.shutdown_timeout_seconds)
        finally:
            for parts in self.parts:
                for close in parts.closers:
                    close()
            try:
                await self.db.close()
            finally:
                restore_current_thread(self._affinity)
                self._affinity = None
                self._lock.release()

    def _on_commit(self, info: CommitInfo) -> None:
        """After every durable commit: wake whoever waits for what it changed."""
        self.metrics.observe_commit(info)
        newest = 0
        for item in info.published:
            if isinstance(item, Recorded):
                newest = max(newest, item.seq)
                if item.type in _ENDS_CREDENTIALS:
                    self.auth_epoch += 1
                elif item.stream.startswith("job:"):
                    job_id = item.stream[4:]
                    self.job_changes.notify(job_id)
                    if item.type == "job.cancel_requested":
                        self.workers.request_cancel(job_id)
            elif isinstance(item, LogAppended):
                self.job_changes.notify(item.job_id)
            elif isinstance(item, JobWake):
                self.workers.wake()
        self.notifier.advance(newest)

    async def _create_initial_admin(self) -> None:
        """First `dev` start: an admin with a random password, shown once, kept 0600."""
        password = secrets.token_urlsafe(18)
        password_hash = await self.hasher.hash(password)
        command = create_user_command(
            self.vault,
            INITIAL_ADMIN_EMAIL,
            password_hash,
            "admin",
            "Administrator",
            Meta(actor=FIRST_RUN_ACTOR),
        )
        await self.db.write(command)
        path = self.config.data_dir / INITIAL_ADMIN_FILE
        path.unlink(missing_ok=True)  # a leftover from a removed database
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"email: {INITIAL_ADMIN_EMAIL}\npassword: {password}\n")
        self.initial_admin = (INITIAL_ADMIN_EMAIL, password)
        self.user_count = 1
        log.info("created the initial admin", extra={"email": INITIAL_ADMIN_EMAIL})

    async def _checkpoint_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), CHECKPOINT_INTERVAL_SECONDS)
            except TimeoutError:
                await self.db.checkpoint()
