"""What the nodes context shows: its views (with the actions a node offers now)
and the queries that read them from the `nodes` table."""

from __future__ import annotations

import shlex
import sqlite3
from typing import Literal

import msgspec

from pressluft.contexts.nodes.errors import NodeGone, NodeNotFound
from pressluft.contexts.nodes.events import NodePorts, NodeResources
from pressluft.ids import is_uuid

__all__ = [
    "STATUSES",
    "ContainerView",
    "NodeFacts",
    "NodePage",
    "NodeQuery",
    "NodeView",
    "Readiness",
    "authorize_command",
    "get_node",
    "list_nodes",
    "live_node",
    "node_actions",
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


def authorize_command(public_line: str) -> str:
    """The one line an operator runs on the server (as the SSH user) to let Pressluft in."""
    quoted = shlex.quote(public_line)
    # printf starts with a newline: a file without a trailing one keeps its last key.
    return (
        "mkdir -p ~/.ssh && chmod 700 ~/.ssh && "
        f"{{ grep -qxF {quoted} ~/.ssh/authorized_keys 2>/dev/null || "
        f"printf '\\n%s\\n' {quoted} >> ~/.ssh/authorized_keys; }} && "
        "chmod 600 ~/.ssh/authorized_keys"
    )


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
    "os_unsupported": (
        "The server does not run an operating system Pressluft supports: Debian 12 (bookworm)"
        " or Debian 13 (trixie). The check's job log names what it found. Install a supported"
        " release (or register another server), then check again."
    ),
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


def live_node(conn: sqlite3.Connection, node_id: str) -> tuple[str, str]:
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
