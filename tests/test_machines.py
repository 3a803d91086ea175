"""The docker provider behind the API, against a private dockerd and a busybox image
(no sshd: what needs a real node is in tests/test_node_image.py): a missing node
image, orphans reported once, deaths missed while no daemon watched. (Refusals on
a daemon without an engine: tests/test_nodes.py.)"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import msgspec
import pytest

from pressluft.clock import FrozenClock
from pressluft.config import Config, resolve
from pressluft.contexts.nodes.commands import decommission_command, stop_command
from pressluft.contexts.nodes.events import (
    NodeContainerCreated,
    NodePorts,
    NodeRegistered,
    NodeResources,
)
from pressluft.contexts.nodes.service import Nodes
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.jobs.queue import JobSpec, enqueue
from pressluft.runners.docker import LABEL_NODE, DockerLab, Limits
from pressluft.runtime import Runtime
from tests.support.daemon import run_cli
from tests.support.dockerd import PrivateDockerd
from tests.support.jobs import log_lines, until, until_ended
from tests.support.nodes import recorded_node_events

ABSENT_IMAGE = "pressluft-node:absent"
LIMITS = Limits(memory_mb=128, cpus=0.5, pids=64)


def _docker_config(data_dir: Path, engine: tuple[PrivateDockerd, str]) -> Config:
    overrides = {
        "data_dir": str(data_dir),
        "cpu_affinity": "off",
        "docker_host": engine[0].url,
        "node_image": ABSENT_IMAGE,
    }
    return resolve("serve", overrides, environ={})[0]


@pytest.fixture
def config(data_dir: Path, engine: tuple[PrivateDockerd, str]) -> Config:
    """This module's runtimes have the private dockerd as their engine."""
    return _docker_config(data_dir, engine)


@pytest.mark.spec("NOD-23")
async def test_a_missing_node_image_fails_once_and_leaves_no_container(
    client: httpx.AsyncClient, runtime: Runtime, lab: DockerLab
) -> None:
    reply = await client.post(
        "/api/nodes", json={"provider": "docker", "name": "lab", "memory_mb": 512}
    )
    assert reply.status_code == 202, reply.text
    accepted = reply.json()
    view = await until_ended(runtime, accepted["job_id"])
    assert (view.status, view.error_code, view.attempt_count) == (
        "failed",
        "NODE_IMAGE_MISSING",
        1,
    )
    assert "pressluft node-image build" in (view.error_message or "")
    assert lab.managed() == []
    node = (await client.get(f"/api/nodes/{accepted['node_id']}")).json()
    assert node["provider"] == "docker" and node["status"] == "pending"
    assert node["resources"] == {"memory_mb": 512, "cpus": 1.0, "pids": 1024, "init": "plain"}
    assert node["container"] is None and node["ports"] is None
    # Starting a node whose container was never created: nothing to start.
    started = await client.post(f"/api/nodes/{accepted['node_id']}/start")
    assert started.status_code == 409 and started.json()["code"] == "node_not_ready"


async def _reconcile(runtime: Runtime) -> str:
    def command(tx: object) -> str:
        spec = JobSpec(job_type="docker_reconcile", max_attempts=1, timeout_seconds=120)
        return enqueue(tx, spec, Meta(actor="test:machines"))  # type: ignore[arg-type]

    job_id = await runtime.db.write(command)
    view = await until_ended(runtime, job_id)
    assert view.status == "succeeded", view.error_message
    return job_id


async def _orphans(runtime: Runtime) -> list[tuple[str, str]]:
    rows = await runtime.db.read(
        lambda c: c.execute(
            "SELECT stream, json_extract(data, '$.labelled_node_id') FROM events"
            " WHERE type = 'node.orphan_detected' ORDER BY seq"
        ).fetchall()
    )
    return [(str(a), str(b)) for a, b in rows]


@pytest.mark.spec("NOD-25")
async def test_orphans_are_reported_once_and_never_deleted(
    runtime: Runtime, lab: DockerLab, engine: tuple[PrivateDockerd, str]
) -> None:
    stray = str(uuid.uuid4())
    container_id = lab.create(stray, "stray", engine[1], LIMITS, command=["sleep", "3600"])
    # A docker node whose node_create made its container but has not recorded it yet
    # (the job is under way): its container is no orphan.
    creating = str(uuid.uuid4())
    lab.create(creating, "creating", engine[1], LIMITS, command=["sleep", "3600"])
    registered = NodeRegistered(
        node_id=creating,
        name="creating",
        provider="docker",
        host="127.0.0.1",
        ssh_port=22,
        ssh_user="root",
        key_secret_id="sec_test",
        public_key="ssh-ed25519 AAAA test",
        resources=NodeResources(memory_mb=128, cpus=0.5, pids=64),
    )
    await runtime.db.write(
        lambda tx: append(tx, f"node:{creating}", NO_STREAM, [registered], Meta(actor="test"))
    )
    first = await _reconcile(runtime)
    assert await _orphans(runtime) == [(f"orphan:{container_id}", stray)]
    text = "\n".join(t for _, _, t in await log_lines(runtime, first))
    assert "2 managed container(s); 1 new orphan" in text
    assert f"docker rm -f {container_id[:12]}" in text
    await _reconcile(runtime)
    assert len(await _orphans(runtime)) == 1  # reported once
    assert len(lab.managed()) == 2  # nothing deleted


