"""Backups: the commands (configure the target, back up, restore) and what the
jobs record through their port (a pre-operation backup, a site's repository).

Each command is one transaction: its event(s) and its job. Rules (specs/backups.md):
a backup needs a configured target and an active environment; a restore takes a
completed backup of the same environment, whose scope covers the one asked for,
confirmed with the environment's slug, and holds the environment `restoring`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal

import msgspec

from pressluft.clock import format_ts, parse_ts
from pressluft.contexts.backups.events import (
    BackupRepositoryCreated,
    BackupRequested,
    BackupTargetConfigured,
    BackupTargetRemoved,
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
from pressluft.ids import new_id
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
    "create_repository_command",
    "record_backup_request",
    "remove_target_command",
    "request_backup_command",
    "request_pre_backup_command",
    "restore_command",
    "retention_until",
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


# -- the target ----------------------------------------------------------------------------


def configure_target_command(
    vault: Vault, request: TargetRequest, meta: Meta
) -> Callable[[WriteTx], None]:
    """Record a target that passed its probe (the caller probed it): its secret key
    sealed, the previous one's destroyed."""

    def command(tx: WriteTx) -> None:
        old = tx.conn.execute("SELECT secret_id FROM backup_target WHERE id = 1").fetchone()
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
        )
        append(tx, TARGET_STREAM, None, [event], meta)
        if old is not None:
            Vault.destroy(tx.conn, old[0])

    return command


def remove_target_command(meta: Meta) -> Callable[[WriteTx], None]:
    def command(tx: WriteTx) -> None:
        old = tx.conn.execute("SELECT secret_id FROM backup_target WHERE id = 1").fetchone()
        if old is None:
            raise BackupNotConfigured("no backup target is configured")
        append(tx, TARGET_STREAM, None, [BackupTargetRemoved()], meta)
        Vault.destroy(tx.conn, old[0])

    return command


def _require_target(conn: sqlite3.Connection) -> None:
    if conn.execute("SELECT 1 FROM backup_target WHERE id = 1").fetchone() is None:
        raise BackupNotConfigured(
            "no backup target is configured",
            details={"hint": "configure an S3-compatible target: PUT /api/backup-target"},
        )


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
        _require_target(tx.conn)
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
        _require_target(tx.conn)
        return record_backup_request(
            tx, environment_id, "full", reason, meta, job_id, None
        ).backup_id

    return command


def create_repository_command(
    site_id: str, url: str, password: str, sealer: Sealer
) -> Callable[[WriteTx, Meta], str]:
    """A site's repository, its password sealed (once: a repository that exists is kept);
    the URL it has."""

    def command(tx: WriteTx, meta: Meta) -> str:
        row = tx.conn.execute(
            "SELECT url FROM backup_repositories WHERE site_id = ?", (site_id,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        secret_id = sealer(tx.conn, "backup_repository", password.encode(), tx.now_ts)
        event = BackupRepositoryCreated(site_id=site_id, url=url, secret_id=secret_id)
        append(tx, f"backup_repository:{site_id}", NO_STREAM, [event], meta)
        return url

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
        _require_target(tx.conn)
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
