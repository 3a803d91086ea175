"""The daemon's capabilities, in dependency order: the one central registry.

Adding a capability is a folder under `contexts/` and one line here. The
projector set follows this order (a projector may read the tables of those
before it), and every event type, table, route, job worker and schedule comes
from these records.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from pressluft.contexts.access import feature as access
from pressluft.contexts.backups import feature as backups
from pressluft.contexts.domains import feature as domains
from pressluft.contexts.nodes import feature as nodes
from pressluft.contexts.operations import feature as operations
from pressluft.contexts.releases import feature as releases
from pressluft.contexts.settings import feature as settings
from pressluft.contexts.sites import feature as sites
from pressluft.events.projection import NON_PROJECTION_TABLES as LOG_TABLES
from pressluft.events.projection import ProjectorSet
from pressluft.events.replay import ReplayResult
from pressluft.events.replay import rebuild_in_place as _rebuild_in_place
from pressluft.events.replay import verify_replay as _verify_replay
from pressluft.events.types import Event
from pressluft.feature import Feature

__all__ = [
    "ALL_EVENTS",
    "FEATURES",
    "MIGRATIONS",
    "NON_PROJECTION_TABLES",
    "PROJECTORS",
    "migrations_of",
    "projectors_of",
    "rebuild_in_place",
    "verify_replay",
]

FEATURES: tuple[Feature, ...] = (
    settings.FEATURE,
    access.FEATURE,
    operations.FEATURE,
    nodes.FEATURE,
    sites.FEATURE,
    domains.FEATURE,
    backups.FEATURE,
    releases.FEATURE,
)


def projectors_of(features: tuple[Feature, ...]) -> ProjectorSet:
    return ProjectorSet(tuple(p for f in features for p in f.projectors))


def _non_projection(features: tuple[Feature, ...]) -> Mapping[str, str]:
    tables = dict(LOG_TABLES)
    for feature in features:
        tables.update(feature.non_projection_tables)
    return tables


def migrations_of(features: tuple[Feature, ...]) -> tuple[Path, ...]:
    return tuple(f.migrations for f in features if f.migrations is not None)


PROJECTORS = projectors_of(FEATURES)
MIGRATIONS = migrations_of(FEATURES)
ALL_EVENTS: tuple[type[Event], ...] = tuple(e for f in FEATURES for e in f.events)
NON_PROJECTION_TABLES = _non_projection(FEATURES)


def rebuild_in_place(conn: sqlite3.Connection) -> int:
    """Rebuild every projection of the daemon's features from the log."""
    return _rebuild_in_place(conn, PROJECTORS, MIGRATIONS)


def verify_replay(
    live: sqlite3.Connection, now: str, scratch_dir: Path | None = None
) -> ReplayResult:
    """Replay the log into a scratch database with the features' projectors and diff."""
    return _verify_replay(live, now, PROJECTORS, scratch_dir, MIGRATIONS)
