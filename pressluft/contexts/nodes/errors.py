"""The nodes context's request errors: what its commands and queries refuse, and
why (the HTTP problem codes the contract lists)."""

from __future__ import annotations

from pressluft.errors import BadGateway, BadRequest, Conflict, NotFound

__all__ = [
    "ConfirmationRequired",
    "NodeExists",
    "NodeGone",
    "NodeHostsSites",
    "NodeNotFound",
    "NodeNotReady",
    "NodeUnreachable",
    "ProviderUnavailable",
    "ProviderUnsupported",
]


class NodeNotFound(NotFound):
    pass


class NodeExists(Conflict):
    code = "node_exists"


class NodeGone(Conflict):
    """The node is decommissioned: nothing more can be done with it."""

    code = "node_decommissioned"


class NodeHostsSites(Conflict):
    """The node still hosts environments; decommissioning would destroy them."""

    code = "node_has_sites"


class ConfirmationRequired(BadRequest):
    code = "confirmation_required"


class NodeNotReady(Conflict):
    """The node cannot be queried or worked on yet (e.g. no pinned host key)."""

    code = "node_not_ready"


class NodeUnreachable(BadGateway):
    code = "node_unreachable"


class ProviderUnavailable(Conflict):
    """This daemon cannot run machines of the provider asked for."""

    code = "provider_unavailable"


class ProviderUnsupported(Conflict):
    """The node's provider has no such operation (e.g. starting an `ssh` node)."""

    code = "provider_unsupported"
