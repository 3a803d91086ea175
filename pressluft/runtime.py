"""The daemon's runtime: everything one `pressluft` process owns, started and stopped together.

Start order: take the data-dir lock, create the directory tree and master key,
migrate, open the database, seed the notifier and metrics with the log head,
start the background services. Stop in reverse: services, then the database
(which commits whatever is still queued), then the lock.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from pressluft import __version__
from pressluft.affinity import colocate_current_thread, restore_current_thread
from pressluft.clock import Clock, SystemClock, format_ts
from pressluft.config import Config
from pressluft.datadir import DataDirLock, prepare
from pressluft.db import CommitInfo, Database, migrate_file
from pressluft.events import Recorded, head_seq
from pressluft.events.notify import LogNotifier
from pressluft.logs import get_logger
from pressluft.metrics import Metrics
from pressluft.services.background import Service, Supervisor
from pressluft.vault import Vault

__all__ = ["Runtime", "find_ansible_playbook"]

log = get_logger("pressluft.runtime")

CHECKPOINT_INTERVAL_SECONDS = 300.0


def find_ansible_playbook() -> str | None:
    """`ansible-playbook` on PATH, or next to this interpreter (a virtualenv)."""
    found = shutil.which("ansible-playbook")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.is_file() else None


class Runtime:
    """One daemon's state and background services."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
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
        )
        self.supervisor = Supervisor(self.clock)
        self.stopping = asyncio.Event()
        self._lock = DataDirLock(config.data_dir, f"pressluft {config.mode}")
        self._vault: Vault | None = None
        self._affinity: set[int] | None = None
        self.started_at = self.clock.monotonic()
        self.started = False

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            raise RuntimeError("the runtime is not started")
        return self._vault

    async def start(self) -> None:
        prepare(self.config.data_dir)
        self._lock.acquire()
        if self.config.cpu_affinity == "colocate":
            # First: every thread the loop creates from here on inherits its CPU.
            self._affinity = colocate_current_thread()
        try:
            self._vault = Vault.load_or_create(self.config.data_dir / "secrets")
            applied = await asyncio.to_thread(
                migrate_file,
                str(self.config.database_path),
                format_ts(self.clock.now()),
                synchronous=self.config.db_synchronous,
            )
            for migration in applied:
                log.info("applied migration %04d_%s", migration.version, migration.name)
            await self.db.open()
        except BaseException:
            restore_current_thread(self._affinity)
            self._lock.release()
            raise
        head = await self.db.read(head_seq)
        self.notifier.advance(head)
        self.metrics.log_head.set(head)
        self.db.add_commit_listener(self._on_commit)
        self.supervisor.start(Service("wal-checkpoint", self._checkpoint_loop))
        self.started_at = self.clock.monotonic()
        self.started = True
        log.info("runtime started", extra={"data_dir": str(self.config.data_dir)})

    async def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        self.stopping.set()
        await self.supervisor.stop(grace=self.config.shutdown_timeout_seconds)
        await self.db.close()
        restore_current_thread(self._affinity)
        self._affinity = None
        self._lock.release()
        log.info("runtime stopped; database closed")

    def _on_commit(self, info: CommitInfo) -> None:
        self.metrics.observe_commit(info)
        newest = max((i.seq for i in info.published if isinstance(i, Recorded)), default=0)
        self.notifier.advance(newest)

    async def _checkpoint_loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), CHECKPOINT_INTERVAL_SECONDS)
            except TimeoutError:
                await self.db.checkpoint()
