"""What may be asked of nodes: the requests, their checks, and the commands that
record what was asked and queue the job that does it (in one transaction).

Every mutation is a job under the node's lock (`node_id` on the job); the
workers (`workers.py`) do the work. Providers: `ssh` (bring your own server)
and `docker` (lab nodes: a container the node's machine jobs create).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

import msgspec

from pressluft.contexts.nodes.errors import (
    ConfirmationRequired,
    NodeExists,
    NodeHostsSites,
    NodeNotReady,
    ProviderUnavailable,
    ProviderUnsupported,
)
from pressluft.contexts.nodes.events import NodeHostKeyUnpinned, NodeRegistered, NodeResources
from pressluft.contexts.nodes.probes import KeyPair, Providers, new_key_pair
from pressluft.contexts.nodes.views import live_node
from pressluft.contexts.nodes.workers import (
    NodeCheck,
    NodeCreate,
    NodeDecommission,
    NodeProvision,
    NodeStart,
    NodeStop,
)
from pressluft.db import WriteTx
from pressluft.errors import BadRequest
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import new_id
from pressluft.jobs.workers import JobWorker, NoArgs, enqueue_job
from pressluft.vault import Vault

__all__ = [
    "NodeAccepted",
    "RegisterDockerNode",
    "RegisterNodeRequest",
    "RegisterSshNode",
    "RepinRequest",
    "check_command",
    "decommission_command",
    "provision_command",
    "register_command",
    "repin_command",
    "start_command",
    "stop_command",
]


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
    #: `plain`: node-init starts the init scripts (no systemd); `systemd`: systemd as PID 1.
    init: Literal["plain", "systemd"] = "plain"


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


_MACHINE_WORKERS: dict[str, type[JobWorker[NoArgs]]] = {
    "node_create": NodeCreate,
    "node_start": NodeStart,
    "node_stop": NodeStop,
}


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
    systemd = isinstance(request, RegisterDockerNode) and request.init == "systemd"
    if systemd and not providers.lab_systemd:
        raise ProviderUnavailable(
            "this daemon does not run lab nodes with systemd as PID 1",
            details={
                "hint": "start pressluft with --lab-systemd (labs only: such a container "
                "can become root on the daemon's machine), or register the node with "
                'init "plain"'
            },
        )
    keys: KeyPair = new_key_pair(request.name)

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
                memory_mb=request.memory_mb,
                cpus=request.cpus,
                pids=request.pids,
                init=request.init,
            )
            first = NodeCreate
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
        live_node(tx.conn, node_id)
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
        live_node(tx.conn, node_id)
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
        live_node(tx.conn, node_id)
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
        name, _ = live_node(tx.conn, node_id)
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
        name, _ = live_node(tx.conn, node_id)
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
        job_id = enqueue_job(tx, _MACHINE_WORKERS[job_type], NoArgs(), meta, node_id=node_id)
        return NodeAccepted(job_id=job_id, node_id=node_id)

    return command


def start_command(node_id: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    """Queue `node_start` (a lab node's container; then a check)."""
    return _machine_command(node_id, "node_start", meta)


def stop_command(node_id: str, meta: Meta) -> Callable[[WriteTx], NodeAccepted]:
    """Queue `node_stop` (a lab node's container)."""
    return _machine_command(node_id, "node_stop", meta)
