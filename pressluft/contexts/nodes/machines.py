"""Lab nodes' machines (`docker` provider) outside their jobs: the watcher that
records their deaths, and the report of orphaned containers.

The jobs that create, start, stop and remove them are in `workers.py`
(`node_create`, `node_start`, `node_stop`, `docker_reconcile`); the providers
they drive are configured in `probes.py`.

- The `docker-events` service turns the engine's `die` events of managed
  containers into `node.container_died` (exit code); at start it first records
  the deaths it missed while the daemon was down. A stop or removal that a job
  asked for (`node_stop`, `node_decommission`) is no death: the lab marks the
  container before it asks the engine, and the watcher passes its `die` over.
- `docker_reconcile` (every 5 minutes): a container labelled as Pressluft's whose
  node is not a live docker node with that container is reported once as
  `node.orphan_detected` (`record_orphans`); nothing is deleted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from pressluft.clock import Clock
from pressluft.contexts.nodes.events import NodeContainerDied, NodeOrphanDetected
from pressluft.contexts.nodes.probes import DockerProvider
from pressluft.db import Database, WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.logs import get_logger
from pressluft.supervisor import Service

__all__ = ["DeathWatcher", "ManagedContainer", "record_orphans"]

log = get_logger("pressluft.nodes")

WATCHER_ACTOR = "system:docker-events"


class ManagedContainer(Protocol):
    """A container labelled as Pressluft's, as the engine reports it."""

    @property
    def node_id(self) -> str: ...
    @property
    def container_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def finished_at(self) -> int | None: ...


def record_orphans(
    states: Sequence[ManagedContainer],
) -> Callable[[WriteTx, Meta], list[NodeOrphanDetected]]:
    """`node.orphan_detected` for each managed container whose node is not a live
    docker node with that container, once per container."""

    def command(tx: WriteTx, meta: Meta) -> list[NodeOrphanDetected]:
        live = {
            str(node_id): container_id
            for node_id, container_id in tx.conn.execute(
                "SELECT id, container_id FROM nodes WHERE provider = 'docker'"
                " AND status != 'decommissioned'"
            )
        }
        found = []
        for state in states:
            if state.node_id in live and live[state.node_id] in (None, state.container_id):
                continue  # its node's (or being created by its node_create job)
            stream = f"orphan:{state.container_id}"
            if tx.conn.execute("SELECT 1 FROM events WHERE stream = ?", (stream,)).fetchone():
                continue  # reported before
            event = NodeOrphanDetected(
                container_id=state.container_id,
                labelled_node_id=state.node_id,
                container_status=state.status,
            )
            append(tx, stream, NO_STREAM, [event], meta)
            found.append(event)
        return found

    return command


class DeathWatcher:
    """The `docker-events` service: container deaths → `node.container_died`."""

    def __init__(self, db: Database, clock: Clock, provider: DockerProvider) -> None:
        self.db = db
        self.clock = clock
        self.provider = provider

    def service(self) -> Service:
        return Service("docker-events", self.run)

    async def record(self, node_id: str, exit_code: int, at: int) -> bool:
        """Record one death (once: a death at the same time is not recorded again)."""

        def command(tx: WriteTx) -> bool:
            row = tx.conn.execute(
                "SELECT container_state, container_died_at FROM nodes WHERE id = ?"
                " AND provider = 'docker' AND status != 'decommissioned'"
                " AND container_id IS NOT NULL",
                (node_id,),
            ).fetchone()
            if row is None or row[0] == "removed" or (row[0] != "running" and row[1] == at):
                return False
            event = NodeContainerDied(node_id=node_id, exit_code=exit_code, died_at=at)
            append(tx, f"node:{node_id}", None, [event], Meta(actor=WATCHER_ACTOR))
            return True

        recorded: bool = await self.db.write(command)
        if recorded:
            log.warning(
                "a lab node's container died", extra={"node_id": node_id, "exit_code": exit_code}
            )
        return recorded

    async def _missed(self) -> None:
        """Deaths while no one watched: containers recorded running that are not."""
        states: Sequence[ManagedContainer] = await asyncio.to_thread(self.provider.lab.managed)
        running = await self.db.read(
            lambda conn: {
                str(r[0]): str(r[1])
                for r in conn.execute(
                    "SELECT id, container_id FROM nodes WHERE provider = 'docker'"
                    " AND status != 'decommissioned' AND container_state = 'running'"
                )
            }
        )
        for state in states:
            if self.provider.lab.asked_to_die(state.container_id):
                continue  # stopped or removed by a job of this daemon: no death
            if running.get(state.node_id) == state.container_id and state.exit_code is not None:
                # The engine's time of the death, as its die event will carry it: the
                # stream replaying that event then records nothing more.
                at = state.finished_at if state.finished_at is not None else int(time.time())
                await self.record(state.node_id, state.exit_code, at)

    async def run(self, stopping: asyncio.Event) -> None:
        # From now on the stream reports deaths; the ones before, `_missed` finds. A death
        # both see carries the same engine time, and `record` keeps only the first.
        since = int(time.time())
        await self._missed()
        stop = threading.Event()
        loop = asyncio.get_running_loop()

        def on_death(node_id: str, exit_code: int, at: int) -> None:
            future = asyncio.run_coroutine_threadsafe(self.record(node_id, exit_code, at), loop)
            future.result()

        watcher = asyncio.ensure_future(
            asyncio.to_thread(self.provider.lab.watch_deaths, on_death, stop, since)
        )
        stopped = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({watcher, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.set()
            stopped.cancel()
        await watcher  # re-raises a failed stream (the supervisor restarts the service)
