"""Projector of node.* events into `nodes`.

Status moves (specs/nodes.md): registered → `pending`; a check that cannot
reach an `active` node → `unreachable`, and one that reaches an `unreachable`
node → `active` again; decommissioned is terminal and drops the key reference.
A lab node's container that stops or dies makes an `active` node `unreachable`
(readiness `container_stopped`) until a check reaches it again. Every UPDATE is
guarded by the states it may apply to. `node.orphan_detected` concerns no node:
it has no projection (the event log is its record).

One status follows a job instead of a node event: a `node_provision` job
holds its node as `provisioning` (the status its attempt records when it
starts). When a job holding a node ends failed or cancelled — its last attempt
failed or timed out, its worker was lost for good (`job.lease_expired`
failed/cancelled), or it was cancelled — and the node still has the held
status, the node becomes `failed` (its state is unknown), unless another job
holding it so is running or waits to retry an attempt it began: one generic
rule (`released_hold`), naming no job type. `node.provision_failed` (recorded
by the handler of old) is replayed as before. (It reads the `jobs`
projection, written earlier in the same order live and in a replay.)
"""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.contexts.nodes.events import (
    NodeChecked,
    NodeContainerCreated,
    NodeContainerDied,
    NodeContainerRemoved,
    NodeContainerStarted,
    NodeContainerStopped,
    NodeDecommissioned,
    NodeHostKeyPinned,
    NodeHostKeyUnpinned,
    NodeProvisioned,
    NodeProvisionFailed,
    NodeProvisioningStarted,
    NodeRegistered,
)
from pressluft.events.projection import Envelope, Projector, one_row
from pressluft.jobs.projector import on_job_end, released_hold

__all__ = ["NODES_PROJECTOR"]

_LIVE = "status != 'decommissioned'"


def _registered(conn: sqlite3.Connection, e: NodeRegistered, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO nodes (id, name, provider, host, ssh_port, ssh_user, status, key_secret_id,"
        " public_key, reason_codes_json, resources_json, created_at, updated_at, state_version)"
        " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, '[\"not_checked\"]', ?, ?, ?, ?)",
        (
            e.node_id,
            e.name,
            e.provider,
            e.host,
            e.ssh_port,
            e.ssh_user,
            e.key_secret_id,
            e.public_key,
            None if e.resources is None else msgspec.json.encode(e.resources).decode(),
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
    one_row(cursor, f"pin of {e.node_id}")


def _unpinned(conn: sqlite3.Connection, e: NodeHostKeyUnpinned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET host_key = NULL, host_key_fingerprint = NULL, host_key_expected = ?,"
        " ready = 0, reason_codes_json = '[\"not_checked\"]',"
        f" updated_at = ?, state_version = ? WHERE id = ? AND {_LIVE}",
        (e.expected_fingerprint, env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"unpin of {e.node_id}")


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
    one_row(cursor, f"check of {e.node_id}")


def _provisioning(conn: sqlite3.Connection, e: NodeProvisioningStarted, env: Envelope) -> None:
    cursor = conn.execute(
        f"UPDATE nodes SET status = 'provisioning', updated_at = ?, state_version = ?"
        f" WHERE id = ? AND {_LIVE}",
        (env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"provisioning of {e.node_id}")


def _provisioned(conn: sqlite3.Connection, e: NodeProvisioned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET status = 'active', profile_revision = ?, updated_at = ?,"
        " state_version = ? WHERE id = ? AND status = 'provisioning'",
        (e.profile_revision, env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"provisioned {e.node_id}")


def _provision_failed(conn: sqlite3.Connection, e: NodeProvisionFailed, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET status = 'failed', updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'provisioning'",
        (env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"failed provisioning of {e.node_id}")


def _decommissioned(conn: sqlite3.Connection, e: NodeDecommissioned, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET status = 'decommissioned', key_secret_id = NULL, ready = 0,"
        " reason_codes_json = '[\"node_status_not_active\"]', decommissioned_at = ?,"
        f" updated_at = ?, state_version = ? WHERE id = ? AND {_LIVE}",
        (env.recorded_at, env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"decommission of {e.node_id}")


def _container_created(conn: sqlite3.Connection, e: NodeContainerCreated, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET container_id = ?, container_state = 'running', ssh_port = ?,"
        " ports_json = ?, updated_at = ?, state_version = ?"
        f" WHERE id = ? AND provider = 'docker' AND container_id IS NULL AND {_LIVE}",
        (
            e.container_id,
            e.ports.ssh,
            msgspec.json.encode(e.ports).decode(),
            env.recorded_at,
            env.stream_version,
            e.node_id,
        ),
    )
    one_row(cursor, f"container of {e.node_id}")


def _container_started(conn: sqlite3.Connection, e: NodeContainerStarted, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET container_state = 'running', container_exit_code = NULL, ssh_port = ?,"
        " ports_json = ?, updated_at = ?, state_version = ?"
        f" WHERE id = ? AND container_id IS NOT NULL AND container_state != 'removed' AND {_LIVE}",
        (
            e.ports.ssh,
            msgspec.json.encode(e.ports).decode(),
            env.recorded_at,
            env.stream_version,
            e.node_id,
        ),
    )
    one_row(cursor, f"start of {e.node_id}'s container")


#: A container that is down: the node cannot be reached until it runs and is checked.
_DOWN = (
    "ready = 0, reason_codes_json = '[\"container_stopped\"]',"
    " status = CASE WHEN status = 'active' THEN 'unreachable' ELSE status END"
)


def _container_stopped(conn: sqlite3.Connection, e: NodeContainerStopped, env: Envelope) -> None:
    cursor = conn.execute(
        f"UPDATE nodes SET container_state = 'stopped', {_DOWN}, updated_at = ?,"
        " state_version = ?"
        f" WHERE id = ? AND container_id IS NOT NULL AND container_state != 'removed' AND {_LIVE}",
        (env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"stop of {e.node_id}'s container")


def _container_died(conn: sqlite3.Connection, e: NodeContainerDied, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET container_state = CASE WHEN container_state = 'stopped' THEN 'stopped'"
        f" ELSE 'exited' END, container_exit_code = ?, container_died_at = ?, {_DOWN},"
        " updated_at = ?, state_version = ?"
        f" WHERE id = ? AND container_id IS NOT NULL AND container_state != 'removed' AND {_LIVE}",
        (e.exit_code, e.died_at, env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"death of {e.node_id}'s container")


def _container_removed(conn: sqlite3.Connection, e: NodeContainerRemoved, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE nodes SET container_state = 'removed', ports_json = NULL, updated_at = ?,"
        f" state_version = ? WHERE id = ? AND provider = 'docker' AND {_LIVE}",
        (env.recorded_at, env.stream_version, e.node_id),
    )
    one_row(cursor, f"removal of {e.node_id}'s container")


def _released(conn: sqlite3.Connection, job_id: str, env: Envelope) -> None:
    """A job ended failed or cancelled: the node it held, if still in the held status,
    is `failed`."""
    held = released_hold(conn, job_id, "node")
    if held is None:
        return
    conn.execute(
        "UPDATE nodes SET status = 'failed', updated_at = ? WHERE id = ? AND status = ?",
        (env.recorded_at, held.id, held.status),
    )


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
        NodeContainerCreated: _container_created,
        NodeContainerStarted: _container_started,
        NodeContainerStopped: _container_stopped,
        NodeContainerDied: _container_died,
        NodeContainerRemoved: _container_removed,
        NodeDecommissioned: _decommissioned,
        **on_job_end(_released),
    },
)
