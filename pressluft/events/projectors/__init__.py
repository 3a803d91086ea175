"""Every projector of the daemon, in dependency order."""

from __future__ import annotations

from pressluft.events.projection import ProjectorSet
from pressluft.events.projectors.settings import SETTINGS_PROJECTOR

__all__ = ["PROJECTORS"]

PROJECTORS = ProjectorSet((SETTINGS_PROJECTOR,))
