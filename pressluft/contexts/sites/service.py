"""Sites and environments: create a site (its production environment built on
an explicit node by the `site_create` job), list and read them, and the names
an environment has on its node.

The command records `site.created` + `environment.created` with the sealed
database and admin passwords and enqueues `site_create` (site, environment and
node locks) in one transaction; the job's handler is in `site_jobs`. Staging
and clone environments, deletion and reset: `environments`. See specs/sites.md.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec

from pressluft.contexts.nodes import NodeNotReady, NodePorts
from pressluft.contexts.sites.events import EnvironmentCreated, SiteCreated
from pressluft.db import WriteTx
from pressluft.errors import BadRequest, Conflict, NotFound, ValidationFailed
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.workers import Loader, enqueue_job
from pressluft.names import NAME_RULE, is_printable_name
from pressluft.vault import Vault

__all__ = [
    "CLONE_SOURCE",
    "ENVIRONMENT_JOB",
    "CreateSiteRequest",
    "EnvironmentJob",
    "EnvironmentView",
    "SiteAccepted",
    "SitePage",
    "SiteQuery",
    "SiteView",
    "create_site_command",
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
#: The time limit of the jobs that build or remove an environment.
ENV_JOB_TIMEOUT_SECONDS = 1800


class SiteNotFound(NotFound):
    pass


class EnvironmentNotFound(NotFound):
    pass


# -- requests and views ---------------------------------------------------------------


class CreateSiteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    slug: str
    node_id: str
    #: The WordPress site title (default: the name).
    title: str | None = None
    admin_email: str | None = None
    #: The WordPress administrator's login (default: `admin-` and 8 random hex digits).
    admin_user: str | None = None


class SiteAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    site_id: str
    environment_id: str


class EnvironmentView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    site_id: str
    name: str
    slug: str
    environment_type: str
    status: str
    node_id: str
    source_environment_id: str | None
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
    " e.state_version, (SELECT s.status FROM sites s WHERE s.id = e.site_id)"
)


def _env_view(row: tuple[Any, ...]) -> EnvironmentView:
    (env_id, site_id, name, slug, kind, status, node_id, source, preview, fastcgi, redis,
     release, version, health, checked, preset, admin, created, updated, deleted,
     state, site_status) = row  # fmt: skip
    return EnvironmentView(
        id=env_id,
        site_id=site_id,
        name=name,
        slug=slug,
        environment_type=kind,
        status=status,
        node_id=node_id,
        source_environment_id=source,
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


# -- commands ---------------------------------------------------------------------------

_SLUG = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: What WordPress's is_email() accepts, in short (an address it refuses fails the install).
#: WordPress's strict user names (sanitize_user(…, true)), without spaces.
_ADMIN_USER = re.compile(r"[A-Za-z0-9_.@-]{1,60}")
_EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@({_LABEL}\.)+[A-Za-z]{{2,63}}")


def _check_site(request: CreateSiteRequest) -> None:
    errors = []
    for field, value in (("name", request.name), ("title", request.title)):
        if value is not None and not is_printable_name(value):
            errors.append((field, NAME_RULE))
    if not _SLUG.fullmatch(request.slug):
        errors.append(("slug", "1-40 lowercase letters, digits and dashes"))
    if not is_uuid(request.node_id):
        errors.append(("node_id", "a node id (UUID)"))
    if request.admin_user is not None and not _ADMIN_USER.fullmatch(request.admin_user):
        errors.append(("admin_user", "1-60 letters, digits and . _ - @ (a WordPress login name)"))
    email = request.admin_email
    if email is not None and not (len(email) <= 254 and _EMAIL.fullmatch(email)):
        errors.append(("admin_email", "an email address"))
    if errors:
        raise BadRequest(
            "invalid site",
            details={"errors": [{"field": f, "message": m, "in": "body"} for f, m in errors]},
        )


def preview_url(
    environment_id: str,
    preview_domain: str | None,
    address: str | None,
    lab_http_port: int | None = None,
) -> str:
    """The reference's rule: `{uuid8}.{preview_domain}`, else
    `{uuid8}.{ip-dashed}.sslip.io`. HTTP for now: the reference's https for a preview
    domain needs the wildcard certificate of DNS-01 provisioning, which nodes do not get
    yet — an https URL nothing serves would be worse (changes/sites/tasks.md).

    A lab node (`lab_http_port`: its web server published on that loopback port of
    the operator's machine) gets `http://{uuid8}.localhost:{port}` instead: browsers
    resolve `*.localhost` to loopback without DNS, and port 80 there is not the node."""
    uuid8 = environment_id[:8]
    if lab_http_port is not None:
        return f"http://{uuid8}.localhost:{lab_http_port}"
    if preview_domain:
        return f"http://{uuid8}.{preview_domain}"
    if address is None:
        raise NodeNotReady(
            "the node has no IP address to build a preview URL from",
            details={"hint": "set the node's public IP, or a preview domain in the settings"},
        )
    return f"http://{uuid8}.{address.replace('.', '-').replace(':', '-')}.sslip.io"


def preview_address(public_ip: str | None, host: str) -> str | None:
    """The node's IP for its environments' preview URLs (its public IP, or its
    address when that is an IP)."""
    for candidate in (public_ip, host):
        if candidate is None:
            continue
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def lab_http_port(provider: str, ports_json: str | None) -> int | None:
    """A lab node's published HTTP port (fixed for its container's life); None for
    other nodes. A container from before fixed web ports gets new ones at every
    start: a URL with its port would break, so it hosts nothing new (node_not_ready)."""
    if provider != "docker" or ports_json is None:
        return None
    ports = msgspec.json.decode(ports_json, type=NodePorts)
    if not ports.web_fixed:
        raise NodeNotReady(
            "this lab node's container predates fixed web ports: its HTTP port changes"
            " at every start, and a URL with it would break",
            details={"hint": "decommission the node and create it again"},
        )
    return ports.http


def secret_password() -> bytes:
    """A fresh password for an environment (database, WordPress admin)."""
    return secrets.token_urlsafe(24).encode()


def _mail_domain(url: str) -> str:
    """The default admin address's domain: the preview host, without a lab node's port."""
    return str(urlsplit(url).hostname)


def create_site_command(
    request: CreateSiteRequest, vault: Vault, meta: Meta
) -> Callable[[WriteTx], SiteAccepted]:
    """Record a site and its production environment; queue `site_create`."""
    _check_site(request)

    def command(tx: WriteTx) -> SiteAccepted:
        node = tx.conn.execute(
            "SELECT name, status, ready, host, public_ip, provider, ports_json FROM nodes"
            " WHERE id = ?",
            (request.node_id,),
        ).fetchone()
        if node is None or node[1] == "decommissioned":
            raise ValidationFailed(
                "no such node",
                details={"errors": [{"field": "node_id", "message": "no live node", "in": "body"}]},
            )
        name, status, ready, host, public_ip, provider, ports_json = node
        if status != "active" or not ready:
            raise NodeNotReady(
                f"node {name} cannot host sites yet ({status}, "
                f"{'ready' if ready else 'not ready'})",
                details={"hint": "provision the node (POST /api/nodes/{id}/provision) first"},
            )
        taken = tx.conn.execute(
            "SELECT id FROM sites WHERE slug = ? AND status != 'deleted'", (request.slug,)
        ).fetchone()
        if taken is not None:
            raise Conflict(
                f"a site with slug {request.slug} exists",
                details={"site_id": taken[0], "hint": "choose another slug"},
            )
        (preview_domain,) = tx.conn.execute(
            "SELECT (SELECT preview_domain FROM settings WHERE id = 1)"
        ).fetchone()
        site_id, environment_id = new_id(), new_id()
        url = preview_url(
            environment_id,
            preview_domain,
            preview_address(public_ip, host),
            lab_http_port(provider, ports_json),
        )
        db_secret = vault.seal(tx.conn, "environment_db_password", secret_password(), tx.now_ts)
        admin_secret = vault.seal(
            tx.conn, "environment_admin_password", secret_password(), tx.now_ts
        )
        site = SiteCreated(
            site_id=site_id,
            name=request.name,
            slug=request.slug,
            primary_environment_id=environment_id,
        )
        environment = EnvironmentCreated(
            environment_id=environment_id,
            site_id=site_id,
            name="Production",
            slug="production",
            environment_type="production",
            node_id=request.node_id,
            preview_url=url,
            db_secret_id=db_secret,
            admin_secret_id=admin_secret,
            admin_user=request.admin_user or f"admin-{secrets.token_hex(4)}",
        )
        append(tx, f"site:{site_id}", NO_STREAM, [site], meta)
        append(tx, f"environment:{environment_id}", NO_STREAM, [environment], meta)
        from pressluft.contexts.sites.workers import SiteCreate, SiteCreateArgs

        args = SiteCreateArgs(
            title=request.title or request.name,
            admin_email=request.admin_email or f"admin@{_mail_domain(url)}",
        )
        job_id = enqueue_job(
            tx,
            SiteCreate,
            args,
            meta,
            site_id=site_id,
            environment_id=environment_id,
            node_id=request.node_id,
            holds=("environment", environment_id, "creating"),
        )
        return SiteAccepted(job_id=job_id, site_id=site_id, environment_id=environment_id)

    return command


# -- what the environment jobs load -----------------------------------------------------


class EnvironmentJob(msgspec.Struct, frozen=True, kw_only=True):
    """What an environment's job needs of it and its node (secrets as vault ids:
    the worker opens them through its port)."""

    site_id: str
    environment_type: str
    status: str
    preview_url: str
    db_secret_id: str | None
    admin_secret_id: str | None
    #: The WordPress administrator (magic login signs in as it).
    admin_user: str
    fastcgi_cache_enabled: bool
    redis_cache_enabled: bool
    source_environment_id: str | None
    host: str
    ports: dict[str, int] | None
    provider: str


def _environment_job(conn: sqlite3.Connection, environment_id: str) -> EnvironmentJob | None:
    row = conn.execute(
        "SELECT e.site_id, e.environment_type, e.status, e.preview_url, e.db_secret_id,"
        " e.admin_secret_id, e.fastcgi_cache_enabled, e.redis_cache_enabled,"
        " e.source_environment_id, n.host, n.ports_json, n.provider, e.admin_user"
        " FROM environments e"
        " JOIN nodes n ON n.id = e.node_id WHERE e.id = ?",
        (environment_id,),
    ).fetchone()
    if row is None:
        return None
    (site_id, kind, status, url, db_secret, admin_secret, fastcgi, redis, source, host, ports,
     provider, admin_user) = row  # fmt: skip
    return EnvironmentJob(
        site_id=site_id,
        environment_type=kind,
        status=status,
        preview_url=url,
        db_secret_id=db_secret,
        admin_secret_id=admin_secret,
        admin_user=str(admin_user),
        fastcgi_cache_enabled=bool(fastcgi),
        redis_cache_enabled=bool(redis),
        source_environment_id=source,
        host=host,
        ports=None if ports is None else msgspec.json.decode(ports),
        provider=provider,
    )


#: An environment as its job sees it (None: no such environment).
ENVIRONMENT_JOB: Loader[str, EnvironmentJob | None] = Loader("environment_job", _environment_job)


def _clone_source(conn: sqlite3.Connection, source_id: str) -> dict[str, object] | None:
    """The source environment of a clone, when it is active with a release."""
    row = conn.execute(
        "SELECT e.site_id, e.preview_url, r.path FROM environments e"
        " JOIN releases r ON r.id = e.current_release_id"
        " WHERE e.id = ? AND e.status = 'active'",
        (source_id,),
    ).fetchone()
    if row is None:
        return None
    site_id, url, release_path = row
    names = env_names(source_id, site_id)
    return {
        "source_environment_id": source_id,
        "source_env_user": names["env_user"],
        "source_env_root": names["env_root"],
        "source_db_name": names["db_name"],
        "source_release_path": release_path,
        "source_preview_url": url,
    }


#: A clone's source: its playbook variables (None: not active with a release).
CLONE_SOURCE: Loader[str, dict[str, object] | None] = Loader("clone_source", _clone_source)


# -- names on the node -------------------------------------------------------------------


def env_names(environment_id: str, site_id: str) -> dict[str, str]:
    """The node-side names of an environment (derived from its id, never user input)."""
    short = environment_id.replace("-", "")[:12]
    return {
        "env_user": f"wp_{short}",
        "env_root": f"/var/www/sites/{site_id}/{environment_id}",
        "db_name": f"wp_{short}",
        "db_user": f"wp_{short}",
        "redis_prefix": f"pressluft_{environment_id}:",
    }
