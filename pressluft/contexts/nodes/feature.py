"""The nodes capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from pressluft.api.routes.nodes import NODE_ROUTES
from pressluft.events.projectors import NODES_PROJECTOR
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
    NodeProvisioned,
    NodeProvisionFailed,
    NodeProvisioningStarted,
    NodeRegistered,
)
from pressluft.feature import Feature

__all__ = ["FEATURE"]

FEATURE = Feature(
    name="nodes",
    events=(
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
    ),
    projectors=(NODES_PROJECTOR,),
    routes=tuple(NODE_ROUTES),
)
