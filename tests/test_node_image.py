"""The offline node image, end to end: `pressluft node-image build` (debootstrap, the
stack baked in, cached by a hash of its inputs) into a private dockerd; a lab node
registered through the API (`provider: docker`) comes up from it with its
services, is checked, queried and provisioned like any server, and lives through
a kill, a start, a stop and its decommissioning."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest

from pressluft.config import Config, resolve
from pressluft.runners.docker import LABEL_NODE, DockerLab
from pressluft.runners.images import ImageInputs, image_tag
from pressluft.runtime import Runtime
from tests.support.dockerd import PrivateDockerd, build_node_image
from tests.support.jobs import log_lines, until, until_ended


@pytest.mark.spec("NOD-19")
def test_the_image_is_named_by_its_inputs_and_built_once(
    image_engine: tuple[PrivateDockerd, str],
) -> None:
    dockerd, tag = image_engine
    assert tag == image_tag(ImageInputs())
    assert image_tag(ImageInputs(epoch="1")) != tag  # any input changes the name
    again = build_node_image(dockerd)
    assert again.returncode == 0 and again.stdout.strip() == tag
    assert "cached" in again.stderr and "present " + tag in again.stderr


def _empty_reply(port: int, host: str) -> bool:
    """True when the server closes the connection without any HTTP response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return sock.recv(1024) == b""


@pytest.fixture
def config(data_dir: Path, image_engine: tuple[PrivateDockerd, str]) -> Config:
    """This module's runtimes run lab nodes on the private dockerd, from the image."""
    dockerd, tag = image_engine
    overrides = {
        "data_dir": str(data_dir),
        "cpu_affinity": "off",
        "docker_host": dockerd.url,
        "node_image": tag,
    }
    return resolve("serve", overrides, environ={})[0]


async def _events(runtime: Runtime, node_id: str, kind: str) -> list[dict[str, object]]:
    rows = await runtime.db.read(
        lambda c: c.execute(
            "SELECT data FROM events WHERE stream = ? AND type = ? ORDER BY seq",
            (f"node:{node_id}", kind),
        ).fetchall()
    )
    return [json.loads(r[0]) for r in rows]


