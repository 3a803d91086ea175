"""Local lab nodes: containers on a Docker engine (the docker SDK), for trying
Pressluft on a laptop and for tests.

A node's container carries the labels `pressluft.managed=true` and
`pressluft.node_id=<id>`, runs on a user-defined bridge network without
masquerading, publishes SSH, HTTP and HTTPS on 127.0.0.1 only — SSH on a port
the engine chooses at every start (read back per job), HTTP and HTTPS on ports
chosen once at creation, outside the kernel's ephemeral range the engine picks
from, and kept for the container's life (its sites' URLs carry
the HTTP port: `http://{uuid8}.localhost:{port}`) — and gets the resource limits asked
for — a limit the engine cannot enforce is refused (`LimitNotEnforced`), never
ignored: the engine's capabilities are checked first, its create warnings are
read (the SDK's high-level API drops them) and the applied limits are compared
with the request. All calls are blocking; callers run them in a thread.
"""

from __future__ import annotations

import io
import random
import socket
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
from docker.errors import NotFound

__all__ = [
    "INITS",
    "LABEL_MANAGED",
    "LABEL_NODE",
    "ContainerState",
    "DockerLab",
    "LimitNotEnforced",
    "Limits",
    "Published",
]

LABEL_MANAGED = "pressluft.managed"
LABEL_NODE = "pressluft.node_id"
NETWORK = "pressluft-nodes"


class LimitNotEnforced(ValueError):
    """The engine cannot enforce a requested resource limit."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpus: float
    pids: int


#: How a lab node's container boots: `plain` runs the image's command (`node-init`:
#: the init scripts, no systemd) under the engine's `--init`; `systemd` runs systemd
#: as PID 1, like a real server (units, journald, `systemctl`).
INITS = ("plain", "systemd")
SYSTEMD = "/lib/systemd/systemd"
#: How long a systemd lab node may take to stop its units before the engine kills it.
SYSTEMD_STOP_SECONDS = 30


@dataclass(frozen=True)
class Published:
    """The loopback ports a node's services are published on."""

    ssh: int
    http: int
    https: int
    #: HTTP and HTTPS are bound to fixed ports (kept across restarts). False for a
    #: container created before lab nodes kept them: the engine picks new ones at
    #: every start, so its sites' URLs (which carry the HTTP port) break.
    web_fixed: bool = True


@dataclass(frozen=True)
class ContainerState:
    container_id: str
    node_id: str
    status: str  # created, running, exited, …
    exit_code: int | None
    #: When it last stopped, in the engine's time (Unix seconds; None while running).
    finished_at: int | None = None


def _unix(timestamp: str | None) -> int | None:
    """The engine's RFC 3339 time (nanoseconds, `Z`) in Unix seconds; None for its zero time."""
    if not timestamp or timestamp.startswith("0001-"):
        return None
    seconds = timestamp.split(".", 1)[0].rstrip("Z")
    return int(datetime.fromisoformat(seconds + "+00:00").timestamp())


_LIMIT_WORDS = ("limit", "memory", "cpu", "pids", "cgroup", "does not support")


def _about_limits(warning: str) -> bool:
    """A create warning that says a limit is not (fully) applied. Others — e.g. that
    IPv4 forwarding is off, which lab nodes want: loopback ports need none — are not."""
    lowered = warning.lower()
    if "swap" in lowered:  # no swap accounting: swap is not limited, memory still is
        return False
    return any(word in lowered for word in _LIMIT_WORDS)


