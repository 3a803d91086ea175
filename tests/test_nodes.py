"""Nodes against real sshd test nodes on loopback: registration, key authorization,
host-key pinning and mismatch, re-pinning, unreachable nodes, decommissioning, and
the node's private key never leaving the vault."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from pressluft.contexts.nodes.commands import RegisterNodeRequest, register_command
from pressluft.contexts.nodes.errors import ProviderUnavailable
from pressluft.events import Meta
from pressluft.runners.providers import Providers
from pressluft.runtime import Runtime
from tests.support.jobs import job, until, until_ended
from tests.support.sshd import SSHNode, free_port


@pytest.fixture
def ssh_node(tmp_path: Path) -> Iterator[SSHNode]:
    node = SSHNode(tmp_path / "sshd").start()
    try:
        yield node
    finally:
        node.stop()


async def _register(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    reply = await client.post("/api/nodes", json={"provider": "ssh", **body})
    assert reply.status_code == 202, reply.text
    accepted: dict[str, Any] = reply.json()
    return accepted


async def _node(client: httpx.AsyncClient, node_id: str) -> dict[str, Any]:
    reply = await client.get(f"/api/nodes/{node_id}")
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def _first_attempt_ended(runtime: Runtime, job_id: str) -> Any:
    async def ended() -> bool:
        view = await job(runtime, job_id)
        return bool(view.attempts) and view.attempts[0].outcome is not None

    await until(ended, within=30)
    return await job(runtime, job_id)


async def _authorized_node(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, name: str = "web-1"
) -> str:
    """Register, authorize the key on the server, check: a ready node with a pinned key."""
    accepted = await _register(
        client, name=name, host="127.0.0.1", ssh_port=ssh_node.port, ssh_user=ssh_node.user
    )
    node = await _node(client, accepted["node_id"])
    ssh_node.authorize(node["public_key"])
    checked = (await client.post(f"/api/nodes/{accepted['node_id']}/check")).json()
    assert (await until_ended(runtime, checked["job_id"])).status == "succeeded"
    return str(accepted["node_id"])


@pytest.mark.spec("NOD-1", "NOD-2")
async def test_a_registered_node_asks_for_its_key_then_pins_and_is_ready(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    accepted = await _register(
        client, name="web-1", host="127.0.0.1", ssh_port=ssh_node.port, ssh_user=ssh_node.user
    )
    node = await _node(client, accepted["node_id"])
    assert node["status"] == "pending" and node["provider"] == "ssh"
    assert node["public_key"].startswith("ssh-ed25519 ")
    assert node["public_key"] in node["authorize_command"]
    assert node["host_key_fingerprint"] is None
    # The key is not authorized yet: the first check fails retryably and says why.
    first = await _first_attempt_ended(runtime, accepted["job_id"])
    assert (first.status, first.attempts[0].error_code) == ("queued", "NODE_AUTH_FAILED")
    node = await _node(client, accepted["node_id"])
    assert node["readiness"]["reason_codes"] == ["ssh_auth_failed"]
    assert "authorize command" in node["readiness"]["guidance"][0]
    assert node["host_key_fingerprint"] is None  # nothing pinned without a login
    # The operator runs the authorize command; the next check pins and passes.
    ssh_node.authorize(node["public_key"])
    checked = (await client.post(f"/api/nodes/{accepted['node_id']}/check")).json()
    assert (await until_ended(runtime, checked["job_id"])).status == "succeeded"
    node = await _node(client, accepted["node_id"])
    assert node["readiness"] == {
        "is_ready": True,
        "reason_codes": [],
        "guidance": [],
        "checked_at": node["readiness"]["checked_at"],
    }
    assert node["host_key_fingerprint"].startswith("SHA256:")
    assert node["last_seen_at"] is not None
    events = (await client.get("/api/events", params={"stream": f"node:{node['id']}"})).json()
    types = [e["type"] for e in events["items"]]
    assert types == ["node.registered", "node.checked", "node.host_key_pinned", "node.checked"]


@pytest.mark.spec("JOB-44", "JOB-43")
async def test_a_second_check_request_answers_the_active_check(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    accepted = await _register(
        client, name="web-1", host="127.0.0.1", ssh_port=ssh_node.port, ssh_user=ssh_node.user
    )
    node_id, first = accepted["node_id"], accepted["job_id"]
    # The registration's check failed (the key is not authorized) and waits out its
    # backoff: it is the node's active check.
    assert (await _first_attempt_ended(runtime, first)).status == "queued"
    answers = []
    for key in ("one", "two"):  # two clients' requests, each with its own key
        reply = await client.post(f"/api/nodes/{node_id}/check", headers={"Idempotency-Key": key})
        assert reply.status_code == 202, reply.text
        answers.append(reply.json())
    assert answers == [{"job_id": first, "node_id": node_id}] * 2
    listed = (await client.get("/api/jobs", params={"node_id": node_id})).json()["items"]
    assert [j["id"] for j in listed] == [first]
    # Asked for again while waiting, it was made due now rather than left to its backoff.
    events = (await client.get("/api/events", params={"stream": f"job:{first}"})).json()
    assert "job.hastened" in [e["type"] for e in events["items"]]


@pytest.mark.spec("NOD-3", "NOD-4")
async def test_a_changed_host_key_fails_for_good_until_an_admin_repins(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    node_id = await _authorized_node(client, runtime, ssh_node)
    pinned = (await _node(client, node_id))["host_key_fingerprint"]
    ssh_node.new_host_key()  # a re-installed server, or someone in between
    checked = (await client.post(f"/api/nodes/{node_id}/check")).json()
    view = await until_ended(runtime, checked["job_id"])
    assert (view.status, view.error_code, len(view.attempts)) == (
        "failed",
        "HOST_KEY_MISMATCH",
        1,
    )
    node = await _node(client, node_id)
    assert node["host_key_fingerprint"] == pinned
    assert node["readiness"]["reason_codes"] == ["host_key_mismatch"]
    assert node["status"] == "pending"  # a foreign key is not "seen": no status flip
    offered = ssh_node.fingerprint()
    assert offered in view.error_message  # the log names the key it was offered
    # A re-pin that expects another key pins nothing.
    other = "SHA256:" + "A" * 43
    wrong = await client.post(
        f"/api/nodes/{node_id}/host-key/repin", json={"expected_fingerprint": other}
    )
    view = await until_ended(runtime, wrong.json()["job_id"])
    assert (view.status, view.error_code) == ("failed", "HOST_KEY_MISMATCH")
    assert (await _node(client, node_id))["host_key_fingerprint"] is None
    # An admin re-pins with the fingerprint from the server's console (audited).
    repinned = await client.post(
        f"/api/nodes/{node_id}/host-key/repin", json={"expected_fingerprint": offered}
    )
    assert repinned.status_code == 202, repinned.text
    assert (await until_ended(runtime, repinned.json()["job_id"])).status == "succeeded"
    node = await _node(client, node_id)
    assert node["host_key_fingerprint"] == offered != pinned
    assert node["readiness"]["is_ready"] is True
    bad = await client.post(
        f"/api/nodes/{node_id}/host-key/repin", json={"expected_fingerprint": "MD5:aa"}
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_request")
    audit = (await client.get("/api/audit", params={"resource_type": "node"})).json()
    unpins = [e for e in audit["items"] if e["action"] == "node.host_key_unpinned"]
    assert len(unpins) == 2 and all(e["actor"].startswith("token:") for e in unpins)


@pytest.mark.spec("NOD-5")
async def test_an_unreachable_node_is_retried_with_backoff(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    closed = free_port()  # nothing listens there
    accepted = await _register(client, name="gone", host="127.0.0.1", ssh_port=closed)
    view = await _first_attempt_ended(runtime, accepted["job_id"])
    assert (view.status, view.attempts[0].error_code) == ("queued", "NODE_UNREACHABLE")
    assert view.run_after is not None  # the reference's backoff: 1 min first
    node = await _node(client, accepted["node_id"])
    assert node["readiness"]["reason_codes"] == ["node_unreachable"]
    assert f"127.0.0.1:{closed}" in node["readiness"]["guidance"][0]
    assert node["last_seen_at"] is None


@pytest.mark.spec("AUD-3")
async def test_the_audit_log_shows_what_a_node_check_found(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    """A check that could not reach the node is not a "succeeded" in the audit log."""
    closed = free_port()  # nothing listens there
    gone = await _register(client, name="gone", host="127.0.0.1", ssh_port=closed)
    await _first_attempt_ended(runtime, gone["job_id"])
    ready = await _authorized_node(client, runtime, ssh_node)

    async def checks(node_id: str) -> list[dict[str, Any]]:
        params = {"resource_type": "node", "resource_id": node_id}
        page = (await client.get("/api/audit", params=params)).json()
        return [e for e in page["items"] if e["action"] == "node.checked"]

    [unreachable] = await checks(gone["node_id"])
    assert (unreachable["result"], unreachable["outcome"]) == (
        "failed",
        "unreachable: node_unreachable",
    )
    newest = (await checks(ready))[0]  # before it, perhaps one without the key: unreachable
    assert (newest["result"], newest["outcome"]) == ("succeeded", "reachable, ready")
    others = (await client.get("/api/audit", params={"resource_type": "node"})).json()["items"]
    assert {e["outcome"] for e in others if e["action"] != "node.checked"} == {None}


@pytest.mark.spec("NOD-6")
async def test_decommissioning_needs_confirmation_and_destroys_the_key(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    node_id = await _authorized_node(client, runtime, ssh_node)
    refused = await client.delete(f"/api/nodes/{node_id}")
    assert (refused.status_code, refused.json()["code"]) == (400, "confirmation_required")
    wrong = await client.delete(f"/api/nodes/{node_id}", params={"confirm": "web-2"})
    assert wrong.status_code == 400
    secret_id = await runtime.db.read(
        lambda conn: conn.execute(
            "SELECT key_secret_id FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()[0]
    )
    accepted = await client.delete(f"/api/nodes/{node_id}", params={"confirm": "web-1"})
    assert accepted.status_code == 202, accepted.text
    assert (await until_ended(runtime, accepted.json()["job_id"])).status == "succeeded"
    node = await _node(client, node_id)
    assert node["status"] == "decommissioned" and node["decommissioned_at"] is not None
    assert node["public_key"] is None and node["readiness"]["is_ready"] is False
    left = await runtime.db.read(
        lambda conn: conn.execute(
            "SELECT count(*) FROM secrets WHERE id = ?", (secret_id,)
        ).fetchone()[0]
    )
    assert left == 0
    for path in (f"/api/nodes/{node_id}/check", f"/api/nodes/{node_id}/host-key/repin"):
        gone = await client.post(path)
        assert (gone.status_code, gone.json()["code"]) == (409, "node_decommissioned")
    # The name is free again; the old node keeps its row (history).
    again = await client.post(
        "/api/nodes", json={"provider": "ssh", "name": "web-1", "host": "127.0.0.1"}
    )
    assert again.status_code == 202 and again.json()["node_id"] != node_id
    assert (await _node(client, node_id))["status"] == "decommissioned"


@pytest.mark.spec("NOD-7")
async def test_the_private_key_never_leaves_the_vault(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    node_id = await _authorized_node(client, runtime, ssh_node)
    secret_id = await runtime.db.read(
        lambda conn: conn.execute(
            "SELECT key_secret_id FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()[0]
    )
    private = await runtime.db.read(lambda conn: runtime.vault.open(conn, secret_id))
    assert private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    body_lines = [line for line in private.decode().splitlines() if "-----" not in line]
    needles = [line.encode() for line in body_lines if len(line) >= 20]
    assert needles
    seen = b""
    for path in ("/api/nodes", f"/api/nodes/{node_id}", "/api/events?limit=500", "/api/audit"):
        seen += (await client.get(path)).content
    jobs = (await client.get("/api/jobs", params={"node_id": node_id})).json()["items"]
    for item in jobs:
        seen += (await client.get(f"/api/jobs/{item['id']}/log")).content
    await runtime.db.checkpoint()
    data_dir = runtime.config.data_dir
    for path in data_dir.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            seen += path.read_bytes()
    assert not [n for n in needles if n in seen]


@pytest.mark.spec("NOD-8")
async def test_bad_registrations_are_refused_and_change_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    bad = [
        {"name": "Web_1", "host": "127.0.0.1"},
        {"name": "web-", "host": "127.0.0.1"},
        {"name": "w" * 64, "host": "127.0.0.1"},
        {"name": "web-1", "host": "-oProxyCommand=x"},
        {"name": "web-1", "host": "127.0.0.1", "ssh_port": 65536},
        {"name": "web-1", "host": "user@127.0.0.1"},
        {"name": "web-1", "host": "127.0.0.1", "ssh_port": 0},
        {"name": "web-1", "host": "127.0.0.1", "ssh_user": "Root"},
        {"name": "web-1", "host": "127.0.0.1", "provider": "hetzner"},
        {"name": "web-1", "host": "127.0.0.1", "password": "hunter2"},
        {"name": "web-1", "host": "127.0.0.1", "ssh_port": "22"},  # a port is a number
    ]
    for body in bad:
        reply = await client.post("/api/nodes", json={"provider": "ssh", **body})
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_request"), body
        assert reply.json()["details"], body  # names what is wrong
    listing = (await client.get("/api/nodes")).json()
    assert listing == {"items": [], "next_before": None, "has_more": False}
    closed = free_port()
    await _register(client, name="web-1", host="127.0.0.1", ssh_port=closed)
    again = await client.post(
        "/api/nodes", json={"provider": "ssh", "name": "web-1", "host": "127.0.0.2"}
    )
    assert (again.status_code, again.json()["code"]) == (409, "node_exists")
    missing = await client.get(f"/api/nodes/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


@pytest.mark.spec("NOD-9")
async def test_nodes_are_listed_newest_first_with_filters_and_paging(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    closed = free_port()
    ids = [
        (await _register(client, name=f"n{i}", host="127.0.0.1", ssh_port=closed))["node_id"]
        for i in range(5)
    ]
    first = (await client.get("/api/nodes", params={"limit": 2})).json()
    assert [n["id"] for n in first["items"]] == ids[::-1][:2] and first["has_more"]
    rest = (
        await client.get("/api/nodes", params={"limit": 10, "before": first["next_before"]})
    ).json()
    assert [n["id"] for n in rest["items"]] == ids[::-1][2:] and not rest["has_more"]
    pending = (await client.get("/api/nodes", params={"status": "pending"})).json()
    assert len(pending["items"]) == 5
    assert (await client.get("/api/nodes", params={"status": "active"})).json()["items"] == []
    bad = await client.get("/api/nodes", params={"status": "happy"})
    assert bad.status_code == 400


@pytest.mark.spec("NOD-18")
async def test_facts_come_from_a_direct_query_of_the_node(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode
) -> None:
    closed = free_port()
    unchecked = await _register(client, name="fresh", host="127.0.0.1", ssh_port=closed)
    early = await client.get(f"/api/nodes/{unchecked['node_id']}/facts")
    assert (early.status_code, early.json()["code"]) == (409, "node_not_ready")
    node_id = await _authorized_node(client, runtime, ssh_node)
    jobs_before = (await client.get("/api/jobs", params={"node_id": node_id})).json()["items"]
    reply = await client.get(f"/api/nodes/{node_id}/facts")
    assert reply.status_code == 200, reply.text
    found = reply.json()
    assert found["cpus"] >= 1 and found["memory_mb"] > 0 and found["disk_gb"] > 0
    assert found["kernel"] and found["os"] != "unknown" and found["uptime_seconds"] > 0
    assert set(found["services"]) >= {"nginx", "mariadb", "redis-server"}
    # php-fpm by the node's PHP version (php8.2-fpm on Debian 12), or plain when it has none.
    (php,) = [s for s in found["services"] if s.startswith("php")]
    assert re.fullmatch(r"php([0-9]+\.[0-9]+)?-fpm", php), found["services"]
    assert all(state for state in found["services"].values())
    jobs_after = (await client.get("/api/jobs", params={"node_id": node_id})).json()["items"]
    assert len(jobs_after) == len(jobs_before)  # no job, no lock
    ssh_node.stop()  # the node went away
    gone = await client.get(f"/api/nodes/{node_id}/facts")
    assert (gone.status_code, gone.json()["code"]) == (502, "node_unreachable")
    assert gone.json()["details"]["reason"] == "node_unreachable"


@pytest.mark.spec("NOD-21")
async def test_a_node_that_is_not_ready_is_not_provisioned(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    accepted = await _register(client, name="raw", host="127.0.0.1", ssh_port=free_port())
    before = (await client.get("/api/jobs", params={"node_id": accepted["node_id"]})).json()
    refused = await client.post(f"/api/nodes/{accepted['node_id']}/provision")
    assert (refused.status_code, refused.json()["code"]) == (409, "node_not_ready")
    after = (await client.get("/api/jobs", params={"node_id": accepted["node_id"]})).json()
    assert len(after["items"]) == len(before["items"])  # nothing queued
    assert (await _node(client, accepted["node_id"]))["status"] == "pending"


async def _event_count(runtime: Runtime) -> int:
    return int(
        await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone()[0])
    )


@pytest.mark.spec("NOD-22", "NOD-23")
async def test_refusals_record_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    before = await _event_count(runtime)
    for body, field in (
        ({"provider": "docker", "name": "lab", "memory_mb": 64}, "memory_mb"),
        ({"provider": "docker", "name": "lab", "cpus": 0.1}, "cpus"),
        ({"provider": "docker", "name": "lab", "pids": 100000}, "pids"),
        ({"provider": "docker", "name": "lab", "memory_mb": "512"}, "memory_mb"),
        ({"provider": "docker", "name": "lab", "cpus": "2"}, "cpus"),
        ({"provider": "docker", "name": "lab", "pids": "128"}, "pids"),
        ({"provider": "docker", "name": "lab", "init": "upstart"}, "init"),
    ):
        reply = await client.post("/api/nodes", json=body)
        assert reply.status_code == 400, reply.text
        assert [e["field"] for e in reply.json()["details"]["errors"]] == [field]
    # This runtime has no Docker engine configured (serve's default).
    reply = await client.post("/api/nodes", json={"provider": "docker", "name": "lab"})
    assert reply.status_code == 409 and reply.json()["code"] == "provider_unavailable"
    assert "--docker-host" in reply.json()["details"]["hint"]
    assert await _event_count(runtime) == before
    # An ssh node has no machine Pressluft starts or stops.
    node = await client.post(
        "/api/nodes", json={"provider": "ssh", "name": "byo", "host": "127.0.0.1", "ssh_port": 9}
    )
    node_id = node.json()["node_id"]
    for action in ("start", "stop"):
        reply = await client.post(f"/api/nodes/{node_id}/{action}")
        assert reply.status_code == 409 and reply.json()["code"] == "provider_unsupported"
    view = (await client.get(f"/api/nodes/{node_id}")).json()
    assert (view["resources"], view["container"], view["ports"]) == (None, None, None)


@pytest.mark.spec("NOD-39")
def test_a_systemd_lab_node_needs_the_lab_systemd_setting() -> None:
    request = msgspec.convert(
        {"provider": "docker", "name": "lab", "init": "systemd"}, RegisterNodeRequest
    )
    refusing = Providers("unix:///nonexistent/docker.sock", "pressluft-node:test", False)
    with pytest.raises(ProviderUnavailable, match="systemd as PID 1") as refused:
        register_command(request, None, refusing, Meta(actor="test"))  # type: ignore[arg-type]
    assert "--lab-systemd" in str(refused.value.details)
    allowing = Providers("unix:///nonexistent/docker.sock", "pressluft-node:test", True)
    assert callable(register_command(request, None, allowing, Meta(actor="test")))  # type: ignore[arg-type]
    plain = msgspec.convert({"provider": "docker", "name": "lab"}, RegisterNodeRequest)
    assert callable(register_command(plain, None, refusing, Meta(actor="test")))  # type: ignore[arg-type]
