"""The backups section of a site's page (`Parts.site_sections`): the last backup and
the last proven restore of the site, each environment's backups with status,
scope, reason, size and verification, "Back up now" and a restore with typed
confirmation."""

from __future__ import annotations

import sqlite3
from typing import Any

from pressluft.contexts.backups.queries import (
    effective_target,
    list_backups,
    site_backup_summary,
)
from pressluft.contexts.sites import SiteSection, SiteView

__all__ = ["PAGES", "backups_section"]

#: How many backups of an environment the section lists (all: the API pages them).
SHOWN = 10


def backups_section() -> SiteSection:
    def load(conn: sqlite3.Connection, site: SiteView) -> dict[str, Any]:
        live = [e for e in site.environments if e.status != "deleted"]
        target = effective_target(conn, site.id)  # the site's own, else the default
        return {
            "configured": target is not None,
            "target": target,
            "summary": site_backup_summary(conn, site.id),
            "backups": {e.id: list_backups(conn, e.id, SHOWN, None, None) for e in live},
        }

    return SiteSection(
        name="backups",
        title="Backups",
        follows=("backup", "job", "environment"),
        load=load,
    )


PAGES: list[Any] = []
