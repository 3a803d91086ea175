"""Machine providers: who creates, starts, stops and removes the machine a node runs on.

A provider is small on purpose (`MachineProvider`): `create` a machine for a
node with its public key authorized and return where to reach it, `start` and
`stop` it, `destroy` it. Everything else — host keys, readiness, Ansible, the
node's state — is the same for every provider and lives elsewhere. The `ssh`
provider has no machine to manage (the operator brings the server), so it has
no `MachineProvider`. `docker` runs lab nodes on a Docker engine. A cloud
provider (Hetzner first) is one more class here and one more registration
variant in the nodes context (`contexts/nodes/`).

All methods block; job handlers call them in a thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pressluft.runners.docker import DockerLab, Limits
from pressluft.runners.images import ImageInputs, image_tag

__all__ = [
    "DEFAULT_DOCKER_SOCKET",
    "DockerProvider",
    "Endpoint",
    "ImageMissing",
    "MachineProvider",
    "ProviderNotConfigured",
    "Providers",
    "Resources",
    "resolve_docker_host",
]

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"


class ProviderNotConfigured(LookupError):
    """The daemon has no way to run machines of this provider."""


class ImageMissing(LookupError):
    """The machine image is not on the engine."""


@dataclass(frozen=True)
class Resources:
    memory_mb: int
    cpus: float
    pids: int
    #: How the machine boots (a lab node's container: `plain` node-init, or `systemd`).
    init: str = "plain"


@dataclass(frozen=True)
class Endpoint:
    """Where a machine is reached: SSH at host:ssh_port; HTTP(S) where published."""

    machine_id: str
    host: str
    ssh_port: int
    http_port: int
    https_port: int
    #: HTTP/HTTPS keep their ports across restarts (False: a lab container from
    #: before fixed web ports).
    web_ports_fixed: bool = True


class MachineProvider(Protocol):
    name: str
    #: What the machine runs (an image tag, a server type, …), recorded with it.
    image: str

    def create(self, node_id: str, name: str, public_key: str, resources: Resources) -> Endpoint:
        """Create and start the machine with `public_key` authorized for root."""
        ...

    def start(self, node_id: str) -> Endpoint: ...

    def stop(self, node_id: str) -> None: ...

    def destroy(self, node_id: str) -> bool:
        """Remove the machine; False when there was none."""
        ...


class DockerProvider:
    """Lab nodes: containers from the node image on one Docker engine."""

    name = "docker"

    def __init__(self, base_url: str, image: str) -> None:
        self.base_url = base_url
        self.image = image
        self._lab: DockerLab | None = None
        self._lock = threading.Lock()

    @property
    def lab(self) -> DockerLab:
        with self._lock:
            if self._lab is None:
                self._lab = DockerLab(self.base_url)
            return self._lab

    def _endpoint(self, node_id: str, container_id: str) -> Endpoint:
        ports = self.lab.published(node_id)
        return Endpoint(
            container_id, "127.0.0.1", ports.ssh, ports.http, ports.https, ports.web_fixed
        )

    def create(self, node_id: str, name: str, public_key: str, resources: Resources) -> Endpoint:
        if not self.lab.has_image(self.image):
            # A tag of `node-image build` names its release: pressluft-node:<release>-<hash>.
            release = self.image.partition(":")[2].partition("-")[0]
            option = f" --release {release}" if release in ("bookworm", "trixie") else ""
            raise ImageMissing(
                f"the node image {self.image} is not on the Docker engine at {self.base_url}:"
                f" build it with `pressluft node-image build{option} --docker-host {self.base_url}`"
            )
        limits = Limits(memory_mb=resources.memory_mb, cpus=resources.cpus, pids=resources.pids)
        container_id = self.lab.create(node_id, name, self.image, limits, init=resources.init)
        try:
            self.lab.authorize(node_id, public_key)
            return self._endpoint(node_id, container_id)
        except BaseException:
            self.lab.destroy(node_id)
            raise

    def start(self, node_id: str) -> Endpoint:
        self.lab.start(node_id)
        return self._endpoint(node_id, self.lab.container_id(node_id))

    def stop(self, node_id: str) -> None:
        self.lab.stop(node_id)

    def destroy(self, node_id: str) -> bool:
        return self.lab.destroy(node_id)

    def close(self) -> None:
        with self._lock:
            if self._lab is not None:
                self._lab.close()
                self._lab = None


def resolve_docker_host(setting: str, environ: dict[str, str] | None = None) -> str | None:
    """The Docker engine URL for a `docker_host` setting: a URL as is; `auto` the
    `DOCKER_HOST` variable, else the default socket when it exists; empty: none."""
    if setting != "auto":
        return setting or None
    env = os.environ if environ is None else environ
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"]
    return f"unix://{DEFAULT_DOCKER_SOCKET}" if Path(DEFAULT_DOCKER_SOCKET).exists() else None


class Providers:
    """The machine providers this daemon can use."""

    def __init__(
        self, docker_host: str | None, node_image: str | None = None, lab_systemd: bool = False
    ) -> None:
        #: Whether lab nodes may run systemd as PID 1 (the `lab_systemd` setting).
        self.lab_systemd = lab_systemd
        self.docker: DockerProvider | None = None
        if docker_host:
            self.docker = DockerProvider(docker_host, node_image or image_tag(ImageInputs()))

    def available(self, provider: str) -> bool:
        return provider == "ssh" or (provider == "docker" and self.docker is not None)

    def machines(self, provider: str) -> MachineProvider | None:
        """The provider's machine operations; None for `ssh` (no machine to manage)."""
        if provider == "ssh":
            return None
        if provider == "docker" and self.docker is not None:
            return self.docker
        raise ProviderNotConfigured(f"this daemon has no {provider} provider configured")

    def close(self) -> None:
        if self.docker is not None:
            self.docker.close()
