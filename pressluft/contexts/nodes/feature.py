"""The nodes capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from pressluft.contexts.nodes.events import (
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
from pressluft.contexts.nodes.projector import NODES_PROJECTOR
from pressluft.contexts.nodes.routes import NODE_ROUTES
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
