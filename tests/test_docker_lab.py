"""Lab nodes on a real (private) Docker engine: labels, loopback-only ports, enforced
limits, deaths reported with their exit code, orphans listed, destroy."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from pressluft.nodes.docker import LABEL_MANAGED, LABEL_NODE, DockerLab, LimitNotEnforced, Limits
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
