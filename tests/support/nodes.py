"""Nodes recorded in a runtime's event log without a real server behind them (for
tests of what sits on top of nodes: sites, the API's shapes)."""

from __future__ import annotations

import uuid

from pressluft.contexts.nodes.events import (
    NodeChecked,
    NodeHostKeyPinned,
    NodeProvisioned,
    NodeProvisioningStarted,
    NodeRegistered,
)
from pressluft.db import WriteTx
from pressluft.events import Event, Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.runners.keys import generate_key_pair
from pressluft.runtime import Runtime
from tests.support.jobs import job, submit, until

META = Meta(actor="test:nodes")


def recorded_node_events(
    node_id: str,
    *,
    provisioned: bool = True,
    key_secret_id: str = "sec_test",  # noqa: S107 (an id)
) -> list[Event]:
    """A checked, ready node on 127.0.0.1:9 (nothing listens), provisioned or not,
    with a real (random) pinned host key."""
    host_key = generate_key_pair("host").public_line
    events: list[Event] = [
        NodeRegistered(
            node_id=node_id,
            name=f"n-{node_id[:8]}",
            provider="ssh",
            host="127.0.0.1",
            ssh_port=9,
            ssh_user="root",
            key_secret_id=key_secret_id,
            public_key="ssh-ed25519 AAAA test",
        ),
        NodeHostKeyPinned(node_id=node_id, host_key=host_key, fingerprint="SHA256:x"),
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
    """A recorded node whose private key is really sealed in the runtime's vault."""
    node_id = str(uuid.uuid4())
    private = generate_key_pair("node").private_pem

    def command(tx: WriteTx) -> None:
        secret = runtime.vault.seal(tx.conn, "node_ssh_key", private, tx.now_ts)
        events = recorded_node_events(node_id, provisioned=provisioned, key_secret_id=secret)
        append(tx, f"node:{node_id}", NO_STREAM, events, META)

    await runtime.db.write(command)
    return node_id


async def blocked_node(runtime: Runtime, *, provisioned: bool = True) -> str:
    """A recorded ready node whose lock a long diagnostic job holds: the site jobs a
    test queues on it stay queued."""
    node_id = await record_node(runtime, provisioned=provisioned)
    busy = await submit(runtime, job_type="sleep", node_id=node_id, seconds=600)

    async def running() -> bool:
        return (await job(runtime, busy)).status == "running"

    await until(running)
    return node_id


async def event_and_job_counts(runtime: Runtime) -> tuple[int, int]:
    """How many events and jobs there are (a refusal changes neither)."""
    return await runtime.db.read(
        lambda c: (
            c.execute("SELECT count(*) FROM events").fetchone()[0],
            c.execute("SELECT count(*) FROM jobs").fetchone()[0],
        )
    )