@pytest.mark.spec("NOD-20", "NOD-21", "NOD-22", "NOD-24")
async def test_a_lab_node_from_the_image_lives_through_the_api(
    image_engine: tuple[PrivateDockerd, str], client: httpx.AsyncClient, runtime: Runtime
) -> None:
    dockerd, tag = image_engine
    lab = DockerLab(dockerd.url)
    try:
        # NOD-22: a lab node through the API: container, key authorized, checked.
        reply = await client.post(
            "/api/nodes",
            json={"provider": "docker", "name": "lab-web", "memory_mb": 1024, "cpus": 1,
                  "pids": 1024},
        )  # fmt: skip
        assert reply.status_code == 202, reply.text
        registered = reply.json()
        node_id = registered["node_id"]
        node_url = f"/api/nodes/{node_id}"
        view = await until_ended(runtime, registered["job_id"], within=300)
        log = "\n".join(t for _, _, t in await log_lines(runtime, registered["job_id"]))
        assert view.status == "succeeded", log[-3000:]
        node = (await client.get(node_url)).json()
        assert node["readiness"]["is_ready"] is True and node["host_key_fingerprint"]
        assert node["resources"] == {"memory_mb": 1024, "cpus": 1.0, "pids": 1024, "init": "plain"}
        assert node["container"]["state"] == "running"
        ports = lab.published(node_id)
        assert node["ports"] == {"ssh": ports.ssh, "http": ports.http, "https": ports.https}
        assert node["ssh_port"] == ports.ssh and node["host"] == "127.0.0.1"
        inspected = lab.client.api.inspect_container(node["container"]["id"])
        assert inspected["Config"]["Labels"][LABEL_NODE] == node_id
        assert inspected["Config"]["Image"] == tag
        limits = inspected["HostConfig"]
        assert (limits["Memory"], limits["NanoCpus"], limits["PidsLimit"]) == (2**30, 10**9, 1024)

        # NOD-20: a server like any other — its facts over SSH.
        facts = (await client.get(f"{node_url}/facts")).json()
        assert "Debian" in facts["os"]
        for service in ("nginx", "php8.2-fpm", "mariadb", "redis-server", "ssh"):
            assert facts["services"][service] == "active", facts["services"]

        # NOD-21: provisioning with the real playbook; a second run changes nothing.
        for run in (1, 2):
            queued = await client.post(f"{node_url}/provision")
            assert queued.status_code == 202, queued.text
            job_id = queued.json()["job_id"]
            view = await until_ended(runtime, job_id, within=600)
            log = "\n".join(t for _, _, t in await log_lines(runtime, job_id))
            assert view.status == "succeeded", log[-4000:]
            node = (await client.get(node_url)).json()
            assert node["status"] == "active" and node["profile_revision"].startswith("sha256:")
            if run == 2:
                assert "changed=0" in log and "provisioned: profile" in log, log[-3000:]
        # A cancelled provisioning leaves the node `failed` (its state is unknown)
        # until it is provisioned again.
        queued = await client.post(f"{node_url}/provision")
        job_id = queued.json()["job_id"]

        async def playbook_running() -> bool:
            lines = await log_lines(runtime, job_id)
            return any(t.startswith("running node-provision.yml") for _, _, t in lines)

        await until(playbook_running, within=120)
        assert (await client.post(f"/api/jobs/{job_id}/cancel")).json()["status"] == "cancelled"
        assert (await client.get(node_url)).json()["status"] == "failed"
        again = (await client.post(f"{node_url}/provision")).json()
        assert (await until_ended(runtime, again["job_id"], within=600)).status == "succeeded"
        assert (await client.get(node_url)).json()["status"] == "active"
        # nginx's default server answers an unknown host with 444: the connection
        # is closed without a response (curl's "empty reply").
        assert await asyncio.to_thread(_empty_reply, ports.http, "unknown.example")
        facts = (await client.get(f"{node_url}/facts")).json()
        assert facts["services"]["nginx"] == "active"  # the empty reply is nginx's 444

        # NOD-24: `docker kill` → node.container_died (137); the node is unreachable.
        lab.client.api.kill(node["container"]["id"])

        async def died() -> bool:
            return bool(await _events(runtime, node_id, "node.container_died"))

        await until(died, within=60)
        assert [e["exit_code"] for e in await _events(runtime, node_id, "node.container_died")] == [
            137
        ]
        node = (await client.get(node_url)).json()
        assert node["status"] == "unreachable" and node["container"]["exit_code"] == 137
        assert node["readiness"]["reason_codes"] == ["container_stopped"]
        # Started again: new ports recorded, checked, active.
        started = (await client.post(f"{node_url}/start")).json()
        view = await until_ended(runtime, started["job_id"], within=300)
        assert view.status == "succeeded", view.error_message
        ports = lab.published(node_id)
        node = (await client.get(node_url)).json()
        assert node["ports"] == {"ssh": ports.ssh, "http": ports.http, "https": ports.https}
        assert node["status"] == "active" and node["readiness"]["is_ready"] is True
        stopped = (await client.post(f"{node_url}/stop")).json()
        assert (await until_ended(runtime, stopped["job_id"], within=120)).status == "succeeded"
        node = (await client.get(node_url)).json()
        assert node["container"]["state"] == "stopped" and node["status"] == "unreachable"
        # Decommissioning removes the container.
        gone = await client.delete(node_url, params={"confirm": "lab-web"})
        assert (await until_ended(runtime, gone.json()["job_id"], within=120)).status == "succeeded"
        assert [s.node_id for s in lab.managed() if s.node_id == node_id] == []
        assert await _events(runtime, node_id, "node.container_removed")
        node = (await client.get(node_url)).json()
        assert node["status"] == "decommissioned" and node["container"]["state"] == "removed"
    finally:
        for state in lab.managed():
            lab.destroy(state.node_id)
        lab.close()
