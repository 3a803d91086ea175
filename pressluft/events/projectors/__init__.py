"""Projectors still to move into their contexts; `pressluft.features` orders them all."""

from __future__ import annotations

from pressluft.events.projectors.sites import SITES_PROJECTOR

__all__ = ["SITES_PROJECTOR"]
