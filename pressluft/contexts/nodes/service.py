"""Nodes: registration, readiness checks, host-key pinning, provisioning,
decommissioning.

Every mutation is a job under the node's lock (`node_id` on the job): the API
records what was asked (events) and enqueues the job in one transaction; the
workers (`NodeCheck`, `NodeProvision`, `NodeDecommission`) do the work and
record what they found through their port, fenced by their lease. Providers: `ssh` (bring your own
server) and `docker` (lab nodes: their container's jobs are in
`services/machines.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import docker.errors
import msgspec

from pressluft.contexts.nodes.events import (
    NodeChecked,
    NodeContainerRemoved,
    NodeDecommissioned,
    NodeHostKeyPinned,
    NodeHostKeyUnpinned,
    NodePorts,
    NodeProvisioned,
    NodeProvisioningStarted,
    NodeRegistered,
    NodeResources,
)
from pressluft.db import Database, WriteTx
from pressluft.errors import BadGateway, BadRequest, Conflict, NotFound
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.failures import JobCancelledError, JobFailure
from pressluft.jobs.process import RUN_MARKER, kill_marked
from pressluft.jobs.workers import JobWorker, Loader, NoArgs, WorkerPort, enqueue_job
from pressluft.runners.ansible import (
    ANSIBLE_DIR,
    PlaybookRun,
    PlaybookSummary,
    classify,
    profile_revision,
    run_playbook,
)
from pressluft.runners.keys import KeyPair, authorize_command, generate_key_pair
from pressluft.runners.providers import ProviderNotConfigured, Providers
from pressluft.runners.ssh import (
    AuthFailed,
    Facts,
    HostKeyMismatch,
    NodeAddress,
    SSHQueryError,
    Unreachable,
    facts,
    probe,
)
from pressluft.vault import Vault

__all__ = [
    "NODE_ACCESS",
    "NODE_MACHINE",
    "NodeAccepted",
    "NodeCheck",
    "NodeDecommission",
    "NodeFacts",
    "NodePage",
    "NodeProvision",
    "NodeQuery",
    "NodeView",
    "Readiness",
    "RegisterDockerNode",
    "RegisterNodeRequest",
    "RegisterSshNode",
    "RepinRequest",
    "check_command",
    "check_node",
    "decommission_command",
    "get_node",
    "list_nodes",
    "node_actions",
    "node_address",
    "node_facts",
    "node_workers",
    "provision_command",
    "register_command",
    "repin_command",
    "run_node_playbook",
    "start_command",
    "stop_command",
]

NodeStatus = Literal["pending", "provisioning", "active", "unreachable", "failed", "decommissioned"]
STATUSES: tuple[str, ...] = (
    "pending",
    "provisioning",
    "active",
    "unreachable",
    "failed",
    "decommissioned",
)
#: Readiness checks are quick (one SSH round trip, 10 s deadline); retried 1/5/15 min.
CHECK_TIMEOUT_SECONDS = 60
#: The playbook of `node_provision` (the only one it may run).
PROVISION_PLAYBOOK = "node-provision.yml"
PROVISION_TIMEOUT_SECONDS = 1800


class NodeNotFound(NotFound):
    pass


class NodeExists(Conflict):
    code = "node_exists"


class NodeGone(Conflict):
    """The node is decommissioned: nothing more can be done with it."""

    code = "node_decommissioned"


class NodeHostsSites(Conflict):
    """The node still hosts environments; decommissioning would destroy them."""

    code = "node_has_sites"


class ConfirmationRequired(BadRequest):
    code = "confirmation_required"


class NodeNotReady(Conflict):
    """The node cannot be queried or worked on yet (e.g. no pinned host key)."""

    code = "node_not_ready"


class NodeUnreachable(BadGateway):
    code = "node_unreachable"


class ProviderUnavailable(Conflict):
    """This daemon cannot run machines of the provider asked for."""

    code = "provider_unavailable"


class ProviderUnsupported(Conflict):
    """The node's provider has no such operation (e.g. starting an `ssh` node)."""

    code = "provider_unsupported"


