"""A node's `provisioning` status follows its provisioning job to the end, even
when no handler records the outcome (lost worker, last attempt timed out,
cancelled): the queue's own commands on a real SQLite file, no daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pressluft.contexts.nodes.events import NodeProvisioningStarted, NodeRegistered
from pressluft.db import WriteTx
from pressluft.events import append
from pressluft.events.log import NO_STREAM
from pressluft.jobs.queue import Claim, Outcome, RescueScope, cancel, claim, finish, rescue
from tests.support.queue import ACTOR, QueueDb

NODE = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def q(tmp_path: Path) -> Iterator[QueueDb]:
    db = QueueDb(tmp_path / "queue.db")
    registered = NodeRegistered(
        node_id=NODE,
        name="web-1",
        provider="ssh",
        host="192.0.2.10",
        ssh_port=22,
        ssh_user="root",
        key_secret_id="sec_test",
        public_key="ssh-ed25519 AAAA test",
    )
    db.run(lambda tx: append(tx, f"node:{NODE}", NO_STREAM, [registered], ACTOR))
    try:
        yield db
    finally:
        db.close()


def _node_status(q: QueueDb) -> str:
    return str(q.conn.execute("SELECT status FROM nodes WHERE id = ?", (NODE,)).fetchone()[0])


def _start_provisioning(q: QueueDb, max_attempts: int = 1) -> Claim:
    """A node_provision job claimed by a worker whose handler began (status provisioning)."""
    q.enqueue("node_provision", node_id=NODE, max_attempts=max_attempts)
    claims, _ = q.run(claim(1, "w1", 30.0))
    (c,) = claims

    def started(tx: WriteTx) -> None:
        event = NodeProvisioningStarted(node_id=NODE, job_id=c.job_id)
        append(tx, f"node:{NODE}", None, [event], ACTOR)

    q.run(started)
    assert _node_status(q) == "provisioning"
    return c


@pytest.mark.spec("NOD-27")
def test_a_provisioning_whose_worker_is_lost_for_good_leaves_the_node_failed(
    q: QueueDb, tmp_path: Path
) -> None:
    c = _start_provisioning(q, max_attempts=2)
    q.run(rescue(RescueScope(all_running=True, reason="daemon_restarted")))
    assert q.status(c.job_id) == "queued"  # attempts left: still being provisioned
    assert _node_status(q) == "provisioning"
    claims, _ = q.run(claim(1, "w2", 30.0))
    q.run(rescue(RescueScope(all_running=True, reason="daemon_restarted")))
    assert q.status(claims[0].job_id) == "failed"
    assert _node_status(q) == "failed"
    q.assert_consistent(tmp_path)


@pytest.mark.spec("NOD-27")
def test_a_last_attempt_timing_out_leaves_the_node_failed_but_not_another_jobs_cancel(
    q: QueueDb, tmp_path: Path
) -> None:
    running = _start_provisioning(q)
    other = q.enqueue("node_provision", node_id=NODE)
    assert q.run(cancel(other, ACTOR)) == "cancelled"
    assert _node_status(q) == "provisioning"  # the running one can still finish
    timeout = Outcome("failed", "ANSIBLE_TIMEOUT", "ran past 1800 s", retryable=True)
    assert q.run(finish(running, timeout, "w1")) == "failed"
    assert _node_status(q) == "failed"
    q.assert_consistent(tmp_path)


@pytest.mark.spec("NOD-27")
def test_cancelling_another_job_leaves_a_provisioning_that_waits_to_retry(
    q: QueueDb, tmp_path: Path
) -> None:
    first = _start_provisioning(q, max_attempts=3)
    q.run(rescue(RescueScope(all_running=True, reason="daemon_restarted")))
    assert q.status(first.job_id) == "queued"  # its retry is coming
    other = q.enqueue("node_provision", node_id=NODE)
    assert q.run(cancel(other, ACTOR)) == "cancelled"
    assert _node_status(q) == "provisioning"
    q.assert_consistent(tmp_path)
