"""Nodes recorded in a runtime's event log without a real server behind them (for
tests of what sits on top of nodes: sites, the API's shapes)."""

from __future__ import annotations

import uuid

from pressluft.events import Event, Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.events.types import (
    NodeChecked,
    NodeHostKeyPinned,
    NodeProvisioned,
    NodeProvisioningStarted,
    NodeRegistered,
)
from pressluft.runtime import Runtime

META = Meta(actor="test:nodes")


def recorded_node_events(node_id: str, *, provisioned: bool = True) -> list[Event]:
    """A checked, ready node on 127.0.0.1:9 (nothing listens), provisioned or not."""
    events: list[Event] = [
        NodeRegistered(
            node_id=node_id,
            name=f"n-{node_id[:8]}",
            provider="ssh",
            host="127.0.0.1",
            ssh_port=9,
            ssh_user="root",
            key_secret_id="sec_test",
            public_key="ssh-ed25519 AAAA test",
        ),
        NodeHostKeyPinned(
            node_id=node_id, host_key="ssh-ed25519 AAAA host", fingerprint="SHA256:x"
        ),
        NodeChecked(node_id=node_id, reachable=True, ready=True),
    ]
    if provisioned:
        job_id = str(uuid.uuid4())
        events += [
            NodeProvisioningStarted(node_id=node_id, job_id=job_id),
            NodeProvisioned(node_id=node_id, job_id=job_id, profile_revision="sha256:x", changed=0),
        ]
    return events


async def record_node(runtime: Runtime, *, provisioned: bool = True) -> str:
    node_id = str(uuid.uuid4())
    events = recorded_node_events(node_id, provisioned=provisioned)
    await runtime.db.write(lambda tx: append(tx, f"node:{node_id}", NO_STREAM, events, META))
    return node_id