async def _lab_node_recorded_running(
    runtime: Runtime, node_id: str, container_id: str, name: str = "lab-dead"
) -> None:
    """A docker node whose container is recorded as created and running (what
    `node_create` records; the busybox container has no sshd to check)."""

    def command(tx: object) -> None:
        meta = Meta(actor="test:machines")
        registered = NodeRegistered(
            node_id=node_id,
            name=name,
            provider="docker",
            host="127.0.0.1",
            ssh_port=22,
            ssh_user="root",
            key_secret_id="sec_test",
            public_key="ssh-ed25519 AAAA test",
            resources=NodeResources(memory_mb=128, cpus=0.5, pids=64),
        )
        created = NodeContainerCreated(
            node_id=node_id,
            container_id=container_id,
            image="busybox",
            ports=NodePorts(ssh=2222, http=8080, https=8443),
        )
        append(tx, f"node:{node_id}", NO_STREAM, [registered, created], meta)  # type: ignore[arg-type]

    await runtime.db.write(command)


async def _deaths(runtime: Runtime, node_id: str) -> list[int]:
    rows = await runtime.db.read(
        lambda c: c.execute(
            "SELECT json_extract(data, '$.exit_code') FROM events"
            " WHERE type = 'node.container_died' AND stream = ? ORDER BY seq",
            (f"node:{node_id}",),
        ).fetchall()
    )
    return [int(r[0]) for r in rows]


@pytest.mark.spec("NOD-26")
async def test_deaths_while_no_daemon_watched_are_recorded_once(
    data_dir: Path, engine: tuple[PrivateDockerd, str], lab: DockerLab, clock: FrozenClock
) -> None:
    node_id = str(uuid.uuid4())
    container_id = lab.create(node_id, "lab-dead", engine[1], LIMITS, command=["sleep", "3600"])
    config = _docker_config(data_dir, engine)
    runtime = Runtime(config, clock)
    await runtime.start()
    try:
        await _lab_node_recorded_running(runtime, node_id, container_id)
    finally:
        await runtime.stop()
    lab.client.api.kill(container_id)  # no daemon is running
    assert [s.exit_code for s in lab.managed()] == [137]
    for round_ in range(2):  # the first start records it; the second finds nothing new
        runtime = Runtime(config, clock)
        await runtime.start()
        try:
            # A witness dies while the daemon watches: once its death is recorded, the
            # watcher follows the stream and has replayed everything before.
            witness = str(uuid.uuid4())
            witness_container = lab.create(
                witness, f"witness-{round_}", engine[1], LIMITS, command=["sleep", "3600"]
            )
            await _lab_node_recorded_running(
                runtime, witness, witness_container, name=f"witness-{round_}"
            )
            lab.client.api.kill(witness_container)

            async def witnessed(runtime: Runtime = runtime, witness: str = witness) -> bool:
                return bool(await _deaths(runtime, witness))

            await until(witnessed, within=30)
            node = await runtime.db.read(
                lambda c: c.execute(
                    "SELECT container_state, container_exit_code, reason_codes_json FROM nodes"
                    " WHERE id = ?",
                    (node_id,),
                ).fetchone()
            )
            assert tuple(node) == ("exited", 137, '["container_stopped"]')
            assert await _deaths(runtime, node_id) == [137]
            assert await _deaths(runtime, witness) == [137]
        finally:
            await runtime.stop()
    inspected = lab.client.api.inspect_container(container_id)
    assert inspected["Config"]["Labels"][LABEL_NODE] == node_id


