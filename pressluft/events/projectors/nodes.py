"""Projector of node.* events into `nodes`.

Status moves (specs/nodes.md): registered → `pending`; a check that cannot
reach an `active` node → `unreachable`, and one that reaches an `unreachable`
node → `active` again; decommissioned is terminal and drops the key reference.
Every UPDATE is guarded by the states it may apply to.
"""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.events.projection import Envelope, Projector
from pressluft.events.projectors.jobs import GuardFailed
from pressluft.events.types import (
    NodeChecked,
    NodeDecommissioned,
    NodeHostKeyPinned,
    NodeHostKeyUnpinned,
    NodeProvisioned,
    NodeProvisionFailed,
    NodeProvisioningStarted,
    NodeRegistered,
)

__all__ = ["NODES_PROJECTOR"]

_LIVE = "status != 'decommissioned'"


def _one(cursor: sqlite3.Cursor, what: str) -> None:
    if cursor.rowcount != 1:
        raise GuardFailed(what)


def _registered(conn: sqlite3.Connection, e: NodeRegistered, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO nodes (id, name, provider, host, ssh_port, ssh_user, status, key_secret_id,"
        " public_key, reason_codes_json, created_at, updated_at, state_version)"
        " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, '[\"not_checked\"]', ?, ?, ?)",
        (
            e.node_id,
            e.name,
            e.provider,
            e.host,
            e.ssh_port,
            e.ssh_user,
            e.key_secret_id,
            e.public_key,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
        ),
    )


def _pinned(conn: sqlite3.Connection, e: NodeHostKeyPinned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET host_key = ?, host_key_fingerprint = ?, host_key_expected = NULL,"
        f" updated_at = ?, state_version = ? WHERE id = ? AND host_key IS NULL AND {_LIVE}",
        (e.host_key, e.fingerprint, env.recorded_at, env.stream_version, e.node_id),
    )
    _one(cursor, f"pin of {e.node_id}")


def _unpinned(conn: sqlite3.Connection, e: NodeHostKeyUnpinned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET host_key = NULL, host_key_fingerprint = NULL, host_key_expected = ?,"
        " ready = 0, reason_codes_json = '[\"not_checked\"]',"
        f" updated_at = ?, state_version = ? WHERE id = ? AND {_LIVE}",
        (e.expected_fingerprint, env.recorded_at, env.stream_version, e.node_id),
    )
    _one(cursor, f"unpin of {e.node_id}")


def _checked(conn: sqlite3.Connection, e: NodeChecked, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET ready = ?, reason_codes_json = ?, checked_at = ?,"
        " last_seen_at = CASE WHEN ? THEN ? ELSE last_seen_at END,"
        " status = CASE WHEN ? AND status = 'unreachable' THEN 'active'"
        "   WHEN NOT ? AND status = 'active' THEN 'unreachable' ELSE status END,"
        f" updated_at = ?, state_version = ? WHERE id = ? AND {_LIVE}",
        (
            int(e.ready),
            msgspec.json.encode(e.reason_codes).decode(),
            env.recorded_at,
            e.reachable,
            env.recorded_at,
            e.reachable,
            e.reachable,
            env.recorded_at,
            env.stream_version,
            e.node_id,
        ),
    )
    _one(cursor, f"check of {e.node_id}")


def _provisioning(conn: sqlite3.Connection, e: NodeProvisioningStarted, env: Envelope) -> None:
    cursor = conn.execute(
        f"UPDATE nodes SET status = 'provisioning', updated_at = ?, state_version = ?"
        f" WHERE id = ? AND {_LIVE}",
        (env.recorded_at, env.stream_version, e.node_id),
    )
    _one(cursor, f"provisioning of {e.node_id}")


def _provisioned(conn: sqlite3.Connection, e: NodeProvisioned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET status = 'active', profile_revision = ?, updated_at = ?,"
        " state_version = ? WHERE id = ? AND status = 'provisioning'",
        (e.profile_revision, env.recorded_at, env.stream_version, e.node_id),
    )
    _one(cursor, f"provisioned {e.node_id}")


def _provision_failed(conn: sqlite3.Connection, e: NodeProvisionFailed, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET status = 'failed', updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'provisioning'",
        (env.recorded_at, env.stream_version, e.node_id),
    )
    _one(cursor, f"failed provisioning of {e.node_id}")


def _decommissioned(conn: sqlite3.Connection, e: NodeDecommissioned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET status = 'decommissioned', key_secret_id = NULL, ready = 0,"
        " reason_codes_json = '[\"node_status_not_active\"]', decommissioned_at = ?,"
        f" updated_at = ?, state_version = ? WHERE id = ? AND {_LIVE}",
        (env.recorded_at, env.recorded_at, env.stream_version, e.node_id),
    )
    _one(cursor, f"decommission of {e.node_id}")


NODES_PROJECTOR = Projector(
    "nodes",
    ("nodes",),
    {
        NodeRegistered: _registered,
        NodeHostKeyPinned: _pinned,
        NodeHostKeyUnpinned: _unpinned,
        NodeChecked: _checked,
        NodeProvisioningStarted: _provisioning,
        NodeProvisioned: _provisioned,
        NodeProvisionFailed: _provision_failed,
        NodeDecommissioned: _decommissioned,
    },
)
