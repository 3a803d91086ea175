"""The domains section of a site's page (`Parts.site_sections`): each environment's
domains with their status, certificate expiry and last error, the buttons their
`actions` allow, and a form to add one."""

from __future__ import annotations

import sqlite3
from typing import Any

from pressluft.clock import Clock, format_ts
from pressluft.contexts.domains.queries import list_domains
from pressluft.contexts.sites import SiteSection, SiteView

__all__ = ["domains_section"]


def domains_section(clock: Clock) -> SiteSection:
    def load(conn: sqlite3.Connection, site: SiteView) -> dict[str, Any]:
        now = format_ts(clock.now())
        live = [e for e in site.environments if e.status != "deleted"]
        return {
            "now": now,
            "domains": {e.id: list_domains(conn, e.id, now) for e in live},
        }

    # `domain`/`certificate` events name their rows (data-domain-id, data-certificate-id);
    # a domain job's end is a `job` event of the site.
    return SiteSection(
        name="domains",
        title="Domains",
        follows=("domain", "certificate", "job", "environment"),
        load=load,
    )
