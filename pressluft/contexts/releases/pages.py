"""The releases section of a site's page (`Parts.site_sections`): each environment's
kept releases, newest first, which one is served, and "Activate" on the others."""

from __future__ import annotations

import sqlite3
from typing import Any

from pressluft.contexts.releases.queries import list_releases
from pressluft.contexts.sites import SiteSection, SiteView

__all__ = ["releases_section"]

#: How many releases of an environment the section lists (all: the API pages them).
SHOWN = 10


def releases_section() -> SiteSection:
    def load(conn: sqlite3.Connection, site: SiteView) -> dict[str, Any]:
        live = [e for e in site.environments if e.status != "deleted"]
        return {"releases": {e.id: list_releases(conn, e.id, SHOWN, None, True) for e in live}}

    return SiteSection(
        name="releases",
        title="Releases",
        follows=("environment", "job"),
        load=load,
    )
