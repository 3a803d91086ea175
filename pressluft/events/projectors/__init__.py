"""Projectors of the event log's own streams (the job queue's); each capability's
projector lives in its context, and `pressluft.features` orders them all."""

from __future__ import annotations

from pressluft.events.projectors.jobs import JOBS_PROJECTOR
from pressluft.events.projectors.nodes import NODES_PROJECTOR
from pressluft.events.projectors.sites import SITES_PROJECTOR

__all__ = ["JOBS_PROJECTOR", "NODES_PROJECTOR", "SITES_PROJECTOR"]