def _port(inspected: dict[str, Any], port: int) -> int:
    bindings = (inspected["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") == "127.0.0.1" and binding.get("HostPort"):
            return int(binding["HostPort"])
    raise RuntimeError(f"port {port} is not published on 127.0.0.1")


#: Where the kernel (and Docker's port allocator, which reads the same file) picks
#: ephemeral ports: every `None` binding — each lab node's SSH port at every start —
#: and every outgoing connection's local port come from this range.
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Lowest port a fixed binding uses (below it: the well-known services).
FIXED_PORT_FLOOR = 1025


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range (Docker's default when it cannot be read)."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return 49153, 65535  # the engine's own fallback (portallocator)
    return low, high


def _free_loopback_ports(count: int, *, ephemeral: tuple[int, int] | None = None) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 now (the engine binds them right
    after), chosen OUTSIDE the ephemeral range: a port from it (`bind(0)`) would be
    handed by the engine to another container's SSH while this node is stopped, and
    this node's next start would fail with its port taken."""
    low, high = ephemeral if ephemeral is not None else ephemeral_range()
    candidates = [
        *range(FIXED_PORT_FLOOR, max(FIXED_PORT_FLOOR, low)),
        *range(max(FIXED_PORT_FLOOR, high + 1), 65536),
    ]
    chooser = random.SystemRandom()
    chooser.shuffle(candidates)
    chosen: list[socket.socket] = []
    try:
        for port in candidates:
            if len(chosen) == count:
                break
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                probe.bind(("127.0.0.1", port))  # held open: the next ones are distinct
            except OSError:
                probe.close()
                continue
            chosen.append(probe)
        if len(chosen) < count:
            raise RuntimeError(
                f"no {count} free loopback ports outside the ephemeral range {low}-{high}"
            )
        return [int(probe.getsockname()[1]) for probe in chosen]
    finally:
        for probe in chosen:
            probe.close()


class DockerLab:
    """Lab nodes on one Docker engine (`base_url`, e.g. `unix:///…/docker.sock`)."""

    def __init__(self, base_url: str, network: str = NETWORK) -> None:
        self.client = docker.DockerClient(base_url=base_url, timeout=60)
        self.network = network
        #: Containers this lab was asked to stop or remove (and when, in ns): their next
        #: `die` is no death — until the engine reports the container started again.
        self._asked: dict[str, int] = {}
        self._asked_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # -- checks ----------------------------------------------------------------------

    def check_limits(self, limits: Limits) -> dict[str, Any]:
        """Refuse limits this engine cannot enforce (before anything is created), and
        values Docker would read as "no limit"; returns the engine's info."""
        if limits.memory_mb < 6 or not limits.cpus > 0 or limits.pids < 1:
            raise LimitNotEnforced(
                f"limits must be positive (memory ≥ 6 MB, cpus > 0, pids ≥ 1): {limits}"
            )
        info: dict[str, Any] = self.client.info()
        missing = [
            name
            for name, key in (
                ("memory", "MemoryLimit"),
                ("cpus", "CpuCfsQuota"),
                ("pids", "PidsLimit"),
            )
            if not info.get(key, False)
        ]
        if missing:
            raise LimitNotEnforced(f"this Docker engine cannot enforce {', '.join(missing)} limits")
        return info

    def _ensure_network(self) -> None:
        if any(n.name == self.network for n in self.client.networks.list(names=[self.network])):
            return  # (the engine matches names by substring)
        self.client.networks.create(
            self.network,
            driver="bridge",
            options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
            labels={LABEL_MANAGED: "true"},
        )

    # -- lifecycle -------------------------------------------------------------------

    def create(
        self,
        node_id: str,
        name: str,
        image: str,
        limits: Limits,
        *,
        command: list[str] | None = None,
        init: str = "plain",
    ) -> str:
        """Create and start a node's container; returns its id. `init` is how it boots
        (`INITS`): `systemd` needs more of the kernel than a plain container — every
        capability but CAP_SYS_RESOURCE, no seccomp filter, its own /run and /run/lock
        tmpfs and the cgroup hierarchy writable (systemd manages its units' cgroups) —
        and is stopped with SIGRTMIN+3 (systemd's orderly shutdown)."""
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: one of {', '.join(INITS)}")
        systemd = init == "systemd"
        info = self.check_limits(limits)
        self._ensure_network()
        api = self.client.api
        memory = limits.memory_mb * 1024 * 1024
        http_port, https_port = _free_loopback_ports(2)
        host_config = api.create_host_config(
            mem_limit=memory,
            # No swap beyond the memory limit, where the engine can say so (without
            # swap accounting the memory limit still holds).
            memswap_limit=memory if info.get("SwapLimit") else None,
            nano_cpus=int(limits.cpus * 1e9),
            pids_limit=limits.pids,
            port_bindings={
                22: ("127.0.0.1", None),
                # Fixed for the container's life: a restart keeps its sites' URLs working.
                80: ("127.0.0.1", http_port),
                443: ("127.0.0.1", https_port),
            },
            network_mode=self.network,
            # systemd is PID 1 itself; node-init runs under the engine's init (tini).
            init=not systemd,
            restart_policy={"Name": "no"},
            **(
                {
                    # --privileged fails where CAP_SYS_RESOURCE is not ours to grant.
                    "cap_add": ["ALL"],
                    "cap_drop": ["SYS_RESOURCE"],
                    "security_opt": ["seccomp=unconfined"],
                    "tmpfs": {"/run": "", "/run/lock": ""},
                    "binds": {"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
                    # On cgroup v2 the engine's default is a private cgroup namespace, in
                    # which the host's tree bound here is not the container's own: share
                    # the host's (the usual recipe for systemd in a container there). Not
                    # exercised on the machines the tests ran on (cgroup v1).
                    **({"cgroupns": "host"} if str(info.get("CgroupVersion")) == "2" else {}),
                }
                if systemd
                else {}
            ),
        )
        created = api.create_container(
            image,
            command=[SYSTEMD] if systemd and command is None else command,
            stop_signal="SIGRTMIN+3" if systemd else None,
            # systemd stops every unit in order (MariaDB flushes): more than the 10 s default.
            stop_timeout=SYSTEMD_STOP_SECONDS if systemd else None,
            name=f"pressluft-{node_id}",  # unique: a node's name may be reused later
            hostname=name,
            labels={LABEL_MANAGED: "true", LABEL_NODE: node_id},
            ports=[22, 80, 443],
            host_config=host_config,
        )
        container_id = str(created["Id"])
        try:
            warnings = [w for w in created.get("Warnings") or [] if _about_limits(w)]
            if warnings:
                raise LimitNotEnforced("; ".join(warnings))
            applied = api.inspect_container(container_id)["HostConfig"]
            expected = {
                "Memory": limits.memory_mb * 1024 * 1024,
                "NanoCpus": int(limits.cpus * 1e9),
                "PidsLimit": limits.pids,
            }
            wrong = {k: applied.get(k) for k, v in expected.items() if applied.get(k) != v}
            if wrong:
                raise LimitNotEnforced(f"the engine applied other limits: {wrong}")
            api.start(container_id)
        except BaseException:
            api.remove_container(container_id, force=True)
            raise
        return container_id

    def authorize(self, node_id: str, public_key: str, home: str = "/root") -> None:
        """Put `public_key` in `<home>/.ssh/authorized_keys` (0700/0600): what an
        operator's authorize command does on a server, done through the engine."""
        data = (public_key.strip() + "\n").encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            ssh_dir = tarfile.TarInfo(".ssh")
            ssh_dir.type, ssh_dir.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(ssh_dir)
            keys = tarfile.TarInfo(".ssh/authorized_keys")
            keys.size, keys.mode = len(data), 0o600
            tar.addfile(keys, io.BytesIO(data))
        if not self.client.api.put_archive(self._container(node_id), home, buffer.getvalue()):
            raise RuntimeError(f"the engine refused to write {home}/.ssh/authorized_keys")

    def has_image(self, image: str) -> bool:
        try:
            self.client.api.inspect_image(image)
        except NotFound:
            return False
        return True

    def published(self, node_id: str) -> Published:
        """The loopback ports (SSH's changes with every start: read them per job)."""
        inspected = self.client.api.inspect_container(self._container(node_id))
        asked = inspected["HostConfig"].get("PortBindings") or {}
        web_fixed = all(
            any(b.get("HostPort") for b in asked.get(f"{port}/tcp") or []) for port in (80, 443)
        )
        return Published(
            _port(inspected, 22), _port(inspected, 80), _port(inspected, 443), web_fixed
        )

    def start(self, node_id: str) -> None:
        container_id = self._container(node_id)
        self._expect_death(container_id, False)  # from now on a die is a death again
        self.client.api.start(container_id)

    def stop(self, node_id: str, timeout: int | None = None) -> None:
        """Stop the node's container (within its own stop timeout unless `timeout`)."""
        container_id = self._container(node_id)
        self._expect_death(container_id, True)
        try:
            self.client.api.stop(container_id, timeout=timeout)
        except BaseException:
            # Not stopped (as far as we know): a later die is a death again.
            self._expect_death(container_id, False)
            raise

    def destroy(self, node_id: str) -> bool:
        """Remove the node's container (and nothing else); False if there was none."""
        try:
            container_id = self._container(node_id)
        except LookupError:
            return False
        self._expect_death(container_id, True)
        try:
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            return False  # (gone meanwhile: no die of ours is coming)
        except BaseException:
            self._expect_death(container_id, False)  # not removed: a later die is a death
            raise
        return True

    def _expect_death(self, container_id: str, asked: bool) -> None:
        """Mark (or unmark) a container as stopped or removed on request: before the
        engine is asked, so the `die` it reports is known as ours when it comes."""
        with self._asked_lock:
            if asked:
                self._asked[container_id] = time.time_ns()
            else:
                self._asked.pop(container_id, None)

    def _started(self, container_id: str, at_ns: int) -> None:
        """The engine reports the container started (e.g. `docker start` outside
        Pressluft): a mark older than that start is void, its next die is a death."""
        with self._asked_lock:
            marked = self._asked.get(container_id)
            if marked is not None and marked < at_ns:
                del self._asked[container_id]

    def asked_to_die(self, container_id: str) -> bool:
        """Whether this lab stopped or removed the container (its `die` is no death)."""
        with self._asked_lock:
            return container_id in self._asked

    def container_id(self, node_id: str) -> str:
        return self._container(node_id)

    def _container(self, node_id: str) -> str:
        found = self.client.api.containers(all=True, filters={"label": f"{LABEL_NODE}={node_id}"})
        if not found:
            raise LookupError(f"no container for node {node_id}")
        return str(found[0]["Id"])

    # -- observation -----------------------------------------------------------------

    def managed(self) -> list[ContainerState]:
        """Every container labelled as Pressluft's (for the orphan reconciler)."""
        states = []
        for c in self.client.api.containers(all=True, filters={"label": f"{LABEL_MANAGED}=true"}):
            labels = c.get("Labels") or {}
            if LABEL_NODE not in labels:
                continue
            try:
                inspected = self.client.api.inspect_container(c["Id"])["State"]
            except NotFound:  # removed meanwhile
                continue
            running = bool(inspected.get("Running"))
            states.append(
                ContainerState(
                    container_id=str(c["Id"]),
                    node_id=str(labels[LABEL_NODE]),
                    status=str(inspected.get("Status")),
                    exit_code=None if running else int(inspected.get("ExitCode", 0)),
                    finished_at=None if running else _unix(inspected.get("FinishedAt")),
                )
            )
        return states

    def watch_deaths(
        self, on_death: Callable[[str, int, int], None], stop: threading.Event, since: int
    ) -> None:
        """Call `on_death(node_id, exit_code, time)` for every managed container that
        dies, from `since` (a Unix time: resume from the last event's time and nothing
        is missed) until `stop` is set — except the containers this lab stopped or
        removed itself (`asked_to_die`): that is no death. Blocking: run it in a
        thread. Raises ConnectionError when the engine ends the stream before `stop`."""
        stream: Any = self.client.events(
            decode=True,
            since=since,
            # `start` too: a container started again (by anyone) dies as a death.
            filters={
                "type": "container",
                "event": ["die", "start"],
                "label": f"{LABEL_MANAGED}=true",
            },
        )
        ended = threading.Event()

        def close_on_stop() -> None:
            while not stop.wait(0.5):
                if ended.is_set():
                    return
            stream.close()

        closer = threading.Thread(target=close_on_stop, name="docker-events-closer", daemon=True)
        closer.start()
        try:
            for event in stream:
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                node_id = attributes.get(LABEL_NODE)
                container_id = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
                if event.get("status", event.get("Action")) == "start":
                    at_ns = int(event.get("timeNano") or int(event.get("time", 0)) * 10**9)
                    self._started(container_id, at_ns)
                elif node_id and not self.asked_to_die(container_id):
                    at = int(event.get("time", since))
                    on_death(str(node_id), int(attributes.get("exitCode", -1)), at)
                if stop.is_set():
                    return
        except Exception as exc:
            if not stop.is_set():
                raise ConnectionError(f"the Docker event stream failed: {exc}") from exc
            return
        finally:
            ended.set()
        if not stop.is_set():
            raise ConnectionError("the Docker engine ended the event stream")