@pytest.mark.spec("NOD-34")
async def test_a_stop_or_removal_pressluft_asked_for_is_no_death(
    runtime: Runtime, lab: DockerLab, engine: tuple[PrivateDockerd, str]
) -> None:
    # sleep ends on TERM (tini forwards it): `docker stop` needs no 10 s kill.
    command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    stopped, removed = str(uuid.uuid4()), str(uuid.uuid4())
    for node_id, name in ((stopped, "lab-stopped"), (removed, "lab-removed")):
        container_id = lab.create(node_id, name, engine[1], LIMITS, command=command)
        await _lab_node_recorded_running(runtime, node_id, container_id, name=name)
    meta = Meta(actor="test:machines")
    stop = await runtime.db.write(stop_command(stopped, meta))
    assert (await until_ended(runtime, stop.job_id)).status == "succeeded"
    # A running container removed by decommissioning (the engine kills it: exit 137).
    gone = await runtime.db.write(decommission_command(removed, "lab-removed", meta))
    assert (await until_ended(runtime, gone.job_id)).status == "succeeded"
    # A witness killed afterwards: once its death is recorded, the watcher has seen the
    # stop's and the removal's `die` events before it.
    witness = str(uuid.uuid4())
    witness_container = lab.create(witness, "witness", engine[1], LIMITS, command=command)
    await _lab_node_recorded_running(runtime, witness, witness_container, name="witness")
    lab.client.api.kill(witness_container)

    async def witnessed() -> bool:
        return bool(await _deaths(runtime, witness))

    await until(witnessed, within=30)
    assert await _deaths(runtime, stopped) == []
    assert await _deaths(runtime, removed) == []
    states = await runtime.db.read(
        lambda c: c.execute(
            "SELECT id, container_state FROM nodes WHERE id IN (?, ?)", (stopped, removed)
        ).fetchall()
    )
    assert {str(a): str(b) for a, b in states} == {stopped: "stopped", removed: "removed"}
    # Started again (as node_start does; its ssh wait needs a real node), the
    # container's next death is a death.
    provider = runtime.service("nodes", Nodes).providers.docker
    assert provider is not None
    await asyncio.to_thread(provider.start, stopped)
    lab.client.api.kill(lab.container_id(stopped))

    async def died() -> bool:
        return bool(await _deaths(runtime, stopped))

    await until(died, within=30)


@pytest.mark.spec("DMN-9")
def test_doctor_names_the_engine_and_the_missing_node_image(
    cli_env: dict[str, str], engine: tuple[PrivateDockerd, str]
) -> None:
    result = run_cli("doctor", env={**cli_env, "DOCKER_HOST": engine[0].url})
    out = result.stdout
    assert f"{engine[0].url} reachable" in out, out
    assert "pressluft node-image build --docker-host " + engine[0].url in out, out


@pytest.mark.spec("DMN-9")
def test_doctor_checks_the_engine_named_by_docker_host(
    cli_env: dict[str, str], engine: tuple[PrivateDockerd, str]
) -> None:
    # No DOCKER_HOST: the engine is found only through the option (as after `sudo`,
    # which drops the variable).
    env = {k: v for k, v in cli_env.items() if k != "DOCKER_HOST"}
    result = run_cli("doctor", "--docker-host", engine[0].url, env=env)
    out = result.stdout
    line = next(x for x in out.splitlines() if "docker engine" in x)
    assert line.startswith("OK") and f"{engine[0].url} reachable" in line, out
    assert "pressluft node-image build --docker-host " + engine[0].url in out, out


@pytest.mark.spec("NOD-35")
async def test_a_container_without_fixed_web_ports_hosts_nothing_new(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A lab node whose container predates fixed web ports (its start recorded that):
    # a site's URL with its current HTTP port would break at the next start.
    node_id = str(uuid.uuid4())
    events = recorded_node_events(node_id)
    registered = events[0]
    assert isinstance(registered, NodeRegistered)
    docker_node = msgspec.structs.replace(
        registered,
        provider="docker",
        resources=NodeResources(memory_mb=128, cpus=0.5, pids=64),
    )
    created = NodeContainerCreated(
        node_id=node_id,
        container_id="c" * 64,
        image="busybox",
        ports=NodePorts(ssh=2222, http=8080, https=8443, web_fixed=False),
    )

    def command(tx: object) -> None:
        stream = [docker_node, created, *events[1:]]
        append(tx, f"node:{node_id}", NO_STREAM, stream, Meta(actor="test:machines"))  # type: ignore[arg-type]

    await runtime.db.write(command)
    view = (await client.get(f"/api/nodes/{node_id}")).json()
    assert (view["status"], view["readiness"]["is_ready"]) == ("active", True), view
    assert view["ports"] == {"ssh": 2222, "http": 8080, "https": 8443, "web_fixed": False}
    reply = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": node_id})
    assert (reply.status_code, reply.json()["code"]) == (409, "node_not_ready"), reply.text
    assert reply.json()["details"]["hint"] == "decommission the node and create it again"
    assert (
        await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM sites").fetchone()[0]) == 0
    )
