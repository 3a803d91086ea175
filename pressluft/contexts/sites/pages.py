"""The sites' dashboard pages: the list (`/sites`), a site's page (`/sites/{id}`:
server-rendered sections, one per capability) and each section alone as an HTML
fragment (`/sites/{id}/sections/{name}`), which the page fetches again when an
event concerns it (`SITE_SECTIONS`). Forms and actions talk only to the API."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from litestar.response import Template

from pressluft.contexts.access import Principal
from pressluft.contexts.operations import JobQuery, list_jobs
from pressluft.contexts.sites.queries import SiteView
from pressluft.contexts.sites.service import Sites
from pressluft.errors import NotFound
from pressluft.http.pages import PAGE

__all__ = ["PAGES", "SITE_SECTIONS", "SiteSection"]


@get("/sites", include_in_schema=False, media_type="text/html", opt=PAGE)
async def sites_page(principal: NamedDependency[Principal]) -> Template:
    return Template(template_name="sites.html", context={"page": "sites", "principal": principal})


# -- a site's page: one section per capability ------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SiteSection:
    """One section of a site's page, also served alone as a fragment
    (`/sites/{id}/sections/{name}`) that the page refreshes when an event touches it.

    This capability's sections are `SITE_SECTIONS`; another capability adds one
    through its `Parts.site_sections` (replacing a planned one of its name). Its template
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
    SiteSection(name="cache", title="Cache", follows=("environment",)),
    # Planned: each becomes a real section (a template and what it follows) with its
    # capability, without touching the others.
    SiteSection(name="backups", title="Backups", planned="Backups and restore: not yet."),
    SiteSection(name="domains", title="Domains", planned="Custom domains and TLS: not yet."),
    SiteSection(name="releases", title="Releases", planned="Deploys and rollbacks: not yet."),
)


def _sections(added: tuple[SiteSection, ...]) -> tuple[SiteSection, ...]:
    """The page's sections: this capability's, with the ones other capabilities add
    (`Parts.site_sections`) in place of the planned ones of their name, else after."""
    by_name = {s.name: s for s in added}
    own = tuple(by_name.pop(s.name, s) for s in SITE_SECTIONS)
    return own + tuple(by_name.values())


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


def _loads(
    sections: tuple[SiteSection, ...],
) -> Callable[[sqlite3.Connection, SiteView], dict[str, dict[str, Any]]]:
    """What these sections read besides the site, by section name."""

    def load(conn: sqlite3.Connection, site: SiteView) -> dict[str, dict[str, Any]]:
        return {s.name: s.load(conn, site) if s.load else {} for s in sections}

    return load


@get("/sites/{site_id:str}", include_in_schema=False, media_type="text/html", opt=PAGE)
async def site_page(
    sites: NamedDependency[Sites],
    principal: NamedDependency[Principal],
    site_sections: NamedDependency[tuple[SiteSection, ...]],
    site_id: Annotated[str, PathParameter()],
) -> Template:
    sections = _sections(site_sections)
    try:  # any text: what is not a site's id gets the page below, not an API error
        site, loaded = await sites.read(site_id, _loads(sections))
    except NotFound:
        return _site_not_found(principal)
    return Template(
        template_name="site.html",
        context={
            "page": "sites",
            "principal": principal,
            "site": site,
            "sections": sections,
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
    sites: NamedDependency[Sites],
    principal: NamedDependency[Principal],
    site_sections: NamedDependency[tuple[SiteSection, ...]],
    site_id: Annotated[str, PathParameter()],
    name: Annotated[str, PathParameter()],
) -> Template:
    """One section of a site's page, alone (an HTML fragment, no layout)."""
    section = next((s for s in _sections(site_sections) if s.name == name), None)
    try:
        if section is None:
            raise NotFound(f"no section {name}")
        site, loaded = await sites.read(site_id, _loads((section,)))
    except NotFound:
        return Template(template_name="site/gone.html", status_code=404)
    return Template(
        template_name=section.template,
        context={"principal": principal, "site": site, "section": section, "data": loaded[name]},
    )


PAGES = (sites_page, site_page, site_section)