class NodeFacts(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    os: str
    kernel: str
    arch: str
    cpus: int
    memory_mb: int
    memory_available_mb: int
    disk_gb: float
    disk_available_gb: float
    uptime_seconds: int
    services: dict[str, str]
    collected_at: str


# -- requests and views ---------------------------------------------------------------


class RegisterSshNode(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="provider",
    tag="ssh",
):
    """An existing server (bring your own)."""

    name: str
    host: str
    ssh_port: int = 22
    ssh_user: str = "root"


class RegisterDockerNode(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="provider",
    tag="docker",
):
    """A lab node: a container from the node image, with these limits."""

    name: str
    memory_mb: int = 1024
    cpus: float = 1.0
    pids: int = 1024


RegisterNodeRequest = RegisterSshNode | RegisterDockerNode

#: Bounds of a lab node's limits (the contract repeats them).
MEMORY_MB = (256, 65536)
CPUS = (0.25, 64.0)
PIDS = (128, 65536)


class RepinRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Pin only a key with this fingerprint (what the server's console shows).
    expected_fingerprint: str | None = None


class NodeAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    node_id: str


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    is_ready: bool
    reason_codes: list[str]
    guidance: list[str]
    checked_at: str | None


class ContainerView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    state: str
    exit_code: int | None


class NodeView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    provider: str
    host: str
    ssh_port: int
    ssh_user: str
    public_ip: str | None
    status: NodeStatus
    public_key: str | None
    authorize_command: str | None
    host_key_fingerprint: str | None
    readiness: Readiness
    last_seen_at: str | None
    profile_revision: str | None
    #: `docker` nodes: their limits, container and 127.0.0.1 ports (else null).
    resources: NodeResources | None
    container: ContainerView | None
    ports: NodePorts | None
    created_at: str
    updated_at: str
    decommissioned_at: str | None
    state_version: int
    #: What may be done to it now (`node_actions`).
    actions: list[str]


class NodePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[NodeView]
    next_before: int | None
    has_more: bool


class NodeQuery(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    provider: str | None = None
    before: int | None = None
    limit: int = 50


_GUIDANCE = {
    "not_checked": "A readiness check is queued; it runs as soon as a worker is free.",
    "node_unreachable": (
        "Pressluft could not reach {host}:{port}. Check that the server is up and that the"
        " port is open to the control plane, then check again."
    ),
    "ssh_auth_failed": (
        "The server refused Pressluft's key. Run the authorize command on the server as"
        " {user}, then check again."
    ),
    "host_key_mismatch": (
        "The server presented a host key other than the pinned one. If it was re-installed,"
        " re-pin its key (POST /api/nodes/{id}/host-key/repin); otherwise investigate first."
    ),
    "sudo_unavailable": "User {user} needs passwordless sudo (or register the node as root).",
    "runtime_missing": "Install python3 on the server (Ansible needs it), then check again.",
    "node_status_not_active": "The node is decommissioned.",
    "container_stopped": (
        "The lab node's container is not running. Start it (POST /api/nodes/{id}/start);"
        " its ports change, and the start checks it again."
    ),
}

_COLUMNS = (
    "id, name, provider, host, ssh_port, ssh_user, public_ip, status, public_key,"
    " host_key_fingerprint, ready, reason_codes_json, checked_at, last_seen_at,"
    " profile_revision, resources_json, container_id, container_state, container_exit_code,"
    " ports_json, created_at, updated_at, decommissioned_at, state_version, rowid"
)


def node_actions(
    status: str,
    provider: str,
    ready: bool,
    host_key_fingerprint: str | None,
    container: ContainerView | None,
) -> list[str]:
    """The actions a node offers now (the contract's `NodeAction`, SIT-17): the
    server's rules, so pages render buttons from them. The commands still check
    everything (e.g. decommissioning a node that hosts environments is refused)."""
    if status == "decommissioned":
        return []
    actions = ["check", "repin"]
    if ready and host_key_fingerprint is not None:
        actions.append("provision")
    if provider == "docker" and container is not None:
        actions.append("stop" if container.state == "running" else "start")
    actions.append("decommission")
    return actions


def _view(row: tuple[object, ...]) -> NodeView:
    (node_id, name, provider, host, port, user, public_ip, status, public_key, fingerprint,
     ready, reasons_json, checked_at, last_seen, revision, resources, container_id,
     container_state, exit_code, ports, created, updated, gone, version, _) = row  # fmt: skip
    reasons: list[str] = msgspec.json.decode(str(reasons_json))
    values = {"host": host, "port": port, "user": user, "id": node_id}
    live = status != "decommissioned"
    container = (
        None
        if container_id is None
        else ContainerView(
            id=str(container_id),
            state=str(container_state),
            exit_code=None if exit_code is None else int(exit_code),  # type: ignore[call-overload]
        )
    )
    fingerprint = None if fingerprint is None else str(fingerprint)
    return NodeView(
        id=str(node_id),
        name=str(name),
        provider=str(provider),
        host=str(host),
        ssh_port=int(port),  # type: ignore[call-overload]
        ssh_user=str(user),
        public_ip=None if public_ip is None else str(public_ip),
        status=status,  # type: ignore[arg-type]
        public_key=str(public_key) if live else None,
        authorize_command=authorize_command(str(public_key)) if live else None,
        host_key_fingerprint=fingerprint,
        readiness=Readiness(
            is_ready=bool(ready),
            reason_codes=reasons,
            guidance=[_GUIDANCE.get(r, r).format(**values) for r in reasons],
            checked_at=None if checked_at is None else str(checked_at),
        ),
        last_seen_at=None if last_seen is None else str(last_seen),
        profile_revision=None if revision is None else str(revision),
        resources=None
        if resources is None
        else msgspec.json.decode(str(resources), type=NodeResources),
        container=container,
        ports=None if ports is None else msgspec.json.decode(str(ports), type=NodePorts),
        created_at=str(created),
        updated_at=str(updated),
        decommissioned_at=None if gone is None else str(gone),
        state_version=int(version),  # type: ignore[call-overload]
        actions=node_actions(str(status), str(provider), bool(ready), fingerprint, container),
    )


# -- queries ----------------------------------------------------------------------------


def list_nodes(conn: sqlite3.Connection, query: NodeQuery) -> NodePage:
    where: list[str] = []
    params: list[object] = []
    for column in ("status", "provider"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.before is not None:
        where.append("rowid < ?")
        params.append(query.before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM nodes {clause} ORDER BY rowid DESC LIMIT ?",
        [*params, query.limit + 1],
    ).fetchall()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    return NodePage(
        items=[_view(r) for r in rows],
        next_before=int(rows[-1][-1]) if has_more else None,
        has_more=has_more,
    )


def get_node(conn: sqlite3.Connection, node_id: str) -> NodeView:
    if not is_uuid(node_id):
        raise NodeNotFound(f"no node {node_id}")
    row = conn.execute(f"SELECT {_COLUMNS} FROM nodes WHERE id = ?", (node_id,)).fetchone()
    if row is None:
        raise NodeNotFound(f"no node {node_id}")
    return _view(row)


def _live_node(conn: sqlite3.Connection, node_id: str) -> tuple[str, str]:
    """(name, status) of a node that is not decommissioned."""
    if not is_uuid(node_id):
        raise NodeNotFound(f"no node {node_id}")
    row = conn.execute("SELECT name, status FROM nodes WHERE id = ?", (node_id,)).fetchone()
    if row is None:
        raise NodeNotFound(f"no node {node_id}")
    if row[1] == "decommissioned":
        raise NodeGone(
            f"node {row[0]} is decommissioned",
            details={"hint": "register the server again as a new node"},
        )
    return str(row[0]), str(row[1])


# -- commands ---------------------------------------------------------------------------


_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _check_registration(request: RegisterNodeRequest) -> None:
    checks = [("name", _NAME, request.name, "1-63 lowercase letters, digits and dashes")]
    if isinstance(request, RegisterSshNode):
        checks += [
            ("host", _HOST, request.host, "a hostname or IPv4 address"),
            ("ssh_user", _USER, request.ssh_user, "a POSIX user name"),
        ]
    errors = [
        {"field": field, "message": message, "in": "body"}
        for field, pattern, value, message in checks
        if not pattern.fullmatch(value)
    ]
    if isinstance(request, RegisterSshNode) and not 1 <= request.ssh_port <= 65535:
        errors.append({"field": "ssh_port", "message": "must be between 1 and 65535", "in": "body"})
    if isinstance(request, RegisterDockerNode):
        for field, value, (low, high) in (
            ("memory_mb", request.memory_mb, MEMORY_MB),
            ("cpus", request.cpus, CPUS),
            ("pids", request.pids, PIDS),
        ):
            if not low <= value <= high:
                message = f"must be between {low:g} and {high:g}"
                errors.append({"field": field, "message": message, "in": "body"})
    if errors:
        raise BadRequest("invalid node", details={"errors": errors})


def _enqueue_check(tx: WriteTx, node_id: str, meta: Meta) -> str:
    return enqueue_job(tx, NodeCheck, NoArgs(), meta, node_id=node_id)


#: Creating a lab node: the container, its sshd coming up, the first check.
CREATE_TIMEOUT_SECONDS = 300


def _machine_worker(kind: str) -> type[JobWorker[NoArgs]]:
    """A lab node's machine worker (`services/machines.py` imports this module for
    the readiness check, so it is looked up when a command runs)."""
    from pressluft.contexts.nodes import machines

    worker: type[JobWorker[NoArgs]] = {
        "node_create": machines.NodeCreate,
        "node_start": machines.NodeStart,
        "node_stop": machines.NodeStop,
    }[kind]
    return worker


def register_command(
    request: RegisterNodeRequest, vault: Vault, providers: Providers, meta: Meta
) -> Callable[[WriteTx], NodeAccepted]:
    """Register a node, seal its new key pair and queue its first job: the
    readiness check (`ssh`), or creating its machine and checking it (`docker`)."""
    _check_registration(request)
    provider: Literal["ssh", "docker"] = "ssh" if isinstance(request, RegisterSshNode) else "docker"
    if not providers.available(provider):
        raise ProviderUnavailable(
            f"this daemon has no {provider} provider",
            details={"hint": "start pressluft with --docker-host (a Docker engine URL)"},
        )
    keys: KeyPair = generate_key_pair(f"pressluft-{request.name}")

    def command(tx: WriteTx) -> NodeAccepted:
        taken = tx.conn.execute(
            "SELECT id FROM nodes WHERE name = ? AND status != 'decommissioned'", (request.name,)
        ).fetchone()
        if taken is not None:
            raise NodeExists(
                f"a node named {request.name} exists",
                details={"node_id": taken[0], "hint": "choose another name"},
            )
        node_id = new_id()
        secret_id = vault.seal(tx.conn, "node_ssh_key", keys.private_pem, tx.now_ts)
        first: type[JobWorker[NoArgs]]
        if isinstance(request, RegisterSshNode):
            where = {"host": request.host, "ssh_port": request.ssh_port}
            user, resources, first = request.ssh_user, None, NodeCheck
        else:
            # Reached on 127.0.0.1 at the port the engine publishes (known once created).
            where = {"host": "127.0.0.1", "ssh_port": 22}
            user = "root"
            resources = NodeResources(
                memory_mb=request.memory_mb, cpus=request.cpus, pids=request.pids
            )
            first = _machine_worker("node_create")
        event = NodeRegistered(
            node_id=node_id,
            name=request.name,
            provider=provider,
            ssh_user=user,
            key_secret_id=secret_id,
            public_key=keys.public_line,
            resources=resources,
            **where,  # type: ignore[arg-type]
        )
        append(tx, f"node:{node_id}", NO_STREAM, [event], meta)
        job_id = enqueue_job(tx, first, NoArgs(), meta, node_id=node_id)
        return NodeAccepted(job_id=job_id, node_id=node_id)

    return command


def check_command(node_id: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    """Queue a readiness check."""

    def command(tx: WriteTx) -> NodeAccepted:
        _live_node(tx.conn, node_id)
        # A check queued or running already is the answer (unique): no new job; one
        # waiting out a retry's backoff is made due now (job.hastened).
        return NodeAccepted(job_id=_enqueue_check(tx, node_id, meta), node_id=node_id)

    return command


_FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def repin_command(
    node_id: str, request: RepinRequest | None, meta: Meta
) -> Callable[[WriteTx], NodeAccepted]:
    """Forget the pinned host key; the queued check pins the key the node presents
    next — only one with `expected_fingerprint`, when given."""
    expected = None if request is None else request.expected_fingerprint
    if expected is not None and not _FINGERPRINT.fullmatch(expected):
        raise BadRequest(
            "invalid re-pin",
            details={
                "errors": [
                    {
                        "field": "expected_fingerprint",
                        "message": "an OpenSSH SHA256 fingerprint (SHA256:…, 43 characters)",
                        "in": "body",
                    }
                ]
            },
        )

    def command(tx: WriteTx) -> NodeAccepted:
        _live_node(tx.conn, node_id)
        (previous,) = tx.conn.execute(
            "SELECT host_key_fingerprint FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()
        event = NodeHostKeyUnpinned(
            node_id=node_id, previous_fingerprint=previous, expected_fingerprint=expected
        )
        append(tx, f"node:{node_id}", None, [event], meta)
        # Not the unique check: this one must run after the unpinning (a check
        # already running may have read the old key), and it re-pins the node's
        # key — a change to what we trust about the node, so it runs alone there.
        job_id = enqueue_job(
            tx, NodeCheck, NoArgs(), meta, node_id=node_id, node_lock="exclusive", unique=False
        )
        return NodeAccepted(job_id=job_id, node_id=node_id)

    return command


def provision_command(node_id: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    """Queue `node_provision` (idempotent: a re-run converges, changing nothing)."""

    def command(tx: WriteTx) -> NodeAccepted:
        _live_node(tx.conn, node_id)
        ready, host_key = tx.conn.execute(
            "SELECT ready, host_key FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()
        if not ready or host_key is None:
            raise NodeNotReady(
                "the node is not ready to be provisioned",
                details={"hint": "see its readiness; authorize the key and check it first"},
            )
        # Alone on the node (it installs packages, restarts services); a provisioning
        # queued or running already is the answer to a second request (unique).
        job_id = enqueue_job(
            tx,
            NodeProvision,
            NoArgs(),
            meta,
            node_id=node_id,
            holds=("node", node_id, "provisioning"),
        )
        return NodeAccepted(job_id=job_id, node_id=node_id)

    return command


def decommission_command(
    node_id: str, confirm: str | None, meta: Meta
) -> Callable[[WriteTx], NodeAccepted]:
    """Queue the decommissioning (`confirm` must repeat the node's name)."""

    def command(tx: WriteTx) -> NodeAccepted:
        name, _ = _live_node(tx.conn, node_id)
        (hosted,) = tx.conn.execute(
            "SELECT count(*) FROM environments WHERE node_id = ? AND status != 'deleted'",
            (node_id,),
        ).fetchone()
        if hosted:
            raise NodeHostsSites(
                f"{name} hosts {hosted} environment(s): decommissioning would destroy them",
                details={"environments": hosted, "hint": "delete its sites first"},
            )
        if confirm != name:
            raise ConfirmationRequired(
                f"decommissioning {name} needs confirmation",
                details={"hint": f"repeat the node's name: ?confirm={name}"},
            )
        job_id = enqueue_job(tx, NodeDecommission, NoArgs(), meta, node_id=node_id)
        return NodeAccepted(job_id=job_id, node_id=node_id)

    return command


def _machine_command(node_id: str, job_type: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    def command(tx: WriteTx) -> NodeAccepted:
        name, _ = _live_node(tx.conn, node_id)
        provider, container_id = tx.conn.execute(
            "SELECT provider, container_id FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()
        if provider == "ssh":
            raise ProviderUnsupported(
                f"{name} is an ssh node: Pressluft does not start or stop its server",
                details={"hint": "start or stop the server where it runs, then check it"},
            )
        if container_id is None:
            raise NodeNotReady(
                f"{name}'s container is not created yet",
                details={"hint": "wait for its node_create job (see GET /api/jobs?node=…)"},
            )
        job_id = enqueue_job(tx, _machine_worker(job_type), NoArgs(), meta, node_id=node_id)
        return NodeAccepted(job_id=job_id, node_id=node_id)

    return command


def start_command(node_id: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    """Queue `node_start` (a lab node's container; then a check)."""
    return _machine_command(node_id, "node_start", meta)


def stop_command(node_id: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    """Queue `node_stop` (a lab node's container)."""
    return _machine_command(node_id, "node_stop", meta)


# -- job handlers -------------------------------------------------------------------------


def node_address(conn: sqlite3.Connection, vault: Vault, node_id: str) -> NodeAddress | None:
    """How to reach a live node (its key opened from the vault); None if it is gone."""
    row = conn.execute(
        "SELECT host, ssh_port, ssh_user, key_secret_id, host_key FROM nodes"
        " WHERE id = ? AND status != 'decommissioned'",
        (node_id,),
    ).fetchone()
    if row is None or row[3] is None:
        return None
    host, port, user, secret_id, host_key = row
    return NodeAddress(host, int(port), user, vault.open(conn, secret_id), host_key)


async def node_facts(db: Database, vault: Vault, node_id: str, now: str) -> NodeFacts:
    """A direct query (no job, no lock, 10 s deadline): what the node is now."""

    def address(conn: sqlite3.Connection) -> NodeAddress | None:
        _live_node(conn, node_id)
        return node_address(conn, vault, node_id)

    found = await db.read(address)
    if found is None or found.host_key is None:
        raise NodeNotReady(
            "the node's host key is not pinned yet",
            details={"hint": f"check the node first: POST /api/nodes/{node_id}/check"},
        )
    try:
        result: Facts = await facts(found)
    except HostKeyMismatch as exc:
        raise NodeNotReady(
            str(exc),
            details={"reason": "host_key_mismatch", "hint": "see the node's readiness"},
        ) from exc
    except SSHQueryError as exc:
        raise NodeUnreachable(
            f"the node did not answer: {exc}", details={"reason": exc.reason}
        ) from exc
    return NodeFacts(node_id=node_id, collected_at=now, **dataclasses.asdict(result))


class NodeAccess(msgspec.Struct, frozen=True, kw_only=True):
    """How a worker reaches a live node: its address and sealed key (opened
    through the worker port), its pinned and expected host keys."""

    host: str
    port: int
    user: str
    key_secret_id: str
    host_key: str | None
    host_key_expected: str | None


def _node_access(conn: sqlite3.Connection, node_id: str) -> NodeAccess | None:
    row = conn.execute(
        "SELECT host, ssh_port, ssh_user, key_secret_id, host_key, host_key_expected FROM nodes"
        " WHERE id = ? AND status != 'decommissioned'",
        (node_id,),
    ).fetchone()
    if row is None or row[3] is None:
        return None
    host, port, user, secret_id, host_key, expected = row
    return NodeAccess(
        host=host,
        port=int(port),
        user=user,
        key_secret_id=secret_id,
        host_key=host_key,
        host_key_expected=expected,
    )


#: A live node's access (None once decommissioned).
NODE_ACCESS: Loader[str, NodeAccess | None] = Loader("node_access", _node_access)


class NodeMachine(msgspec.Struct, frozen=True, kw_only=True):
    """A node as its machine's jobs see it."""

    provider: str
    name: str
    public_key: str
    resources: NodeResources | None
    container_id: str | None
    container_state: str | None
    status: str


def _node_machine(conn: sqlite3.Connection, node_id: str) -> NodeMachine | None:
    row = conn.execute(
        "SELECT provider, name, public_key, resources_json, container_id, container_state,"
        " status FROM nodes WHERE id = ?",
        (node_id,),
    ).fetchone()
    if row is None:
        return None
    provider, name, public_key, resources, container_id, container_state, status = row
    return NodeMachine(
        provider=provider,
        name=name,
        public_key=public_key,
        resources=None
        if resources is None
        else msgspec.json.decode(str(resources), type=NodeResources),
        container_id=container_id,
        container_state=container_state,
        status=status,
    )


#: A node's provider, machine and status (None: no such node).
NODE_MACHINE: Loader[str, NodeMachine | None] = Loader("node_machine", _node_machine)


async def _address(ctx: WorkerPort, access: NodeAccess) -> NodeAddress:
    key = await ctx.secret(access.key_secret_id)
    return NodeAddress(access.host, access.port, access.user, key.encode(), access.host_key)


def _job_node(ctx: WorkerPort) -> str:
    if ctx.node_id is None:
        raise JobFailure("HANDLER_ERROR", f"a {ctx.job_type} job needs a node")
    return ctx.node_id


async def run_node_playbook(
    ctx: WorkerPort,
    playbook: str,
    *,
    extra_vars: dict[str, object] | None = None,
    allowlist: frozenset[str],
    ansible_dir: Path = ANSIBLE_DIR,
    task_codes: Callable[[str], str | None] | None = None,
) -> tuple[PlaybookSummary, str]:
    """Run `playbook` against the job's node (the Ansible workers' common path).

    Returns the summary and the profile revision it applied; raises JobFailure
    with the classified code — or, when a task failed that `task_codes` maps (by
    name) to a code of the playbook's own, that code — or JobCancelledError.
    Whatever happens, no process of the run is left and the key file goes with the
    attempt's work dir.
    """
    node_id = ctx.node_id
    if node_id is None:
        raise JobFailure("HANDLER_ERROR", "an Ansible job needs a node")
    access = await ctx.load(NODE_ACCESS, node_id)
    if access is None:
        raise JobFailure("NODE_NOT_CHECKED", "the node is decommissioned")
    if access.host_key is None:
        raise JobFailure(
            "NODE_NOT_CHECKED", "the node's host key is not pinned yet: check the node first"
        )
    address = await _address(ctx, access)
    revision = profile_revision(ansible_dir / "playbooks" / playbook, ansible_dir / "roles")
    ctx.log(f"profile revision {revision}", "system")
    work_dir = ctx.work_dir
    run = PlaybookRun(
        playbook=playbook,
        node=address,
        extra_vars=dict(extra_vars or {}),
        correlation_id=ctx.correlation_id,
        ansible_dir=ansible_dir,
        allowlist=allowlist,
        environment={RUN_MARKER: str(work_dir)},
    )
    try:
        summary = await run_playbook(
            run, work_dir, ctx.log, ctx.cancelled, stray=lambda: kill_marked(work_dir)
        )
    finally:  # whatever the run left, it goes now
        await asyncio.shield(asyncio.to_thread(kill_marked, work_dir))
    if ctx.cancelled.is_set():  # however the runner saw it end
        raise JobCancelledError("cancelled; the playbook was stopped")
    ctx.log(
        f"recap: rc={summary.rc} status={summary.status} changed={summary.changed}"
        f" failed={summary.failures} unreachable={summary.unreachable}"
        f" tasks={len(summary.tasks)}",
        "system",
    )
    if summary.status == "canceled":
        raise JobCancelledError("cancelled; the playbook was stopped")
    code = classify(summary)
    if code is not None:
        if task_codes is not None and code != "HOST_KEY_MISMATCH":
            for task in (t.task for t in summary.tasks if t.status == "failed"):
                own = task_codes(task)
                if own is not None:
                    raise JobFailure(own, f"task failed: {task}")
        raise JobFailure(code, f"ansible-playbook exited {summary.rc} ({summary.status})")
    return summary, revision


def record_check(
    node_id: str, events: list[NodeChecked], pin: NodeHostKeyPinned | None
) -> Callable[[WriteTx, Meta], None]:
    """A check's outcome: the host key pinned at first contact (only if none is
    pinned meanwhile), then `node.checked`."""

    def command(tx: WriteTx, meta: Meta) -> None:
        recorded: list[NodeHostKeyPinned | NodeChecked] = []
        if pin is not None:
            pinned = tx.conn.execute(
                "SELECT host_key FROM nodes WHERE id = ?", (node_id,)
            ).fetchone()
            if pinned is not None and pinned[0] is None:
                recorded.append(pin)
        recorded.extend(events)
        append(tx, f"node:{node_id}", None, recorded, meta)

    return command


async def check_node(ctx: WorkerPort) -> bool:
    """The readiness check of the job's node: log in with its key (pinning the host
    key at first contact), record `node.checked`; raises JobFailure when it cannot
    log in. Returns whether the node is ready."""
    node_id = _job_node(ctx)
    access = await ctx.load(NODE_ACCESS, node_id)
    if access is None:
        ctx.log("the node is decommissioned: nothing to check")
        return False
    address = await _address(ctx, access)
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


def record_decommission(
    node_id: str, removed: list[NodeContainerRemoved]
) -> Callable[[WriteTx, Meta], bool]:
    """`node.decommissioned` (after its container's removal, if any) and the node's
    private key destroyed for good — unless it is decommissioned already."""

    def command(tx: WriteTx, meta: Meta) -> bool:
        row = tx.conn.execute(
            "SELECT status, key_secret_id FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()
        if row is None or row[0] == "decommissioned":
            return False
        append(tx, f"node:{node_id}", None, [*removed, NodeDecommissioned(node_id=node_id)], meta)
        if row[1] is not None:
            Vault.destroy(tx.conn, row[1])  # the private key is gone for good
        return True

    return command


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


#: The node workers (their machines' are in `services/machines.py`).
def node_workers(providers: Providers) -> list[JobWorker[Any]]:
    return [NodeCheck(), NodeProvision(), NodeDecommission(providers)]
