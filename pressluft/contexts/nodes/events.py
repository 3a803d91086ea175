"""Events of nodes (stream `node:<id>`): registration, host-key pinning, readiness
checks, provisioning, decommissioning, and the container of a `docker` lab node
(created, started, stopped, died, removed). An orphaned container (labelled as
Pressluft's, no live node) is reported on stream `orphan:<container id>`."""

from __future__ import annotations

from typing import Literal

import msgspec

from pressluft.events.types.base import Event

__all__ = [
    "NodeChecked",
    "NodeContainerCreated",
    "NodeContainerDied",
    "NodeContainerRemoved",
    "NodeContainerStarted",
    "NodeContainerStopped",
    "NodeDecommissioned",
    "NodeHostKeyPinned",
    "NodeHostKeyUnpinned",
    "NodeOrphanDetected",
    "NodePorts",
    "NodeProvisionFailed",
    "NodeProvisioned",
    "NodeProvisioningStarted",
    "NodeRegistered",
    "NodeResources",
]


class NodeResources(msgspec.Struct, frozen=True, kw_only=True):
    """Resource limits of a lab node's container (enforced by the engine)."""

    memory_mb: int
    cpus: float
    pids: int
    #: How the container boots: `plain` (node-init, no systemd) or `systemd` (PID 1).
    init: Literal["plain", "systemd"] = "plain"


class NodePorts(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The 127.0.0.1 ports a lab node's SSH, HTTP and HTTPS are published on."""

    ssh: int
    http: int
    https: int
    #: False for a container created before lab nodes kept their web ports: its HTTP
    #: port changes at every start, so no site gets a URL with it (recreate the node).
    web_fixed: bool = True


class NodeRegistered(Event, frozen=True, tag="node.registered"):
    node_id: str
    name: str
    provider: Literal["ssh", "docker"]
    host: str
    ssh_port: int
    ssh_user: str
    #: The sealed private key (a `secrets` id); the public half is not secret.
    key_secret_id: str
    public_key: str
    #: `docker` nodes: the limits their container gets.
    resources: NodeResources | None = None


class NodeHostKeyPinned(Event, frozen=True, tag="node.host_key_pinned"):
    """First contact (or the first after a re-pin) recorded the node's host key."""

    node_id: str
    host_key: str
    fingerprint: str


class NodeHostKeyUnpinned(Event, frozen=True, tag="node.host_key_unpinned"):
    """An admin asked to trust the next host key the node presents (only the one
    with `expected_fingerprint`, when given)."""

    node_id: str
    previous_fingerprint: str | None = None
    expected_fingerprint: str | None = None


class NodeChecked(Event, frozen=True, tag="node.checked"):
    """A readiness check ran: whether the node could be reached and is ready."""

    node_id: str
    reachable: bool
    ready: bool
    reason_codes: list[str] = []
    #: The fingerprint of a host key that was refused (not the pinned or expected one).
    offered_fingerprint: str | None = None


class NodeProvisioningStarted(Event, frozen=True, tag="node.provisioning_started"):
    """A `node_provision` attempt began (status → provisioning)."""

    node_id: str
    job_id: str


class NodeProvisioned(Event, frozen=True, tag="node.provisioned"):
    """The playbook succeeded: the node runs this profile revision (status → active)."""

    node_id: str
    job_id: str
    profile_revision: str
    changed: int


class NodeProvisionFailed(Event, frozen=True, tag="node.provision_failed"):
    """Provisioning failed for good (no attempt left, or not retryable): status → failed."""

    node_id: str
    job_id: str
    error_code: str


class NodeDecommissioned(Event, frozen=True, tag="node.decommissioned"):
    node_id: str


class NodeContainerCreated(Event, frozen=True, tag="node.container_created"):
    """A `docker` node's container exists and runs (the node's key authorized in it)."""

    node_id: str
    container_id: str
    image: str
    ports: NodePorts


class NodeContainerStarted(Event, frozen=True, tag="node.container_started"):
    """The container was started again; its loopback ports are new."""

    node_id: str
    ports: NodePorts


class NodeContainerStopped(Event, frozen=True, tag="node.container_stopped"):
    """An admin stopped the container (status → unreachable while it is down)."""

    node_id: str


class NodeContainerDied(Event, frozen=True, tag="node.container_died"):
    """The engine reported the container's death (a stop, a kill, a crash)."""

    node_id: str
    exit_code: int
    #: The engine's time of the death (Unix seconds): where the watcher resumes.
    died_at: int


class NodeContainerRemoved(Event, frozen=True, tag="node.container_removed"):
    """Decommissioning removed the container (its data is gone)."""

    node_id: str
    container_id: str | None = None


class NodeOrphanDetected(Event, frozen=True, tag="node.orphan_detected"):
    """A container labelled as Pressluft's has no live node; nothing was deleted."""

    container_id: str
    #: The node id on the container's label.
    labelled_node_id: str
    container_status: str
