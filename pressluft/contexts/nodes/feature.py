"""The nodes capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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
from pressluft.contexts.nodes.failures import CODES
from pressluft.contexts.nodes.machines import DeathWatcher
from pressluft.contexts.nodes.pages import PAGES
from pressluft.contexts.nodes.probes import configured_providers
from pressluft.contexts.nodes.projector import NODES_PROJECTOR
from pressluft.contexts.nodes.routes import NODE_ROUTES
from pressluft.contexts.nodes.service import Nodes
from pressluft.contexts.nodes.workers import DockerReconcile, node_workers
from pressluft.feature import Feature, Kernel, Parts
from pressluft.jobs.scheduler import Schedule

__all__ = ["FEATURE"]

#: How often `docker_reconcile` looks for orphaned containers.
RECONCILE_EVERY_SECONDS = 300


def _assemble(kernel: Kernel) -> Parts:
    """The nodes service with the machine providers of the settings; the workers
    built with them; when a Docker engine is configured, the orphan report every
    5 minutes and the watcher of its containers' deaths."""
    config = kernel.config
    providers = configured_providers(config.docker_host, config.node_image, config.lab_systemd)
    nodes = Nodes(kernel.db, kernel.writer, kernel.vault, kernel.clock, providers)
    schedules: list[Schedule] = []
    background = []
    if providers.docker is not None:
        schedules.append(
            Schedule(
                job_type=DockerReconcile.kind,
                every_seconds=RECONCILE_EVERY_SECONDS,
                first_after_seconds=60,
                # Reads the Docker engine, on no node: it locks nothing.
                node_lock="shared",
                max_attempts=DockerReconcile.max_attempts,
                timeout_seconds=DockerReconcile.timeout_seconds,
            )
        )
        background.append(DeathWatcher(kernel.db, kernel.clock, providers.docker).service())
    return Parts(
        workers=node_workers(providers),
        schedules=schedules,
        background=background,
        services={"nodes": nodes},
        closers=[nodes.close],
    )


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
    failure_codes=CODES,
    routes=tuple(NODE_ROUTES),
    pages=tuple(PAGES),
    templates=Path(str(resources.files("pressluft.contexts.nodes") / "templates")),
    assemble=_assemble,
)
