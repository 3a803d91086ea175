"""Events of nodes (stream `node:<id>`): registration, host-key pinning, readiness
checks, decommissioning. Provisioning events come with the provisioning job."""

from __future__ import annotations

from typing import Literal

from pressluft.events.types.base import Event

__all__ = [
    "NodeChecked",
    "NodeDecommissioned",
    "NodeHostKeyPinned",
    "NodeHostKeyUnpinned",
    "NodeProvisionFailed",
    "NodeProvisioned",
    "NodeProvisioningStarted",
    "NodeRegistered",
]


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
