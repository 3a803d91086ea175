"""Staging and clone environments, deletion and reset: the commands.

Creating an environment records `environment.created` (type `staging` or
`clone`, a copy of an active environment of the same site, on its node) with
fresh sealed secrets and queues `env_create` — or, for a copy filled from a backup,
the job a `BackupSource` names (the backups capability's); deleting records
`environment.deletion_requested` and queues `env_delete` (or `site_delete` for
a site's production environment, which takes the site along) — each in one
transaction. Reset is synchronous: `failed → active` after its checks. The
jobs' workers are in `workers`. See specs/sites.md.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec

from pressluft.contexts.nodes import ConfirmationRequired
from pressluft.contexts.sites.creation import (
    lab_http_port,
    preview_address,
    preview_url,
    secret_password,
)
from pressluft.contexts.sites.events import (
    EnvironmentCreated,
    EnvironmentDeletionRequested,
    EnvironmentReset,
    SiteReset,
)
from pressluft.contexts.sites.magic_login import EnvironmentNotActive
from pressluft.contexts.sites.queries import (
    EnvironmentNotFound,
    SiteNotFound,
    get_environment,
    get_site,
)
from pressluft.contexts.sites.workers import EnvCreate, EnvCreateArgs, EnvDelete, SiteDelete
from pressluft.db import WriteTx
from pressluft.errors import BadRequest, Conflict, ValidationFailed
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.workers import JobWorker, NoArgs, enqueue_job
from pressluft.names import NAME_RULE, is_printable_name
from pressluft.vault import Vault

__all__ = [
    "BackupSource",
    "CreateEnvironmentRequest",
    "DeletionAccepted",
    "EnvironmentAccepted",
    "FromBackup",
    "ResetResult",
    "create_environment_command",
    "delete_environment_command",
    "delete_site_command",
    "reset_environment_command",
    "reset_site_command",
]


class SiteHasEnvironments(Conflict):
    """A site's production environment goes last."""

    code = "site_has_environments"


class ResourceNotFailed(Conflict):
    code = "resource_not_failed"


class ResetValidationFailed(Conflict):
    code = "reset_validation_failed"


