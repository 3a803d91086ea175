"""Every projector of the daemon, in dependency order."""

from __future__ import annotations

from pressluft.events.projection import ProjectorSet
from pressluft.events.projectors.access import (
    SESSIONS_PROJECTOR,
    TOKENS_PROJECTOR,
    USERS_PROJECTOR,
)
from pressluft.events.projectors.jobs import JOBS_PROJECTOR
from pressluft.events.projectors.nodes import NODES_PROJECTOR
from pressluft.events.projectors.settings import SETTINGS_PROJECTOR
from pressluft.events.projectors.sites import SITES_PROJECTOR

__all__ = ["PROJECTORS"]

#: Order matters for foreign keys: users before the sessions that point at them.
PROJECTORS = ProjectorSet(
    (
        SETTINGS_PROJECTOR,
        USERS_PROJECTOR,
        SESSIONS_PROJECTOR,
        TOKENS_PROJECTOR,
        JOBS_PROJECTOR,
        NODES_PROJECTOR,
        SITES_PROJECTOR,
    )
)
