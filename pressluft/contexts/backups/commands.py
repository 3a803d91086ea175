"""Backups: the commands (configure a target, back up, restore) and what the
jobs record through their port (a pre-operation backup, a backup's start in its
site's repository, a spent target's removal).

Each command is one transaction: its event(s) and its job. Rules (specs/backups.md):
a backup needs a target for its site (its own, else the default) and an active
environment; a restore takes a completed backup of the same environment, whose
scope covers the one asked for, confirmed with the environment's slug, and holds
the environment `restoring`. A target is its place (endpoint, bucket, prefix) in its
scope: set again there it gets a new key; replaced or removed while backups are in
it, it is retired, not forgotten (BAK-15 … 19).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal

import msgspec

from pressluft.clock import format_ts, parse_ts
from pressluft.contexts.backups.events import (
    LEGACY_TARGET_ID,
    BackupRepositoryAdopted,
    BackupRepositoryCreated,
    BackupRequested,
    BackupStarted,
    BackupTargetConfigured,
    BackupTargetRemoved,
    BackupTargetRetired,
    Reason,
    Scope,
)
from pressluft.contexts.nodes import ConfirmationRequired
from pressluft.contexts.sites import (
    EnvironmentNotActive,
    EnvironmentRestoreRequested,
    get_environment,
)
from pressluft.db import WriteTx
from pressluft.errors import Conflict, NotFound
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.workers import JobWorker, Sealer, enqueue_job
from pressluft.vault import Vault

__all__ = [
    "RETENTION_DAYS",
    "BackupAccepted",
    "BackupArgs",
    "BackupNotConfigured",
    "BackupNotFound",
    "BackupNotRestorable",
    "CreateBackupRequest",
    "JobAccepted",
    "RestoreArgs",
    "RestoreRequest",
    "TargetRequest",
    "configure_target_command",
    "record_backup_request",
    "remove_spent_targets_command",
    "remove_target_command",
    "request_backup_command",
    "request_pre_backup_command",
    "require_site",
    "restore_command",
    "retention_until",
    "start_backup_command",
    "target_in_effect",
]

#: How long a backup is kept (reference: 30 days; a pre-operation backup as long).
RETENTION_DAYS = 30
TARGET_STREAM = "backup_target"

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


class TargetRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    endpoint: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+$", max_length=255)]
    region: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9-]{0,32}$")] = "us-east-1"
    bucket: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    prefix: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$",
                                        max_length=200)] = ""  # fmt: skip
    access_key_id: Name
    secret_access_key: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class CreateBackupRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    scope: Scope = "full"


class RestoreRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    backup_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    #: What to restore of it (default: all it holds).
    scope: Scope | None = None


class BackupAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    backup_id: str


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class BackupArgs(msgspec.Struct, frozen=True, kw_only=True):
    backup_id: str


class RestoreArgs(msgspec.Struct, frozen=True, kw_only=True):
    backup_id: str
    scope: Literal["db", "files", "full"]


class BackupNotFound(NotFound):
    pass


class BackupNotConfigured(Conflict):
    code = "backup_not_configured"


class BackupNotRestorable(Conflict):
    code = "backup_not_restorable"


def retention_until(now: str, days: int = RETENTION_DAYS) -> str:
    return format_ts(parse_ts(now) + timedelta(days=days))


# -- targets -------------------------------------------------------------------------------


def _target_stream(target_id: str) -> str:
    """The stream of a target's events (the one of before per-site targets: `backup_target`)."""
    return TARGET_STREAM if target_id == LEGACY_TARGET_ID else f"{TARGET_STREAM}:{target_id}"


def require_site(conn: sqlite3.Connection, site_id: str) -> str:
    """The site's status (404 for no such site)."""
    row = None
    if is_uuid(site_id):
        row = conn.execute("SELECT status FROM sites WHERE id = ?", (site_id,)).fetchone()
    if row is None:
        raise NotFound(f"no site {site_id}")
    return str(row[0])


def _require_live_site(conn: sqlite3.Connection, site_id: str) -> None:
    if require_site(conn, site_id) == "deleted":
        raise Conflict(
            "the site is deleted: it takes no backup any more",
            details={"status": "deleted", "hint": "give a target to a site that is not deleted"},
        )


