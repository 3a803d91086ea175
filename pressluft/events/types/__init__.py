"""The catalog of event types: every `<aggregate>.<past participle>` Struct.

Each aggregate's events live in their own module; `ALL_EVENTS` lists them all
and `EVENT_TYPES` maps a tag to its class. An event type, once recorded, is
never renamed or given an incompatible field: new fields need defaults, and
anything else is a new `schema_version` with an upcaster (`events/upcast.py`).
"""

from __future__ import annotations

from pressluft.events.types.access import (
    LoginFailed,
    SessionExpired,
    SessionRevoked,
    SessionStarted,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserPasswordChanged,
)
from pressluft.events.types.base import Event, event_type, schema_version
from pressluft.events.types.jobs import (
    JobCancelled,
    JobCancelRequested,
    JobClaimed,
    JobEnqueued,
    JobFailed,
    JobLeaseExpired,
    JobRetryScheduled,
    JobSucceeded,
)
from pressluft.events.types.nodes import (
    NodeChecked,
    NodeContainerCreated,
    NodeContainerDied,
    NodeContainerRemoved,
    NodeContainerStarted,
    NodeContainerStopped,
    NodeDecommissioned,
    NodeHostKeyPinned,
    NodeHostKeyUnpinned,
    NodeOrphanDetected,
    NodePorts,
    NodeProvisioned,
    NodeProvisionFailed,
    NodeProvisioningStarted,
    NodeRegistered,
    NodeResources,
)
from pressluft.events.types.settings import SettingsChanged
from pressluft.events.types.sites import (
    EnvironmentCreated,
    EnvironmentFailed,
    EnvironmentMagicLoginIssued,
    EnvironmentProvisioned,
    SiteCreated,
)

__all__ = [
    "ALL_EVENTS",
    "EVENT_TYPES",
    "EnvironmentCreated",
    "EnvironmentFailed",
    "EnvironmentMagicLoginIssued",
    "EnvironmentProvisioned",
    "Event",
    "JobCancelRequested",
    "JobCancelled",
    "JobClaimed",
    "JobEnqueued",
    "JobFailed",
    "JobLeaseExpired",
    "JobRetryScheduled",
    "JobSucceeded",
    "LoginFailed",
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
    "SessionExpired",
    "SessionRevoked",
    "SessionStarted",
    "SettingsChanged",
    "SiteCreated",
    "TokenCreated",
    "TokenRevoked",
    "UserCreated",
    "UserPasswordChanged",
    "event_type",
    "schema_version",
]

ALL_EVENTS: tuple[type[Event], ...] = (
    SettingsChanged,
    UserCreated,
    UserPasswordChanged,
    SessionStarted,
    SessionRevoked,
    SessionExpired,
    LoginFailed,
    TokenCreated,
    TokenRevoked,
    JobEnqueued,
    JobClaimed,
    JobSucceeded,
    JobRetryScheduled,
    JobFailed,
    JobCancelRequested,
    JobCancelled,
    JobLeaseExpired,
    NodeRegistered,
    NodeHostKeyPinned,
    NodeHostKeyUnpinned,
    NodeChecked,
    NodeProvisioningStarted,
    NodeProvisioned,
    NodeProvisionFailed,
    NodeContainerCreated,
    NodeContainerStarted,
    NodeContainerStopped,
    NodeContainerDied,
    NodeContainerRemoved,
    NodeOrphanDetected,
    NodeDecommissioned,
    SiteCreated,
    EnvironmentCreated,
    EnvironmentProvisioned,
    EnvironmentFailed,
    EnvironmentMagicLoginIssued,
)

EVENT_TYPES: dict[str, type[Event]] = {event_type(cls): cls for cls in ALL_EVENTS}
