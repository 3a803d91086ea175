"""Dashboard pages. Forms and actions talk only to the public API (`/api/...`); a
site's page is server-rendered sections that it fetches again, each alone as an HTML
fragment, when an event concerns them (`SITE_SECTIONS`).

Every page but `/login` needs a session (the access guard redirects to `/login`);
pages receive the `principal` to show who is logged in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

from pressluft.api.daemon import Daemon
from pressluft.contexts.access.principals import Principal
from pressluft.contexts.operations.jobs import JobQuery, list_jobs
from pressluft.contexts.sites.queries import SiteView, get_site
from pressluft.errors import NotFound
from pressluft.http.pages import PAGE

__all__ = ["SITE_SECTIONS", "TEMPLATES_DIR", "WEB_ROUTES", "SiteSection"]

_HERE = Path(__file__).parent
TEMPLATES_DIR = _HERE / "templates"
STATIC_DIR = _HERE / "static"


@get("/sites", include_in_schema=False, media_type="text/html", opt=PAGE)
async def sites_page(principal: NamedDependency[Principal]) -> Template:
    return Template(template_name="sites.html", context={"page": "sites", "principal": principal})


# -- a site's page: one section per capability ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SiteSection:
    """One section of a site's page, also served alone as a fragment
    (`/sites/{id}/sections/{name}`) that the page refreshes when an event touches it.

    A capability adds its section by adding one entry to `SITE_SECTIONS`: its template
    (`templates/site/<name>.html`, rendered with `site`, `section`, `principal` and
    `data`: what `load` returns) and which events concern it (`follows`: the kinds
    of event streams — `site`, `environment`, `job` — of this site).
    """

    name: str
    title: str
    follows: tuple[str, ...] = ()
    #: Reads what the template shows besides the site (one read transaction).
    load: Callable[[sqlite3.Connection, SiteView], dict[str, Any]] | None = None
    #: Not built yet: the section says what will be there.
    planned: str | None = None

    @property
    def template(self) -> str:
        return "site/planned.html" if self.planned else f"site/{self.name}.html"


#: How many of a site's jobs its page lists (all of them: `/jobs?site_id=…`).
SITE_JOBS_SHOWN = 20


def _site_jobs(conn: sqlite3.Connection, site: SiteView) -> dict[str, Any]:
    page = list_jobs(conn, JobQuery(site_id=site.id, limit=SITE_JOBS_SHOWN))
    return {"jobs": page.items, "more_jobs": page.has_more}


SITE_SECTIONS: tuple[SiteSection, ...] = (
    SiteSection(name="environments", title="Environments", follows=("site", "environment")),
    SiteSection(name="jobs", title="Jobs", follows=("job",), load=_site_jobs),
    # Planned: each becomes a real section (a template and what it follows) with its
    # capability, without touching the others.
    SiteSection(name="backups", title="Backups", planned="Backups and restore: not yet."),
    SiteSection(name="domains", title="Domains", planned="Custom domains and TLS: not yet."),
    SiteSection(name="cache", title="Cache", planned="FastCGI and Redis cache controls: not yet."),
    SiteSection(name="releases", title="Releases", planned="Deploys and rollbacks: not yet."),
)
_SECTIONS = {section.name: section for section in SITE_SECTIONS}


def _site_not_found(principal: Principal) -> Template:
    return Template(
        template_name="not_found.html",
        context={
            "page": "sites",
            "principal": principal,
            "message": "There is no such site.",
            "back": "/sites",
        },
        status_code=404,
    )


def _read_site(
    conn: sqlite3.Connection, site_id: str, sections: tuple[SiteSection, ...]
) -> tuple[SiteView, dict[str, dict[str, Any]]]:
    site = get_site(conn, site_id)
    return site, {s.name: s.load(conn, site) if s.load else {} for s in sections}


@get("/sites/{site_id:str}", include_in_schema=False, media_type="text/html", opt=PAGE)
async def site_page(
    runtime: NamedDependency[Daemon],
    principal: NamedDependency[Principal],
    site_id: Annotated[str, PathParameter()],
) -> Template:
    try:  # any text: what is not a site's id gets the page below, not an API error
        site, loaded = await runtime.db.read(lambda c: _read_site(c, site_id, SITE_SECTIONS))
    except NotFound:
        return _site_not_found(principal)
    return Template(
        template_name="site.html",
        context={
            "page": "sites",
            "principal": principal,
            "site": site,
            "sections": SITE_SECTIONS,
            "loaded": loaded,
        },
    )


@get(
    "/sites/{site_id:str}/sections/{name:str}",
    include_in_schema=False,
    media_type="text/html",
    opt=PAGE,
)
async def site_section(
    runtime: NamedDependency[Daemon],
    principal: NamedDependency[Principal],
    site_id: Annotated[str, PathParameter()],
    name: Annotated[str, PathParameter()],
) -> Template:
    """One section of a site's page, alone (an HTML fragment, no layout)."""
    section = _SECTIONS.get(name)
    try:
        if section is None:
            raise NotFound(f"no section {name}")
        site, loaded = await runtime.db.read(lambda c: _read_site(c, site_id, (section,)))
    except NotFound:
        return Template(template_name="site/gone.html", status_code=404)
    return Template(
        template_name=section.template,
        context={"principal": principal, "site": site, "section": section, "data": loaded[name]},
    )


WEB_ROUTES: list[ControllerRouterHandler] = [
    sites_page,
    site_page,
    site_section,
    create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
]
