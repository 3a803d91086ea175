"""The machines of lab nodes (`docker` provider): create, start and stop them as
jobs; watch the engine for deaths; report orphaned containers.

- `node_create` (queued by registration): the container from the node image with
  the requested limits and the node's key authorized → `node.container_created`
  (its 127.0.0.1 ports), then — once its sshd answers — the readiness check,
  which pins the host key.
- `node_start` → `node.container_started` (new ports) and a check;
  `node_stop` → `node.container_stopped`.
- The `docker-events` service turns the engine's `die` events of managed
  containers into `node.container_died` (exit code); at start it first records
  the deaths it missed while the daemon was down. A stop or removal that a job
  asked for (`node_stop`, `node_decommission`) is no death: the lab marks the
  container before it asks the engine, and the watcher passes its `die` over.
- `docker_reconcile` (every 5 minutes): a container labelled as Pressluft's whose
  node is not a live docker node with that container is reported once as
  `node.orphan_detected`; nothing is deleted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import docker.errors
import msgspec

from pressluft.clock import Clock
from pressluft.db import Database, WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.events.types import (
    NodeContainerCreated,
    NodeContainerDied,
    NodeContainerStarted,
    NodeContainerStopped,
    NodeOrphanDetected,
    NodePorts,
)
from pressluft.jobs.context import JobContext
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.queue import require_lease
from pressluft.jobs.registry import JobRegistry, JobType
from pressluft.jobs.scheduler import Schedule, Scheduler
from pressluft.logs import get_logger
from pressluft.nodes.docker import ContainerState, LimitNotEnforced
from pressluft.nodes.providers import (
    DockerProvider,
    Endpoint,
    ImageMissing,
    MachineProvider,
    ProviderNotConfigured,
    Providers,
    Resources,
    resolve_docker_host,
)
from pressluft.nodes.ssh import wait_for_banner
from pressluft.services.nodes import check_node
from pressluft.supervisor import Service
from pressluft.vault import Vault

__all__ = [
    "DeathWatcher",
    "Providers",
    "configured_providers",
    "machine_call",
    "register_machine_jobs",
]

log = get_logger("pressluft.nodes")

#: How long a new or restarted machine may take until its sshd answers.
SSH_UP_SECONDS = 120
RECONCILE_EVERY_SECONDS = 300
WATCHER_ACTOR = "system:docker-events"


def configured_providers(docker_host: str, node_image: str) -> Providers:
    """The providers of the `docker_host` and `node_image` settings."""
    return Providers(resolve_docker_host(docker_host), node_image or None)


def _ports(endpoint: Endpoint) -> NodePorts:
    return NodePorts(
        ssh=endpoint.ssh_port,
        http=endpoint.http_port,
        https=endpoint.https_port,
        web_fixed=endpoint.web_ports_fixed,
    )


def _warn_unfixed(ctx: JobContext, endpoint: Endpoint) -> None:
    if not endpoint.web_ports_fixed:
        ctx.log(
            "WARNING: this container was created before lab nodes kept their web ports:"
            f" its HTTP port changes at every start (now :{endpoint.http_port}), so sites'"
            " URLs made before point elsewhere and no new site or environment is put on it;"
            " decommission the node and create it again"
        )


def _job_meta(ctx: JobContext) -> Meta:
    return Meta(actor=f"system:job:{ctx.claim.job_id}", correlation_id=ctx.claim.correlation_id)


def _classified(exc: BaseException) -> JobFailure:
    if isinstance(exc, ProviderNotConfigured):
        return JobFailure("PROVIDER_UNAVAILABLE", str(exc))
    if isinstance(exc, ImageMissing):
        return JobFailure("NODE_IMAGE_MISSING", str(exc))
    if isinstance(exc, LimitNotEnforced):
        return JobFailure("LIMIT_NOT_ENFORCED", str(exc))
    if isinstance(exc, LookupError):  # the node's container is gone (removed outside)
        return JobFailure(
            "CONTAINER_MISSING", f"{exc}: decommission the node and register a new one"
        )
    return JobFailure("DOCKER_ERROR", f"the Docker engine failed: {exc}")


async def machine_call(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking provider call in a thread, its failures classified."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (ProviderNotConfigured, ImageMissing, LimitNotEnforced, docker.errors.DockerException,
            LookupError, RuntimeError, OSError) as exc:  # fmt: skip
        raise _classified(exc) from exc


async def _until_ssh(ctx: JobContext, endpoint: Endpoint) -> None:
    ctx.log(f"waiting for sshd on {endpoint.host}:{endpoint.ssh_port}")
    if not await wait_for_banner(endpoint.host, endpoint.ssh_port, SSH_UP_SECONDS):
        raise JobFailure(
            "NODE_UNREACHABLE", f"no SSH banner on port {endpoint.ssh_port} in {SSH_UP_SECONDS} s"
        )


def register_machine_jobs(
    registry: JobRegistry,
    scheduler: Scheduler,
    db: Database,
    vault: Callable[[], Vault],
    providers: Providers,
) -> None:
    """`node_create`, `node_start`, `node_stop`; `docker_reconcile` when the docker
    provider is configured."""

    async def node_of(ctx: JobContext) -> tuple[str, MachineProvider, tuple[Any, ...]]:
        node_id = ctx.claim.node_id
        assert node_id is not None
        row = await db.read(
            lambda conn: conn.execute(
                "SELECT provider, name, public_key, resources_json, container_id, status"
                " FROM nodes WHERE id = ?",
                (node_id,),
            ).fetchone()
        )
        if row is None or row[5] == "decommissioned":
            raise JobFailure("NODE_NOT_CHECKED", "the node is decommissioned")
        try:
            machines = providers.machines(str(row[0]))
        except ProviderNotConfigured as exc:
            raise _classified(exc) from exc
        if machines is None:
            raise JobFailure("HANDLER_ERROR", "an ssh node has no machine to manage")
        return node_id, machines, row

    async def record(ctx: JobContext, event: Any) -> None:
        claim = ctx.claim

        def command(tx: WriteTx) -> None:
            require_lease(tx.conn, claim.job_id, claim.lease_token, claim.attempt)
            append(tx, f"node:{claim.node_id}", None, [event], _job_meta(ctx))

        await db.write(command)

    async def node_create(ctx: JobContext) -> None:
        node_id, machines, row = await node_of(ctx)
        _, name, public_key, resources_json, container_id, _ = row
        if container_id is None:
            limits = msgspec.json.decode(str(resources_json), type=dict[str, Any])
            resources = Resources(
                int(limits["memory_mb"]), float(limits["cpus"]), int(limits["pids"])
            )
            ctx.log(
                f"creating the container from {machines.image}: {resources.memory_mb} MB,"
                f" {resources.cpus:g} CPUs, {resources.pids} pids"
            )
            # A previous attempt may have created it before failing: start over.
            await machine_call(machines.destroy, node_id)
            endpoint: Endpoint = await machine_call(
                machines.create, node_id, str(name), str(public_key), resources
            )
            ctx.log(
                f"container {endpoint.machine_id[:12]}: ssh 127.0.0.1:{endpoint.ssh_port},"
                f" http :{endpoint.http_port}, https :{endpoint.https_port}"
            )
            await record(
                ctx,
                NodeContainerCreated(
                    node_id=node_id,
                    container_id=endpoint.machine_id,
                    image=machines.image,
                    ports=_ports(endpoint),
                ),
            )
        else:  # a retried attempt after the container was recorded: (re)start it
            endpoint = await machine_call(machines.start, node_id)
            _warn_unfixed(ctx, endpoint)
            await record(ctx, NodeContainerStarted(node_id=node_id, ports=_ports(endpoint)))
        await _until_ssh(ctx, endpoint)
        await check_node(ctx, db, vault())

    async def node_start(ctx: JobContext) -> None:
        node_id, machines, _ = await node_of(ctx)
        endpoint: Endpoint = await machine_call(machines.start, node_id)
        ctx.log(f"started: ssh 127.0.0.1:{endpoint.ssh_port}, http :{endpoint.http_port}")
        _warn_unfixed(ctx, endpoint)
        await record(ctx, NodeContainerStarted(node_id=node_id, ports=_ports(endpoint)))
        await _until_ssh(ctx, endpoint)
        await check_node(ctx, db, vault())

    async def node_stop(ctx: JobContext) -> None:
        node_id, machines, _ = await node_of(ctx)
        await machine_call(machines.stop, node_id)
        await record(ctx, NodeContainerStopped(node_id=node_id))
        ctx.log("stopped")

    registry.register(JobType("node_create", node_create, timeout_seconds=300))
    registry.register(JobType("node_start", node_start, timeout_seconds=300))
    registry.register(JobType("node_stop", node_stop, timeout_seconds=120))

    lab = providers.docker
    if lab is None:
        return

    async def docker_reconcile(ctx: JobContext) -> None:
        states: list[ContainerState] = await machine_call(lambda: lab.lab.managed())
        claim = ctx.claim

        def command(tx: WriteTx) -> list[NodeOrphanDetected]:
            require_lease(tx.conn, claim.job_id, claim.lease_token, claim.attempt)
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
                append(tx, stream, NO_STREAM, [event], _job_meta(ctx))
                found.append(event)
            return found

        found = await db.write(command)
        ctx.log(f"{len(states)} managed container(s); {len(found)} new orphan(s)")
        for event in found:
            ctx.log(
                f"orphan: container {event.container_id[:12]} ({event.container_status}),"
                f" labelled for node {event.labelled_node_id} — not removed; remove it with"
                f" `docker rm -f {event.container_id[:12]}` if it is not needed"
            )

    registry.register(JobType("docker_reconcile", docker_reconcile, timeout_seconds=120))
    scheduler.add(
        Schedule(
            job_type="docker_reconcile",
            every_seconds=RECONCILE_EVERY_SECONDS,
            first_after_seconds=60,
            max_attempts=1,
            timeout_seconds=120,
            # Reads the Docker engine, on no node: it locks nothing.
            node_lock="shared",
        )
    )


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
        states: list[ContainerState] = await asyncio.to_thread(self.provider.lab.managed)
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
