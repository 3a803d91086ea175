"""Nodes: servers registered, checked, provisioned and decommissioned; lab
nodes' machines on a Docker engine.

Its `Feature` is in `feature.py`. Other contexts use only what this package
exports: the errors a site command raises about its node, where a node is
reached, and running a playbook, one command or a root-owned script it installs on a
node from a job worker.
"""

from __future__ import annotations

from pressluft.contexts.nodes.errors import ConfirmationRequired, NodeNotReady, NodeUnreachable
from pressluft.contexts.nodes.events import NodeDecommissioned, NodePorts
from pressluft.contexts.nodes.probes import (
    install_node_script,
    job_node_address,
    node_address,
    node_command,
    node_script,
    run_node_playbook,
)

__all__ = [
    "ConfirmationRequired",
    "NodeDecommissioned",
    "NodeNotReady",
    "NodePorts",
    "NodeUnreachable",
    "install_node_script",
    "job_node_address",
    "node_address",
    "node_command",
    "node_script",
    "run_node_playbook",
]
