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

from pressluft.clock import Clock
from pressluft.contexts.nodes.events import (
    NodeContainerCreated,
    NodeContainerDied,
    NodeContainerStarted,
    NodeContainerStopped,
    NodeOrphanDetected,
    NodePorts,
)
from pressluft.contexts.nodes.service import NODE_MACHINE, NodeMachine, check_node
from pressluft.db import Database, WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.scheduler import Schedule
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort
from pressluft.logs import get_logger
from pressluft.runners.docker import ContainerState, LimitNotEnforced
from pressluft.runners.providers import (
    DockerProvider,
    Endpoint,
    ImageMissing,
    MachineProvider,
    ProviderNotConfigured,
    Providers,
    Resources,
    resolve_docker_host,
)
from pressluft.runners.ssh import wait_for_banner
from pressluft.supervisor import Service

__all__ = [
    "DeathWatcher",
    "DockerReconcile",
    "NodeCreate",
    "NodeStart",
    "NodeStop",
    "Providers",
    "configured_providers",
    "machine_call",
    "machine_schedules",
    "machine_workers",
]

log = get_logger("pressluft.runners")

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


def _warn_unfixed(ctx: WorkerPort, endpoint: Endpoint) -> None:
    if not endpoint.web_ports_fixed:
        ctx.log(
            "WARNING: this container was created before lab nodes kept their web ports:"
            f" its HTTP port changes at every start (now :{endpoint.http_port}), so sites'"
            " URLs made before point elsewhere and no new site or environment is put on it;"
            " decommission the node and create it again"
        )


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


async def _until_ssh(ctx: WorkerPort, endpoint: Endpoint) -> None:
    ctx.log(f"waiting for sshd on {endpoint.host}:{endpoint.ssh_port}")
    if not await wait_for_banner(endpoint.host, endpoint.ssh_port, SSH_UP_SECONDS):
        raise JobFailure(
            "NODE_UNREACHABLE", f"no SSH banner on port {endpoint.ssh_port} in {SSH_UP_SECONDS} s"
        )


class _MachineWorker(JobWorker[NoArgs]):
    """A job on a lab node's machine (its provider's)."""

    args = NoArgs
    timeout_seconds = 300

    def __init__(self, providers: Providers) -> None:
        self.providers = providers

    async def machine(self, ctx: WorkerPort) -> tuple[str, MachineProvider, NodeMachine]:
        node_id = ctx.node_id
        assert node_id is not None
        node = await ctx.load(NODE_MACHINE, node_id)
        if node is None or node.status == "decommissioned":
            raise JobFailure("NODE_NOT_CHECKED", "the node is decommissioned")
        try:
            machines = self.providers.machines(node.provider)
        except ProviderNotConfigured as exc:
            raise _classified(exc) from exc
        if machines is None:
            raise JobFailure("HANDLER_ERROR", "an ssh node has no machine to manage")
        return node_id, machines, node


class NodeCreate(_MachineWorker):
    """The container from the node image (limits, key authorized), then — once its
    sshd answers — the readiness check."""

    kind = "node_create"

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id, machines, node = await self.machine(ctx)
        stream = f"node:{node_id}"
        if node.container_id is None:
            limits = node.resources
            assert limits is not None
            resources = Resources(int(limits.memory_mb), float(limits.cpus), int(limits.pids))
            ctx.log(
                f"creating the container from {machines.image}: {resources.memory_mb} MB,"
                f" {resources.cpus:g} CPUs, {resources.pids} pids"
            )
            # A previous attempt may have created it before failing: start over.
            await machine_call(machines.destroy, node_id)
            endpoint: Endpoint = await machine_call(
                machines.create, node_id, node.name, node.public_key, resources
            )
            ctx.log(
                f"container {endpoint.machine_id[:12]}: ssh 127.0.0.1:{endpoint.ssh_port},"
                f" http :{endpoint.http_port}, https :{endpoint.https_port}"
            )
            created = NodeContainerCreated(
                node_id=node_id,
                container_id=endpoint.machine_id,
                image=machines.image,
                ports=_ports(endpoint),
            )
            await ctx.record(stream, [created])
        else:  # a retried attempt after the container was recorded: (re)start it
            endpoint = await machine_call(machines.start, node_id)
            _warn_unfixed(ctx, endpoint)
            await ctx.record(
                stream, [NodeContainerStarted(node_id=node_id, ports=_ports(endpoint))]
            )
        await _until_ssh(ctx, endpoint)
        await check_node(ctx)


class NodeStart(_MachineWorker):
    """Start the container (new ports), then check the node."""

    kind = "node_start"

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id, machines, _ = await self.machine(ctx)
        endpoint: Endpoint = await machine_call(machines.start, node_id)
        ctx.log(f"started: ssh 127.0.0.1:{endpoint.ssh_port}, http :{endpoint.http_port}")
        _warn_unfixed(ctx, endpoint)
        started = NodeContainerStarted(node_id=node_id, ports=_ports(endpoint))
        await ctx.record(f"node:{node_id}", [started])
        await _until_ssh(ctx, endpoint)
        await check_node(ctx)


class NodeStop(_MachineWorker):
    """Stop the container."""

    kind = "node_stop"

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id, machines, _ = await self.machine(ctx)
        await machine_call(machines.stop, node_id)
        await ctx.record(f"node:{node_id}", [NodeContainerStopped(node_id=node_id)])
        ctx.log("stopped")


def record_orphans(
    states: list[ContainerState],
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


class DockerReconcile(JobWorker[NoArgs]):
    """Report containers labelled as Pressluft's that no live node owns (once each)."""

    kind = "docker_reconcile"
    args = NoArgs
    timeout_seconds = 120
    max_attempts = 1

    def __init__(self, lab: DockerProvider) -> None:
        self.lab = lab

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        states: list[ContainerState] = await machine_call(self.lab.lab.managed)
        found = await ctx.command(record_orphans(states))
        ctx.log(f"{len(states)} managed container(s); {len(found)} new orphan(s)")
        for event in found:
            ctx.log(
                f"orphan: container {event.container_id[:12]} ({event.container_status}),"
                f" labelled for node {event.labelled_node_id} — not removed; remove it with"
                f" `docker rm -f {event.container_id[:12]}` if it is not needed"
            )


def machine_workers(providers: Providers) -> list[JobWorker[Any]]:
    """`node_create`, `node_start`, `node_stop`; `docker_reconcile` when the docker
    provider is configured."""
    workers: list[JobWorker[Any]] = [
        NodeCreate(providers),
        NodeStart(providers),
        NodeStop(providers),
    ]
    if providers.docker is not None:
        workers.append(DockerReconcile(providers.docker))
    return workers


def machine_schedules(providers: Providers) -> list[Schedule]:
    """`docker_reconcile` every 5 minutes when the docker provider is configured."""
    if providers.docker is None:
        return []
    return [
        Schedule(
            job_type=DockerReconcile.kind,
            every_seconds=RECONCILE_EVERY_SECONDS,
            first_after_seconds=60,
            # Reads the Docker engine, on no node: it locks nothing.
            node_lock="shared",
            max_attempts=DockerReconcile.max_attempts,
            timeout_seconds=DockerReconcile.timeout_seconds,
        )
    ]


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
