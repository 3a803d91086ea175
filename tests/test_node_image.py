"""The offline node image, end to end: `pressluft node-image build` (debootstrap, the
stack baked in, cached by a hash of its inputs) into a private dockerd; a lab node
from it comes up with its services, and Pressluft registers, checks and queries it
like any server."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pressluft.nodes.docker import DockerLab, Limits
from pressluft.nodes.images import ImageInputs, image_tag
from pressluft.runtime import Runtime
from tests.support.dockerd import PrivateDockerd
from tests.support.jobs import log_lines, until, until_ended

CACHE = Path(
    os.environ.get("PRESSLUFT_NODE_IMAGE_CACHE", Path.home() / ".cache/pressluft/node-images")
)


def _build(dockerd: PrivateDockerd) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "pressluft"
    return subprocess.run(
        [str(cli), "node-image", "build", "--cache-dir", str(CACHE), "--docker-host", dockerd.url],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


@pytest.fixture(scope="module")
def image_engine() -> Iterator[tuple[PrivateDockerd, str]]:
    dockerd = PrivateDockerd().start()
    try:
        built = _build(dockerd)
        assert built.returncode == 0, built.stderr[-3000:]
        yield dockerd, built.stdout.strip()
    finally:
        dockerd.stop()


def _authorize(lab: DockerLab, container_id: str, public_key: str) -> None:
    """What the operator's authorize command does, through the engine."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        ssh_dir = tarfile.TarInfo(".ssh")
        ssh_dir.type, ssh_dir.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(ssh_dir)
        data = (public_key + "\n").encode()
        keys = tarfile.TarInfo(".ssh/authorized_keys")
        keys.size, keys.mode = len(data), 0o600
        tar.addfile(keys, io.BytesIO(data))
    assert lab.client.api.put_archive(container_id, "/root", buffer.getvalue())


def _wait_for_ssh(port: int, within: float = 90.0) -> None:
    """Until the node's sshd sends its banner (a readiness condition, not a timing claim)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no sshd banner on port {port}")
        time.sleep(0.2)


@pytest.mark.spec("NOD-19")
def test_the_image_is_named_by_its_inputs_and_built_once(
    image_engine: tuple[PrivateDockerd, str],
) -> None:
    dockerd, tag = image_engine
    assert tag == image_tag(ImageInputs())
    assert image_tag(ImageInputs(epoch="1")) != tag  # any input changes the name
    again = _build(dockerd)
    assert again.returncode == 0 and again.stdout.strip() == tag
    assert "cached" in again.stderr and "present " + tag in again.stderr


def _empty_reply(port: int, host: str) -> bool:
    """True when the server closes the connection without any HTTP response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return sock.recv(1024) == b""


@pytest.mark.spec("NOD-20", "NOD-21")
async def test_a_lab_node_from_the_image_is_checked_and_queried_like_any_server(
    image_engine: tuple[PrivateDockerd, str], client: httpx.AsyncClient, runtime: Runtime
) -> None:
    dockerd, tag = image_engine
    lab = DockerLab(dockerd.url)
    node_id = str(uuid.uuid4())
    try:
        container_id = lab.create(
            node_id, "lab-web", tag, Limits(memory_mb=1024, cpus=1, pids=1024)
        )
        ports = lab.published(node_id)
        reply = await client.post(
            "/api/nodes",
            json={"provider": "ssh", "name": "lab-web", "host": "127.0.0.1", "ssh_port": ports.ssh},
        )
        assert reply.status_code == 202, reply.text
        registered = reply.json()
        node = (await client.get(f"/api/nodes/{registered['node_id']}")).json()
        _authorize(lab, container_id, node["public_key"])
        await asyncio.to_thread(_wait_for_ssh, ports.ssh)  # node-init starts sshd last
        checked = (await client.post(f"/api/nodes/{registered['node_id']}/check")).json()
        view = await until_ended(runtime, checked["job_id"], within=60)
        assert view.status == "succeeded", view.error_message
        node = (await client.get(f"/api/nodes/{registered['node_id']}")).json()
        assert node["readiness"]["is_ready"] is True
        facts = (await client.get(f"/api/nodes/{registered['node_id']}/facts")).json()
        assert "Debian" in facts["os"]
        for service in ("nginx", "php8.2-fpm", "mariadb", "redis-server", "ssh"):
            assert facts["services"][service] == "active", facts["services"]

        # NOD-21: provisioning with the real playbook; a second run changes nothing.
        node_url = f"/api/nodes/{registered['node_id']}"
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
    finally:
        lab.destroy(node_id)
        lab.close()
