"""The domains section of a site's page (`Parts.site_sections`): each environment's
domains with their status, certificate expiry and last error, the buttons their
`actions` allow, and a form to add one. The certificates page: every certificate
the control plane holds (custom domains' and nodes' preview wildcards) with its
expiry, renewal state and a button to renew or reissue it now."""

from __future__ import annotations

import sqlite3
from typing import Any

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Template

from pressluft.clock import Clock, format_ts
from pressluft.contexts.access import Principal
from pressluft.contexts.domains.queries import list_domains
from pressluft.contexts.domains.service import Domains
from pressluft.contexts.sites import SiteSection, SiteView
from pressluft.http.pages import PAGE

__all__ = ["PAGES", "domains_section"]


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


@get("/certificates", include_in_schema=False, media_type="text/html", opt=PAGE)
async def certificates_page(
    domains: NamedDependency[Domains], principal: NamedDependency[Principal]
) -> Template:
    inventory = await domains.inventory()
    return Template(
        template_name="certificates.html",
        context={"page": "certificates", "principal": principal, "inventory": inventory},
    )


PAGES = [certificates_page]
