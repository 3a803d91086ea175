"""The nodes context's job workers.

`node_check` logs in to the node (pinning its host key at first contact) and
records its readiness; `node_provision` runs the node playbook;
`node_decommission` removes a lab node's container and destroys the node's key.
Lab nodes' machines (`docker`): `node_create` (queued by registration) makes
the container from the node image (limits, key authorized), then — once its sshd
answers — checks it; `node_start` (new ports, then a check); `node_stop`;
`docker_reconcile` (every 5 minutes) reports orphaned containers. Workers are
built with the machine providers and never touch the database or the vault.
"""

from __future__ import annotations

import asyncio
from typing import Any

import docker.errors

import pressluft.contexts.nodes.failures  # noqa: F401 - registers the codes raised here
from pressluft.contexts.nodes.events import (
    NodeChecked,
    NodeContainerCreated,
    NodeContainerRemoved,
    NodeContainerStarted,
    NodeContainerStopped,
    NodeHostKeyPinned,
    NodePorts,
    NodeProvisioned,
    NodeProvisioningStarted,
)
from pressluft.contexts.nodes.loaders import NODE_ACCESS, NODE_MACHINE, NodeMachine
from pressluft.contexts.nodes.machines import record_orphans
from pressluft.contexts.nodes.probes import (
    classified,
    machine_call,
    port_address,
    run_node_playbook,
    wait_for_ssh,
)
from pressluft.contexts.nodes.records import record_check, record_decommission
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort
from pressluft.runners.docker import ContainerState
from pressluft.runners.providers import (
    DockerProvider,
    Endpoint,
    MachineProvider,
    ProviderNotConfigured,
    Providers,
    Resources,
)
from pressluft.runners.ssh import AuthFailed, HostKeyMismatch, SSHQueryError, Unreachable, probe

__all__ = [
    "DockerReconcile",
    "NodeCheck",
    "NodeCreate",
    "NodeDecommission",
    "NodeProvision",
    "NodeStart",
    "NodeStop",
    "check_node",
    "node_workers",
]

#: Readiness checks are quick (one SSH round trip, 10 s deadline); retried 1/5/15 min.
CHECK_TIMEOUT_SECONDS = 60
#: The playbook of `node_provision` (the only one it may run).
PROVISION_PLAYBOOK = "node-provision.yml"
PROVISION_TIMEOUT_SECONDS = 1800


def _job_node(ctx: WorkerPort) -> str:
    if ctx.node_id is None:
        raise JobFailure("HANDLER_ERROR", f"a {ctx.job_type} job needs a node")
    return ctx.node_id


async def check_node(ctx: WorkerPort) -> bool:
    """The readiness check of the job's node: log in with its key (pinning the host
    key at first contact), record `node.checked`; raises JobFailure when it cannot
    log in. Returns whether the node is ready."""
    node_id = _job_node(ctx)
    access = await ctx.load(NODE_ACCESS, node_id)
    if access is None:
        ctx.log("the node is decommissioned: nothing to check")
        return False
    address = await port_address(ctx, access)
    ctx.log(f"connecting to {address.user}@{address.host}:{address.port}")
    stream = f"node:{node_id}"
    expected = access.host_key_expected
    try:
        found = await probe(address)
        if address.host_key is None and expected not in (None, found.fingerprint):
            raise HostKeyMismatch(
                f"the node presented host key {found.fingerprint}, not the expected"
                f" {expected}: nothing was pinned",
                found.fingerprint,
            )
    except SSHQueryError as exc:
        failure: SSHQueryError = exc
        ctx.log(f"{failure.reason}: {failure}", "stderr")
        offered = failure.offered if isinstance(failure, HostKeyMismatch) else None
        # Reachable means logged in: a refused key or a foreign host key is not.
        event = NodeChecked(
            node_id=node_id,
            reachable=False,
            ready=False,
            reason_codes=[failure.reason],
            offered_fingerprint=offered,
        )
        await ctx.record(stream, [event])
        code = {
            HostKeyMismatch: "HOST_KEY_MISMATCH",
            AuthFailed: "NODE_AUTH_FAILED",
            Unreachable: "NODE_UNREACHABLE",
        }.get(type(failure), "NODE_UNREACHABLE")
        raise JobFailure(code, str(failure)) from exc
    first_contact = address.host_key is None
    if first_contact:
        ctx.log(f"first contact: pinned host key {found.fingerprint}")
    else:
        ctx.log(f"host key verified: {found.fingerprint}")
    pin = (
        NodeHostKeyPinned(node_id=node_id, host_key=found.host_key, fingerprint=found.fingerprint)
        if first_contact
        else None
    )
    checked = NodeChecked(
        node_id=node_id, reachable=True, ready=found.ready, reason_codes=found.reason_codes
    )
    await ctx.command(record_check(node_id, [checked], pin))
    ctx.log(f"operating system: {found.os}")
    if found.os_problem is not None:
        ctx.log(f"os_unsupported: {found.os_problem}", "stderr")
    if found.ready:
        ctx.log("ready")
    else:
        ctx.log(f"not ready: {', '.join(found.reason_codes)}")
    return found.ready


