"""What the nodes context's workers load through their port (named loaders): a
live node's access (address, sealed key, host keys) and its machine."""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.contexts.nodes.events import NodeResources
from pressluft.jobs.workers import Loader

__all__ = ["NODE_ACCESS", "NODE_MACHINE", "NodeAccess", "NodeMachine"]


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