def target_in_effect(conn: sqlite3.Connection, site_id: str | None) -> tuple[str, str] | None:
    """The target a site's backups go to — its own, else the default (`site_id` None:
    the default only) — as (id, secret id); None without one."""
    row = conn.execute(
        "SELECT id, secret_id FROM backup_targets WHERE status = 'active'"
        " AND (site_id IS NULL OR site_id = ?) ORDER BY site_id IS NULL LIMIT 1",
        (site_id,),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _own_target(conn: sqlite3.Connection, site_id: str | None) -> tuple[str, str] | None:
    """The active target of one scope (a site's own, or the default): (id, secret id)."""
    row = conn.execute(
        "SELECT id, secret_id FROM backup_targets WHERE status = 'active' AND site_id IS ?",
        (site_id,),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _holds_backups(conn: sqlite3.Connection, target_id: str) -> bool:
    """Whether a backup being stored (running) or kept (completed) is in a repository
    of the target: what keeps a retired target and its key."""
    row = conn.execute(
        "SELECT 1 FROM backup_repositories r JOIN backups b ON b.storage_path = r.url"
        " WHERE r.target_id = ? AND b.status IN ('running', 'completed') LIMIT 1",
        (target_id,),
    ).fetchone()
    return row is not None


def _let_go(tx: WriteTx, target_id: str, secret_id: str, meta: Meta) -> None:
    """A target no longer in effect: retired while backups are in it (its key kept
    for them), else removed with its key (BAK-17)."""
    if _holds_backups(tx.conn, target_id):
        append(tx, _target_stream(target_id), None, [BackupTargetRetired(target_id=target_id)],
               meta)  # fmt: skip
        return
    append(tx, _target_stream(target_id), None, [BackupTargetRemoved(target_id=target_id)], meta)
    Vault.destroy(tx.conn, secret_id)


def configure_target_command(
    vault: Vault, request: TargetRequest, meta: Meta, site_id: str | None = None
) -> Callable[[WriteTx], str]:
    """Record a target that passed its probe (the caller probed it) as the one in
    effect for its scope — the default, or the site's own: the same place as a target
    of the scope has (active or retired) is that target with a new key (its old key
    destroyed); another place is a new target, and the one it replaces is let go.
    Its id."""

    def command(tx: WriteTx) -> str:
        if site_id is not None:
            _require_live_site(tx.conn, site_id)
        current = _own_target(tx.conn, site_id)
        same = tx.conn.execute(
            "SELECT id, secret_id FROM backup_targets WHERE site_id IS ? AND endpoint = ?"
            " AND bucket = ? AND prefix = ?",
            (site_id, request.endpoint, request.bucket, request.prefix),
        ).fetchone()
        target_id = new_id() if same is None else str(same[0])
        if current is not None and current[0] != target_id:
            _let_go(tx, current[0], current[1], meta)
        secret_id = vault.seal(
            tx.conn, "backup_target", request.secret_access_key.encode(), tx.now_ts
        )
        event = BackupTargetConfigured(
            endpoint=request.endpoint,
            region=request.region,
            bucket=request.bucket,
            prefix=request.prefix,
            access_key_id=request.access_key_id,
            secret_id=secret_id,
            target_id=target_id,
            site_id=site_id,
        )
        append(tx, _target_stream(target_id), None, [event], meta)
        if same is not None:
            Vault.destroy(tx.conn, str(same[1]))
        return target_id

    return command


def remove_target_command(meta: Meta, site_id: str | None = None) -> Callable[[WriteTx], None]:
    """No target of this scope any more (the site's: the default applies again); the
    one there was is let go (retired while backups are in it)."""

    def command(tx: WriteTx) -> None:
        if site_id is not None:
            require_site(tx.conn, site_id)
        current = _own_target(tx.conn, site_id)
        if current is None:
            if site_id is None:
                raise BackupNotConfigured("no default backup target is configured")
            raise BackupNotConfigured(
                "the site has no backup target of its own",
                details={"hint": "the default target applies: DELETE /api/backup-target"},
            )
        _let_go(tx, current[0], current[1], meta)

    return command


def _require_target(conn: sqlite3.Connection, site_id: str) -> None:
    if target_in_effect(conn, site_id) is None:
        raise BackupNotConfigured(
            "no backup target is configured",
            details={
                "hint": "configure an S3-compatible target: PUT /api/backup-target (every"
                f" site) or PUT /api/sites/{site_id}/backup-target (this site)"
            },
        )


def remove_spent_targets_command() -> Callable[[WriteTx, Meta], list[str]]:
    """Remove the retired targets no backup being stored or kept is in any more
    (`backup_target.removed`, their keys destroyed): their ids (BAK-29)."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        rows = tx.conn.execute(
            "SELECT id, secret_id FROM backup_targets WHERE status = 'retired' ORDER BY id"
        ).fetchall()
        removed = []
        for target_id, secret_id in rows:
            if _holds_backups(tx.conn, target_id):
                continue
            event = BackupTargetRemoved(target_id=target_id)
            append(tx, _target_stream(target_id), None, [event], meta)
            Vault.destroy(tx.conn, secret_id)
            removed.append(str(target_id))
        return removed

    return command


# -- backups -------------------------------------------------------------------------------


def record_backup_request(
    tx: WriteTx,
    environment_id: str,
    scope: Scope,
    reason: Reason,
    meta: Meta,
    job_id: str | None,
    worker: type[JobWorker[BackupArgs]] | None,
) -> BackupAccepted:
    """Record a backup of the environment (`backup.requested`): taken by the job
    `job_id` (a running job's own), else by a new job of `worker`."""
    env = get_environment(tx.conn, environment_id)
    backup_id = new_id()
    if job_id is None:
        assert worker is not None
        job_id = enqueue_job(
            tx,
            worker,
            BackupArgs(backup_id=backup_id),
            meta,
            site_id=env.site_id,
            environment_id=environment_id,
            node_id=env.node_id,
            holds=("backup", backup_id, "pending"),
        )
    event = BackupRequested(
        backup_id=backup_id,
        site_id=env.site_id,
        environment_id=environment_id,
        node_id=env.node_id,
        scope=scope,
        reason=reason,
        job_id=job_id,
        retention_until=retention_until(tx.now_ts),
    )
    append(tx, f"backup:{backup_id}", NO_STREAM, [event], meta)
    return BackupAccepted(job_id=job_id, backup_id=backup_id)


def request_backup_command(
    environment_id: str,
    scope: Scope,
    reason: Reason,
    meta: Meta,
    worker: type[JobWorker[BackupArgs]],
) -> Callable[[WriteTx], BackupAccepted]:
    """A backup of an active environment: `backup.requested` and its `backup_create` job."""

    def command(tx: WriteTx) -> BackupAccepted:
        env = get_environment(tx.conn, environment_id)  # 404 first
        _require_target(tx.conn, env.site_id)
        if env.status != "active":
            raise EnvironmentNotActive(
                f"the environment is {env.status}, not active",
                details={"status": env.status, "hint": "wait for its job to end, then retry"},
            )
        return record_backup_request(tx, environment_id, scope, reason, meta, None, worker)

    return command


def request_pre_backup_command(
    environment_id: str, reason: Reason, job_id: str
) -> Callable[[WriteTx, Meta], str]:
    """A running job's own backup before it changes the environment (taken by that
    job, not queued): `backup.requested`; its id."""

    def command(tx: WriteTx, meta: Meta) -> str:
        _require_target(tx.conn, get_environment(tx.conn, environment_id).site_id)
        return record_backup_request(
            tx, environment_id, "full", reason, meta, job_id, None
        ).backup_id

    return command


def start_backup_command(
    backup_id: str, job_id: str, target_id: str, url: str, password: str, sealer: Sealer
) -> Callable[[WriteTx, Meta], str | None]:
    """Start a backup in its site's repository `url` in the target `target_id` (BAK-19):
    that repository if it is recorded (taken over when another target held it: the same
    place), else a new one with `password` sealed; then `backup.started`. The repository
    password's vault id — or None when `target_id` is no longer the site's target (it
    changed since the job read it: read it again)."""

    def command(tx: WriteTx, meta: Meta) -> str | None:
        row = tx.conn.execute("SELECT site_id FROM backups WHERE id = ?", (backup_id,)).fetchone()
        if row is None:
            raise BackupNotFound(f"no backup {backup_id}")
        site_id = str(row[0])
        current = target_in_effect(tx.conn, site_id)
        if current is None or current[0] != target_id:
            return None
        stream = f"backup_repository:{site_id}"
        repo = tx.conn.execute(
            "SELECT site_id, target_id, secret_id FROM backup_repositories WHERE url = ?", (url,)
        ).fetchone()
        if repo is None:
            secret_id = sealer(tx.conn, "backup_repository", password.encode(), tx.now_ts)
            created = BackupRepositoryCreated(
                site_id=site_id, url=url, secret_id=secret_id, target_id=target_id
            )
            append(tx, stream, None, [created], meta)
        else:
            owner, held_by, secret_id = repo
            if owner != site_id:
                raise Conflict(f"the repository {url} is another site's")
            if held_by != target_id:
                adopted = BackupRepositoryAdopted(site_id=site_id, url=url, target_id=target_id)
                append(tx, stream, None, [adopted], meta)
        started = BackupStarted(backup_id=backup_id, job_id=job_id, storage_path=url)
        append(tx, f"backup:{backup_id}", None, [started], meta)
        return str(secret_id)

    return command


# -- restore -------------------------------------------------------------------------------

_COVERS = {"full": {"db", "files", "full"}, "db": {"db"}, "files": {"files"}}


def restore_command(
    environment_id: str,
    request: RestoreRequest,
    confirm: str | None,
    meta: Meta,
    worker: type[JobWorker[RestoreArgs]],
) -> Callable[[WriteTx], BackupAccepted]:
    """Restore a completed backup of this environment into it: `environment.restoring`
    and its `env_restore` job (reference scenario 26)."""

    def command(tx: WriteTx) -> BackupAccepted:
        env = get_environment(tx.conn, environment_id)
        row = tx.conn.execute(
            "SELECT environment_id, site_id, status, checksum, backup_scope FROM backups"
            " WHERE id = ?",
            (request.backup_id,),
        ).fetchone()
        if row is None:
            raise BackupNotFound(f"no backup {request.backup_id}")
        backup_env, backup_site, status, checksum, scope = row
        if backup_env != environment_id:
            other = "another site" if backup_site != env.site_id else "another environment"
            raise BackupNotRestorable(
                f"the backup is of {other}",
                details={
                    "backup_environment_id": backup_env,
                    "hint": "restore it into a new environment of its site to inspect it",
                },
            )
        if status != "completed" or checksum is None:
            raise BackupNotRestorable(
                f"the backup is {status}, not completed",
                details={"status": status, "hint": "choose a completed backup"},
            )
        wanted = request.scope or scope
        if wanted not in _COVERS[scope]:
            raise BackupNotRestorable(
                f"a {scope} backup holds no {wanted}",
                details={"backup_scope": scope, "hint": f"restore scope {scope}"},
            )
        if env.status != "active":
            raise EnvironmentNotActive(
                f"the environment is {env.status}, not active",
                details={"status": env.status, "hint": "wait for its job to end, then retry"},
            )
        if confirm != env.slug:
            raise ConfirmationRequired(
                f"restoring into {env.slug} replaces what it serves and needs confirmation",
                details={"hint": f"repeat the environment's slug: ?confirm={env.slug}"},
            )
        _require_target(tx.conn, env.site_id)
        job_id = enqueue_job(
            tx,
            worker,
            RestoreArgs(backup_id=request.backup_id, scope=wanted),
            meta,
            site_id=env.site_id,
            environment_id=environment_id,
            node_id=env.node_id,
            holds=("environment", environment_id, "restoring"),
        )
        event = EnvironmentRestoreRequested(
            environment_id=environment_id, job_id=job_id, backup_id=request.backup_id
        )
        append(tx, f"environment:{environment_id}", None, [event], meta)
        return BackupAccepted(job_id=job_id, backup_id=request.backup_id)

    return command
