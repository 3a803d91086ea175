"""The backups section of a site's page (`Parts.site_sections`): the last backup,
the last proven restore and the last restore drill of the site, an overdue drill,
throwaways left by killed drills, each environment's backups with status, scope,
reason, size and verification, "Back up now" and a restore with typed confirmation.
The Backups page (`/backups`): the default storage target, the recovery kit and the
control plane's own copies, and a missing copy."""

from __future__ import annotations

import sqlite3
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Template

from pressluft.contexts.access import Principal
from pressluft.contexts.backups.queries import (
    effective_target,
    list_backups,
    site_backup_summary,
)
from pressluft.contexts.backups.service import Backups
from pressluft.contexts.sites import SiteSection, SiteView
from pressluft.http.pages import PAGE

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

    # `backup_schedule` carries the overdue notices, `backup_drill` a drill's throwaway;
    # both name the site.
    return SiteSection(
        name="backups",
        title="Backups",
        follows=("backup", "job", "environment", "backup_schedule", "backup_drill"),
        load=load,
    )


@get("/backups", include_in_schema=False, media_type="text/html", opt=PAGE)
async def backups_page(
    backups: NamedDependency[Backups], principal: NamedDependency[Principal]
) -> Template:
    return Template(
        template_name="backups.html",
        context={"page": "backups", "principal": principal, "overview": await backups.overview()},
    )


PAGES = [backups_page]