class CreateEnvironmentRequest(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    name: str
    slug: str
    type: Literal["staging", "clone"]
    #: Exactly one source: an environment of the site, or a backup of one (absent, not
    #: null, when not given: the contract's strings are not nullable).
    source_environment_id: str | msgspec.UnsetType = msgspec.UNSET
    source_backup_id: str | msgspec.UnsetType = msgspec.UNSET
    promotion_preset: Literal["content-protect", "commerce-protect"] = "content-protect"


@dataclass(frozen=True)
class FromBackup:
    """How a new environment is filled from a backup: the environment the backup is
    of (the copy's base, on its node) and the job that builds and restores it."""

    environment_id: str
    worker: type[JobWorker[Any]]
    args: msgspec.Struct


@runtime_checkable
class BackupSource(Protocol):
    """Restores into a new environment (the backups capability's, through
    `Parts.backup_sources`): checks a backup in the command's transaction — raising
    the API error that refuses it — and names the job."""

    def plan(self, conn: sqlite3.Connection, site_id: str, backup_id: str) -> FromBackup: ...


class EnvironmentAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    environment_id: str


class DeletionAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class ResetResult(msgspec.Struct, frozen=True, kw_only=True):
    success: bool
    status: str


_SLUG = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")


def _check_environment(request: CreateEnvironmentRequest) -> None:
    errors = []
    name = request.name
    if not is_printable_name(name):
        errors.append(("name", NAME_RULE))
    if not _SLUG.fullmatch(request.slug):
        errors.append(("slug", "1-40 lowercase letters, digits and dashes"))
    if request.slug == "production":
        errors.append(("slug", "production is the site's production environment"))
    sources = [
        (field, value)
        for field, value in (
            ("source_environment_id", request.source_environment_id),
            ("source_backup_id", request.source_backup_id),
        )
        if not isinstance(value, msgspec.UnsetType)
    ]
    if len(sources) != 1:
        errors.append(("source_environment_id", "exactly one of source_environment_id and"
                       " source_backup_id"))  # fmt: skip
    for field, value in sources:
        if not is_uuid(value):
            errors.append((field, "an id (UUID)"))
    if errors:
        raise BadRequest(
            "invalid environment",
            details={"errors": [{"field": f, "message": m, "in": "body"} for f, m in errors]},
        )


def _not_building(status: str, what: str) -> Conflict:
    return Conflict(
        f"{what} is {status}: a job is changing it",
        details={"status": status, "hint": "wait for its job to end (or cancel it), then retry"},
    )


def create_environment_command(
    site_id: str,
    request: CreateEnvironmentRequest,
    vault: Vault,
    meta: Meta,
    backups: BackupSource | None = None,
) -> Callable[[WriteTx], EnvironmentAccepted]:
    """Record a staging or clone environment of the site; queue `env_create` (a copy
    of the source environment) or the job `backups` names (the copy filled from a
    backup of it)."""
    _check_environment(request)

    def command(tx: WriteTx) -> EnvironmentAccepted:
        site = get_site(tx.conn, site_id)
        plan = None
        backup_id = request.source_backup_id if isinstance(request.source_backup_id, str) else None
        source_id = request.source_environment_id
        if backup_id is not None:
            if backups is None:
                raise ValidationFailed("this daemon cannot restore backups")
            plan = backups.plan(tx.conn, site_id, backup_id)
            source_id = plan.environment_id
        source = next((e for e in site.environments if e.id == source_id), None)
        if source is None or source.status == "deleted":
            field = "source_environment_id" if plan is None else "source_backup_id"
            what = "a live environment of this site" if plan is None else (
                "a backup of a live environment of this site")  # fmt: skip
            raise ValidationFailed(
                "no such environment on this site",
                details={"errors": [{"field": field, "message": what, "in": "body"}]},
            )
        if site.status != "active":
            raise _not_building(site.status, f"site {site.slug}")
        if source.status != "active":
            hint = "clone an active environment" if plan is None else (
                "a backup is restored into a copy of the environment it was taken of:"
                " that environment must be active")  # fmt: skip
            raise EnvironmentNotActive(
                f"the source environment is {source.status}, not active",
                details={"status": source.status, "hint": hint},
            )
        taken = next(
            (e for e in site.environments if e.slug == request.slug and e.status != "deleted"),
            None,
        )
        if taken is not None:
            raise Conflict(
                f"site {site.slug} has an environment {request.slug}",
                details={"environment_id": taken.id, "hint": "choose another slug"},
            )
        node = tx.conn.execute(
            "SELECT status, host, public_ip, provider, ports_json FROM nodes WHERE id = ?",
            (source.node_id,),
        ).fetchone()
        if node is None or node[0] == "decommissioned":
            raise ValidationFailed("the source environment's node is gone")
        (preview_domain,) = tx.conn.execute(
            "SELECT (SELECT preview_domain FROM settings WHERE id = 1)"
        ).fetchone()
        environment_id = new_id()
        url = preview_url(
            environment_id,
            preview_domain,
            preview_address(node[2], node[1]),
            lab_http_port(node[3], node[4]),
        )
        created = EnvironmentCreated(
            environment_id=environment_id,
            site_id=site_id,
            name=request.name,
            slug=request.slug,
            environment_type=request.type,
            node_id=source.node_id,
            preview_url=url,
            db_secret_id=vault.seal(
                tx.conn, "environment_db_password", secret_password(), tx.now_ts
            ),
            admin_secret_id=vault.seal(
                tx.conn, "environment_admin_password", secret_password(), tx.now_ts
            ),
            source_environment_id=source.id,
            promotion_preset=request.promotion_preset,
            fastcgi_cache_enabled=source.fastcgi_cache_enabled,
            redis_cache_enabled=source.redis_cache_enabled,
            # The copied database's administrator; its password is the clone's own.
            admin_user=source.admin_user,
            source_backup_id=backup_id,
        )
        append(tx, f"environment:{environment_id}", NO_STREAM, [created], meta)
        worker, args = (
            (EnvCreate, EnvCreateArgs(source_environment_id=source.id))
            if plan is None
            else (plan.worker, plan.args)
        )
        job_id = enqueue_job(
            tx,
            worker,
            args,
            meta,
            site_id=site_id,
            environment_id=environment_id,
            node_id=source.node_id,
            holds=("environment", environment_id, "cloning"),
        )
        return EnvironmentAccepted(job_id=job_id, environment_id=environment_id)

    return command


def _deletion(
    tx: WriteTx,
    worker: type[EnvDelete],
    environment_id: str,
    node_id: str,
    site_id: str,
    meta: Meta,
) -> DeletionAccepted:
    job_id = enqueue_job(
        tx,
        worker,
        NoArgs(),
        meta,
        site_id=site_id,
        environment_id=environment_id,
        node_id=node_id,
        holds=("environment", environment_id, "deleting"),
    )
    event = EnvironmentDeletionRequested(environment_id=environment_id, job_id=job_id)
    append(tx, f"environment:{environment_id}", None, [event], meta)
    return DeletionAccepted(job_id=job_id)


def _confirmed(confirm: str | None, slug: str, what: str) -> None:
    if confirm != slug:
        raise ConfirmationRequired(
            f"deleting {what} {slug} needs confirmation",
            details={"hint": f"repeat its slug: ?confirm={slug}"},
        )


def delete_environment_command(
    environment_id: str, confirm: str | None, meta: Meta
) -> Callable[[WriteTx], DeletionAccepted]:
    """Queue the deletion of a staging or clone environment (`env_delete`)."""

    def command(tx: WriteTx) -> DeletionAccepted:
        env = get_environment(tx.conn, environment_id)
        if env.status == "deleted":
            raise EnvironmentNotFound(f"environment {environment_id} is deleted")
        if env.environment_type == "production":
            raise Conflict(
                "the production environment goes only with its site",
                details={"hint": f"delete the site: DELETE /api/sites/{env.site_id}"},
            )
        _confirmed(confirm, env.slug, "environment")
        if env.status not in ("active", "failed"):
            raise _not_building(env.status, f"environment {env.slug}")
        return _deletion(tx, EnvDelete, env.id, env.node_id, env.site_id, meta)

    return command


def delete_site_command(
    site_id: str, confirm: str | None, meta: Meta
) -> Callable[[WriteTx], DeletionAccepted]:
    """Queue the deletion of a site: its production environment (`site_delete`),
    once every other environment is deleted."""

    def command(tx: WriteTx) -> DeletionAccepted:
        site = get_site(tx.conn, site_id)
        if site.status == "deleted":
            raise SiteNotFound(f"site {site_id} is deleted")
        _confirmed(confirm, site.slug, "site")
        others = [
            e.slug
            for e in site.environments
            if e.environment_type != "production" and e.status != "deleted"
        ]
        if others:
            raise SiteHasEnvironments(
                f"site {site.slug} still has {len(others)} other environment(s)",
                details={
                    "environments": others,
                    "hint": "delete its staging and clone environments first",
                },
            )
        if site.status not in ("active", "failed"):
            raise _not_building(site.status, f"site {site.slug}")
        production = next(e for e in site.environments if e.id == site.primary_environment_id)
        return _deletion(tx, SiteDelete, production.id, production.node_id, site.id, meta)

    return command


def _reset_problem(conn: sqlite3.Connection, environment_id: str) -> tuple[str, str] | None:
    """Why a failed environment cannot serve again (reason, hint), or None."""
    site_id, release, node_status = conn.execute(
        "SELECT e.site_id, e.current_release_id, n.status FROM environments e"
        " JOIN nodes n ON n.id = e.node_id WHERE e.id = ?",
        (environment_id,),
    ).fetchone()
    busy = conn.execute(
        "SELECT id FROM jobs WHERE site_id = ? AND status IN ('queued', 'running') LIMIT 1",
        (site_id,),
    ).fetchone()
    if busy is not None:
        return (f"job {busy[0]} of the site is in flight", "wait for it to end, then reset")
    last = conn.execute(
        "SELECT job_type, started_at FROM jobs WHERE environment_id = ? ORDER BY rowid DESC"
        " LIMIT 1",
        (environment_id,),
    ).fetchone()
    # A deletion that never started removed nothing; one that ran may have removed anything.
    if last is not None and last[0] in ("env_delete", "site_delete") and last[1] is not None:
        return ("its deletion failed part-way", "delete it again")
    if release is None:
        return ("it was never built (no release)", "delete it and create it again")
    if node_status == "decommissioned":
        return ("its node is decommissioned", "delete it")
    return None


def _reset_refused(problem: tuple[str, str]) -> ResetValidationFailed:
    reason, hint = problem
    return ResetValidationFailed(
        f"cannot reset: {reason}", details={"reason": reason, "hint": hint}
    )


def reset_environment_command(environment_id: str, meta: Meta) -> Callable[[WriteTx], ResetResult]:
    """`failed → active` after its checks (a production environment's site follows)."""

    def command(tx: WriteTx) -> ResetResult:
        env = get_environment(tx.conn, environment_id)
        if env.status != "failed":
            raise ResourceNotFailed(
                f"the environment is {env.status}, not failed", details={"status": env.status}
            )
        problem = _reset_problem(tx.conn, env.id)
        if problem is not None:
            raise _reset_refused(problem)
        append(tx, f"environment:{env.id}", None, [EnvironmentReset(environment_id=env.id)], meta)
        return ResetResult(success=True, status="active")

    return command


def reset_site_command(site_id: str, meta: Meta) -> Callable[[WriteTx], ResetResult]:
    """A failed site (and its failed production environment) `→ active` after the
    production environment's checks."""

    def command(tx: WriteTx) -> ResetResult:
        site = get_site(tx.conn, site_id)
        if site.status != "failed":
            raise ResourceNotFailed(
                f"the site is {site.status}, not failed", details={"status": site.status}
            )
        production = next(e for e in site.environments if e.id == site.primary_environment_id)
        if production.status not in ("failed", "active"):
            raise _reset_refused(
                (f"its production environment is {production.status}", "wait, then reset")
            )
        problem = _reset_problem(tx.conn, production.id)
        if problem is not None:
            raise _reset_refused(problem)
        append(tx, f"site:{site.id}", None, [SiteReset(site_id=site.id)], meta)
        if production.status == "failed":
            event = EnvironmentReset(environment_id=production.id)
            append(tx, f"environment:{production.id}", None, [event], meta)
        return ResetResult(success=True, status="active")

    return command
