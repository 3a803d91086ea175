"""Sites and environments as the API shows them: their views, what may be done to
them now (`site_actions`, `environment_actions`: the server's rules), and the
queries that read them (a page of sites in two queries, never N+1)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from pressluft.errors import NotFound
from pressluft.ids import is_uuid

__all__ = [
    "STATUSES",
    "EnvironmentNotFound",
    "EnvironmentView",
    "SiteNotFound",
    "SitePage",
    "SiteQuery",
    "SiteView",
    "environment_actions",
    "get_environment",
    "get_site",
    "list_environments",
    "list_sites",
    "site_actions",
]

STATUSES = (
    "creating",
    "active",
    "cloning",
    "deploying",
    "restoring",
    "failed",
    "deleting",
    "deleted",
)


class SiteNotFound(NotFound):
    pass


class EnvironmentNotFound(NotFound):
    pass


# -- views ---------------------------------------------------------------------------------


class EnvironmentView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    site_id: str
    name: str
    slug: str
    environment_type: str
    status: str
    node_id: str
    source_environment_id: str | None
    #: The backup of its source it was filled from (restored into a new environment).
    source_backup_id: str | None
    preview_url: str
    fastcgi_cache_enabled: bool
    redis_cache_enabled: bool
    current_release_id: str | None
    wordpress_version: str | None
    health_status: str
    health_checked_at: str | None
    promotion_preset: str
    #: The WordPress administrator magic login signs in as.
    admin_user: str
    created_at: str
    updated_at: str
    deleted_at: str | None
    state_version: int
    #: What may be done to it now (`environment_actions`).
    actions: list[str]


class SiteView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    slug: str
    status: str
    primary_environment_id: str | None
    #: The production environment's node and preview URL (null once deleted).
    node_id: str | None
    preview_url: str | None
    environments: list[EnvironmentView]
    created_at: str
    updated_at: str
    deleted_at: str | None
    state_version: int
    #: What may be done to it now (`site_actions`).
    actions: list[str]


class SitePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[SiteView]
    next_before: int | None
    has_more: bool


class SiteQuery(msgspec.Struct, frozen=True, kw_only=True):
    status: str | None = None
    node_id: str | None = None
    before: int | None = None
    limit: int = 50


# -- actions: what may be done now, the server's rules (SIT-15, SIT-16) -----------------
#
# One function per view, from the view's own fields: pages render buttons from these
# lists instead of repeating the rules. The commands still check everything.


def environment_actions(environment_type: str, status: str, site_status: str) -> list[str]:
    """The actions an environment offers now (the contract's `EnvironmentAction`)."""
    actions = []
    if status == "active":
        actions.append("magic_login")
        if site_status == "active":  # a site with a job changing it takes no new copy
            actions.append("clone")
        actions += ["cache_toggle", "cache_purge"]  # specs/cache.md
    if environment_type != "production" and status in ("active", "failed"):
        actions.append("delete")  # production goes only with its site
    if status == "failed":
        actions.append("reset")
    return actions


def site_actions(status: str, environments: list[EnvironmentView]) -> list[str]:
    """The actions a site offers now (the contract's `SiteAction`)."""
    actions = []
    if status == "active" and any("clone" in e.actions for e in environments):
        actions.append("create_environment")
    others = [
        e for e in environments if e.environment_type != "production" and e.status != "deleted"
    ]
    if status in ("active", "failed") and not others:
        actions.append("delete")  # its staging and clone environments go first
    if status == "failed":
        actions.append("reset")
    return actions


# -- views --------------------------------------------------------------------------------

#: An environment's columns, and its site's status (for its actions), from `environments e`.
_ENV_COLUMNS = (
    "e.id, e.site_id, e.name, e.slug, e.environment_type, e.status, e.node_id,"
    " e.source_environment_id, e.preview_url, e.fastcgi_cache_enabled, e.redis_cache_enabled,"
    " e.current_release_id, e.wordpress_version, e.health_status, e.health_checked_at,"
    " e.promotion_preset, e.admin_user, e.created_at, e.updated_at, e.deleted_at,"
    " e.state_version, (SELECT s.status FROM sites s WHERE s.id = e.site_id),"
    " e.source_backup_id"
)


def _env_view(row: tuple[Any, ...]) -> EnvironmentView:
    (env_id, site_id, name, slug, kind, status, node_id, source, preview, fastcgi, redis,
     release, version, health, checked, preset, admin, created, updated, deleted,
     state, site_status, backup) = row  # fmt: skip
    return EnvironmentView(
        id=env_id,
        site_id=site_id,
        name=name,
        slug=slug,
        environment_type=kind,
        status=status,
        node_id=node_id,
        source_environment_id=source,
        source_backup_id=backup,
        preview_url=preview,
        fastcgi_cache_enabled=bool(fastcgi),
        redis_cache_enabled=bool(redis),
        current_release_id=release,
        wordpress_version=version,
        health_status=health,
        health_checked_at=checked,
        promotion_preset=preset,
        admin_user=admin,
        created_at=created,
        updated_at=updated,
        deleted_at=deleted,
        state_version=int(state),
        actions=environment_actions(kind, status, site_status),
    )


def _environments_of(
    conn: sqlite3.Connection, site_ids: list[str]
) -> dict[str, list[EnvironmentView]]:
    """The environments of these sites, in one query (a page of sites is not N+1)."""
    found: dict[str, list[EnvironmentView]] = {site_id: [] for site_id in site_ids}
    if not site_ids:
        return found
    marks = ", ".join("?" * len(site_ids))
    rows = conn.execute(
        f"SELECT {_ENV_COLUMNS} FROM environments e WHERE e.site_id IN ({marks})"
        " ORDER BY e.created_at, e.id",
        site_ids,
    ).fetchall()
    for row in rows:
        view = _env_view(row)
        found[view.site_id].append(view)
    return found


def _environments(conn: sqlite3.Connection, site_id: str) -> list[EnvironmentView]:
    return _environments_of(conn, [site_id])[site_id]


_SITE_COLUMNS = (
    "id, name, slug, status, primary_environment_id, created_at, updated_at, deleted_at,"
    " state_version, rowid"
)


def _site_view(row: tuple[Any, ...], environments: list[EnvironmentView]) -> SiteView:
    site_id, name, slug, status, primary, created, updated, deleted, state, _ = row
    production = next((e for e in environments if e.id == primary), None)
    return SiteView(
        id=site_id,
        name=name,
        slug=slug,
        status=status,
        primary_environment_id=primary,
        node_id=None if production is None else production.node_id,
        preview_url=None if production is None else production.preview_url,
        environments=environments,
        created_at=created,
        updated_at=updated,
        deleted_at=deleted,
        state_version=int(state),
        actions=site_actions(status, environments),
    )


def _site_views(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[SiteView]:
    """Views of these site rows: two queries in all, however many sites."""
    environments = _environments_of(conn, [str(r[0]) for r in rows])
    return [_site_view(r, environments[str(r[0])]) for r in rows]


# -- queries ----------------------------------------------------------------------------


def list_sites(conn: sqlite3.Connection, query: SiteQuery) -> SitePage:
    where: list[str] = []
    params: list[object] = []
    if query.status is not None:
        where.append("status = ?")
        params.append(query.status)
    if query.node_id is not None:
        where.append("id IN (SELECT site_id FROM environments WHERE node_id = ?)")
        params.append(query.node_id)
    if query.before is not None:
        where.append("rowid < ?")
        params.append(query.before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {_SITE_COLUMNS} FROM sites {clause} ORDER BY rowid DESC LIMIT ?",
        [*params, query.limit + 1],
    ).fetchall()
    has_more = len(rows) > query.limit
    rows = rows[: query.limit]
    return SitePage(
        items=_site_views(conn, rows),
        next_before=int(rows[-1][-1]) if has_more else None,
        has_more=has_more,
    )


def get_site(conn: sqlite3.Connection, site_id: str) -> SiteView:
    row = None
    if is_uuid(site_id):
        row = conn.execute(f"SELECT {_SITE_COLUMNS} FROM sites WHERE id = ?", (site_id,)).fetchone()
    if row is None:
        raise SiteNotFound(f"no site {site_id}")
    return _site_views(conn, [row])[0]


def list_environments(conn: sqlite3.Connection, site_id: str) -> list[EnvironmentView]:
    get_site(conn, site_id)
    return _environments(conn, site_id)


def get_environment(conn: sqlite3.Connection, environment_id: str) -> EnvironmentView:
    row = None
    if is_uuid(environment_id):
        row = conn.execute(
            f"SELECT {_ENV_COLUMNS} FROM environments e WHERE e.id = ?", (environment_id,)
        ).fetchone()
    if row is None:
        raise EnvironmentNotFound(f"no environment {environment_id}")
    return _env_view(row)
