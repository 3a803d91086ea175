"""Lab nodes on a real (private) Docker engine: labels, loopback-only ports, enforced
limits, deaths reported with their exit code, orphans listed, destroy."""

from __future__ import annotations

import threading
import time
import uuid

import docker
import pytest

from pressluft.runners.docker import (
    LABEL_MANAGED,
    LABEL_NODE,
    DockerLab,
    LimitNotEnforced,
    Limits,
    ephemeral_range,
)
from tests.support.dockerd import PrivateDockerd

LIMITS = Limits(memory_mb=128, cpus=0.5, pids=64)


@pytest.mark.spec("NOD-15")
def test_a_lab_node_is_labelled_limited_and_published_on_loopback_only(
    lab: DockerLab, engine: tuple[PrivateDockerd, str]
) -> None:
    node_id = str(uuid.uuid4())
    container_id = lab.create(node_id, "lab-1", engine[1], LIMITS, command=["sleep", "3600"])
    inspected = lab.client.api.inspect_container(container_id)
    labels = inspected["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "true" and labels[LABEL_NODE] == node_id
    host = inspected["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (128 * 2**20, 5 * 10**8, 64)
    for bindings in inspected["NetworkSettings"]["Ports"].values():
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    ports = lab.published(node_id)
    assert len({ports.ssh, ports.http, ports.https}) == 3
    other = str(uuid.uuid4())
    lab.create(other, "lab-1b", engine[1], LIMITS, command=["sleep", "3600"])
    assert sorted(s.node_id for s in lab.managed()) == sorted([node_id, other])
    assert lab.destroy(node_id)
    assert [s.node_id for s in lab.managed()] == [other]  # exactly that one went
    assert lab.destroy(node_id) is False  # nothing left to remove


@pytest.mark.spec("NOD-16")
def test_a_limit_the_engine_cannot_enforce_is_refused(
    lab: DockerLab, engine: tuple[PrivateDockerd, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_info = lab.client.info

    def without_pids_limit() -> dict[str, object]:
        info = dict(real_info())
        info["PidsLimit"] = False  # as an engine without the pids cgroup reports it
        return info

    with pytest.raises(LimitNotEnforced, match="positive"):  # 0 would mean "no limit"
        lab.create(str(uuid.uuid4()), "lab-0", engine[1], Limits(0, 0.5, 64))
    monkeypatch.setattr(lab.client, "info", without_pids_limit)
    with pytest.raises(LimitNotEnforced, match="pids"):
        lab.create(str(uuid.uuid4()), "lab-2", engine[1], LIMITS, command=["sleep", "3600"])
    assert lab.managed() == []  # nothing was created
    monkeypatch.undo()

    # The engine creates the container but warns that a limit is not applied (the
    # SDK's high-level API would drop the warning), or applies another value: the
    # real container it created is removed again.
    real_create = lab.client.api.create_container

    def warning(*args: object, **kwargs: object) -> dict[str, object]:
        created = dict(real_create(*args, **kwargs))
        created["Warnings"] = ["Your kernel does not support memory limit capabilities"]
        return created

    monkeypatch.setattr(lab.client.api, "create_container", warning)
    with pytest.raises(LimitNotEnforced, match="memory limit"):
        lab.create(str(uuid.uuid4()), "lab-w", engine[1], LIMITS, command=["sleep", "3600"])
    assert lab.managed() == []
    monkeypatch.undo()
    real_inspect = lab.client.api.inspect_container

    def other_pids(container: str) -> dict[str, object]:
        inspected = dict(real_inspect(container))
        inspected["HostConfig"] = {**inspected["HostConfig"], "PidsLimit": 32}
        return inspected

    monkeypatch.setattr(lab.client.api, "inspect_container", other_pids)
    with pytest.raises(LimitNotEnforced, match="PidsLimit"):
        lab.create(str(uuid.uuid4()), "lab-d", engine[1], LIMITS, command=["sleep", "3600"])
    monkeypatch.undo()
    assert lab.managed() == []


@pytest.mark.spec("NOD-17")
def test_a_killed_lab_node_is_reported_with_its_exit_code(
    lab: DockerLab, engine: tuple[PrivateDockerd, str]
) -> None:
    deaths: list[tuple[str, int]] = []
    died = threading.Event()
    stop = threading.Event()

    watched: list[str] = []

    def on_death(node_id: str, exit_code: int, at: int) -> None:
        assert at >= since
        deaths.append((node_id, exit_code))  # earlier tests' removals are in it too
        if node_id in watched:
            died.set()

    since = int(time.time()) - 1
    watcher = threading.Thread(target=lab.watch_deaths, args=(on_death, stop, since), daemon=True)
    watcher.start()
    node_id = str(uuid.uuid4())
    watched.append(node_id)
    container_id = lab.create(node_id, "lab-3", engine[1], LIMITS, command=["sleep", "3600"])
    first = lab.published(node_id)
    lab.client.api.kill(container_id)
    assert died.wait(30)
    assert [d for d in deaths if d[0] == node_id] == [(node_id, 137)]
    states = lab.managed()
    assert [(s.node_id, s.status, s.exit_code) for s in states] == [(node_id, "exited", 137)]
    stop.set()
    watcher.join(10)
    assert not watcher.is_alive()  # stopping the watch ends its thread
    # A node started again publishes (new) loopback ports: re-read them per job.
    lab.start(node_id)
    inspected = lab.client.api.inspect_container(container_id)
    for bindings in inspected["NetworkSettings"]["Ports"].values():
        assert bindings and all(b["HostIp"] == "127.0.0.1" for b in bindings)
    assert lab.published(node_id).ssh > 0
    # HTTP and HTTPS keep their ports: the URLs of the node's sites carry the HTTP port.
    again = lab.published(node_id)
    assert (again.http, again.https) == (first.http, first.https) and again.http != again.https


@pytest.mark.spec("NOD-35")
def test_fixed_web_ports_are_outside_the_range_the_engine_hands_out(
    lab: DockerLab, engine: tuple[PrivateDockerd, str]
) -> None:
    # The engine gives every `None` binding (each lab node's SSH at every start) a port
    # of the kernel's ephemeral range: a fixed port from it could be given to another
    # node's SSH while this node is stopped, and this node's start would then fail.
    low, high = ephemeral_range()
    node_id = str(uuid.uuid4())
    lab.create(node_id, "lab-fixed", engine[1], LIMITS, command=["sleep", "3600"])
    ports = lab.published(node_id)
    assert ports.web_fixed
    assert ports.http != ports.https
    outside = [p for p in (ports.http, ports.https) if 1024 < p < 65536 and not low <= p <= high]
    assert outside == [ports.http, ports.https], (ports, low, high)
    assert low <= ports.ssh <= high  # (the engine's choice: that range)
    # A container created before fixed web ports (the engine chooses them at every
    # start) is recognized: its sites' URLs would break at its next start.
    legacy = str(uuid.uuid4())
    api = lab.client.api
    created = api.create_container(
        engine[1],
        command=["sleep", "3600"],
        name=f"pressluft-{legacy}",
        labels={LABEL_MANAGED: "true", LABEL_NODE: legacy},
        ports=[22, 80, 443],
        host_config=api.create_host_config(
            port_bindings={p: ("127.0.0.1", None) for p in (22, 80, 443)},
            network_mode=lab.network,
        ),
    )
    api.start(created["Id"])
    assert lab.published(legacy).web_fixed is False


@pytest.mark.spec("NOD-34")
def test_a_failed_or_undone_stop_leaves_the_next_death_a_death(
    lab: DockerLab, engine: tuple[PrivateDockerd, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    node_id = str(uuid.uuid4())
    container_id = lab.create(node_id, "lab-ask", engine[1], LIMITS, command=["sleep", "3600"])

    # A stop that fails (the engine answers an error; a removal the same) did not stop
    # the container: the marks are gone, a later die is a death.
    def refused(*args: object, **kwargs: object) -> None:
        raise docker.errors.APIError("the engine refused")

    with monkeypatch.context() as patched:
        patched.setattr(lab.client.api, "stop", refused)
        patched.setattr(lab.client.api, "remove_container", refused)
        with pytest.raises(docker.errors.APIError):
            lab.stop(node_id, timeout=1)
        assert not lab.asked_to_die(container_id)
        with pytest.raises(docker.errors.APIError):
            lab.destroy(node_id)
        assert not lab.asked_to_die(container_id)
    # Stopped on request, then started outside Pressluft (`docker start`): once the
    # engine reports the start, a die is a death again.
    deaths: list[tuple[str, int]] = []
    died = threading.Event()
    stop = threading.Event()

    def on_death(dead: str, exit_code: int, at: int) -> None:
        if dead == node_id:
            deaths.append((dead, exit_code))
            died.set()

    since = int(time.time()) - 1
    watcher = threading.Thread(target=lab.watch_deaths, args=(on_death, stop, since), daemon=True)
    watcher.start()
    try:
        lab.stop(node_id, timeout=1)
        assert lab.asked_to_die(container_id)
        lab.client.api.start(container_id)  # as `docker start` does
        lab.client.api.kill(container_id)
        assert died.wait(30)
        assert deaths == [(node_id, 137)]  # the requested stop's die is no death
    finally:
        stop.set()
        watcher.join(10)