class NodeCheck(JobWorker[NoArgs]):
    """Log in to the node (pinning its host key at first contact) and record readiness."""

    kind = "node_check"
    args = NoArgs
    #: Readiness checks are quick (one SSH round trip, 10 s deadline).
    timeout_seconds = CHECK_TIMEOUT_SECONDS
    #: It reads the node and changes nothing there: it shares the node (beside site
    #: jobs, not counted in their cap); one at a time per node — a second request
    #: answers the active check.
    node_lock = "shared"
    unique = True

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        await check_node(ctx)


class NodeDecommission(JobWorker[NoArgs]):
    """Remove a lab node's container, record the node decommissioned, destroy its key."""

    kind = "node_decommission"
    args = NoArgs
    timeout_seconds = 600

    def __init__(self, providers: Providers) -> None:
        self.providers = providers

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id = _job_node(ctx)
        node = await ctx.load(NODE_MACHINE, node_id)
        removed: list[NodeContainerRemoved] = []
        if node is not None and node.provider != "ssh" and node.container_state != "removed":
            try:
                machines = self.providers.machines(node.provider)
            except ProviderNotConfigured as exc:
                raise JobFailure("PROVIDER_UNAVAILABLE", str(exc)) from exc
            assert machines is not None
            try:
                gone = await asyncio.to_thread(machines.destroy, node_id)
            except (docker.errors.DockerException, OSError) as exc:
                raise JobFailure("DOCKER_ERROR", f"the Docker engine failed: {exc}") from exc
            ctx.log("container removed" if gone else "no container to remove")
            removed.append(NodeContainerRemoved(node_id=node_id, container_id=node.container_id))
        if await ctx.command(record_decommission(node_id, removed)):
            ctx.log("decommissioned; the node's private key is destroyed")
        else:
            ctx.log("already decommissioned")


class NodeProvision(JobWorker[NoArgs]):
    """Run the node playbook. Holds its node as `provisioning` (recorded when an
    attempt starts): a job that ends failed or cancelled leaves it `failed`."""

    kind = "node_provision"
    args = NoArgs
    timeout_seconds = PROVISION_TIMEOUT_SECONDS
    timeout_code = "ANSIBLE_TIMEOUT"
    #: Alone on its node (the default lock); one at a time per node.
    unique = True

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id = _job_node(ctx)
        stream = f"node:{node_id}"
        await ctx.record(stream, [NodeProvisioningStarted(node_id=node_id, job_id=ctx.job_id)])
        summary, revision = await run_node_playbook(
            ctx, PROVISION_PLAYBOOK, allowlist=frozenset({PROVISION_PLAYBOOK})
        )
        provisioned = NodeProvisioned(
            node_id=node_id, job_id=ctx.job_id, profile_revision=revision, changed=summary.changed
        )
        await ctx.record(stream, [provisioned])
        ctx.log(f"provisioned: profile {revision}, {summary.changed} change(s)", "system")


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
            raise classified(exc) from exc
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
            resources = Resources(
                int(limits.memory_mb), float(limits.cpus), int(limits.pids), limits.init
            )
            ctx.log(
                f"creating the container from {machines.image}: {resources.memory_mb} MB,"
                f" {resources.cpus:g} CPUs, {resources.pids} pids, init {resources.init}"
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
        await wait_for_ssh(ctx, endpoint)
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
        await wait_for_ssh(ctx, endpoint)
        await check_node(ctx)


class NodeStop(_MachineWorker):
    """Stop the container."""

    kind = "node_stop"

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id, machines, _ = await self.machine(ctx)
        await machine_call(machines.stop, node_id)
        await ctx.record(f"node:{node_id}", [NodeContainerStopped(node_id=node_id)])
        ctx.log("stopped")


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


def node_workers(providers: Providers) -> list[JobWorker[Any]]:
    """Every worker of the context; `docker_reconcile` when the docker provider is
    configured."""
    workers: list[JobWorker[Any]] = [
        NodeCheck(),
        NodeProvision(),
        NodeDecommission(providers),
        NodeCreate(providers),
        NodeStart(providers),
        NodeStop(providers),
    ]
    if providers.docker is not None:
        workers.append(DockerReconcile(providers.docker))
    return workers
