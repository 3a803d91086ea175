"""The backups service routes and pages call: the storage targets — the default and
a site's own — (probed before they are recorded), backups of an environment,
restores; commands run at most once per `Idempotency-Key` through the `Writer`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pressluft.acting import Context
from pressluft.contexts.backups.commands import (
    BackupAccepted,
    BackupNotConfigured,
    BackupNotRestorable,
    CreateBackupRequest,
    JobAccepted,
    RestoreRequest,
    TargetRequest,
    configure_target_command,
    remove_target_command,
    request_backup_command,
    require_site,
    restore_command,
)
from pressluft.contexts.backups.control_plane_worker import ControlPlaneBackup
from pressluft.contexts.backups.drill_worker import BackupVerify, verify_command
from pressluft.contexts.backups.probes import Download, probe_target
from pressluft.contexts.backups.queries import (
    BackupPage,
    BackupsOverview,
    BackupView,
    TargetView,
    backups_overview,
    effective_target,
    get_backup,
    get_target,
    list_backups,
    site_backup_summary,
)
from pressluft.contexts.backups.recovery import (
    ControlPlaneBackups,
    control_plane_backups,
    request_control_plane_backup,
)
from pressluft.contexts.backups.schedules import (
    ScheduleRequest,
    ScheduleView,
    change_schedule_command,
    get_schedule,
)
from pressluft.contexts.backups.workers import BackupCreate, EnvRestore
from pressluft.db import Database, WriteTx
from pressluft.errors import Conflict
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer
from pressluft.vault import Vault

__all__ = ["Backups"]


class Backups:
    """Backups of environments into the operator's S3-compatible target."""

    def __init__(
        self, db: Database, writer: Writer, vault: Callable[[], Vault], cache_dir: Path
    ) -> None:
        self._db = db
        self._writer = writer
        self._vault = vault
        self._cache_dir = cache_dir

    async def target(self) -> TargetView:
        """The default target."""
        found = await self._db.read(get_target)
        if found is None:
            raise BackupNotConfigured(
                "no backup target is configured",
                details={"hint": "PUT /api/backup-target with an S3-compatible bucket"},
            )
        return found

    async def site_target(self, site_id: str) -> TargetView:
        """The target the site's backups go to: its own, else the default."""

        def read(conn: sqlite3.Connection) -> TargetView | None:
            require_site(conn, site_id)
            return effective_target(conn, site_id)

        found = await self._db.read(read)
        if found is None:
            raise BackupNotConfigured(
                "no backup target is configured for the site, nor a default one",
                details={
                    "hint": f"PUT /api/sites/{site_id}/backup-target (this site) or"
                    " PUT /api/backup-target (every site) with an S3-compatible bucket"
                },
            )
        return found

    async def configure_target(
        self, request: TargetRequest, ctx: Context, site_id: str | None = None
    ) -> TargetView:
        """Probe the target (an object written, read back, deleted), then record it as
        the default, or as the site's own (the site is checked before the probe)."""
        if site_id is not None:
            status = await self._db.read(lambda conn: require_site(conn, site_id))
            if status == "deleted":
                raise Conflict(
                    "the site is deleted: it takes no backup any more",
                    details={"status": status},
                )
        await probe_target(request)
        command = configure_target_command(self._vault(), request, ctx.meta(), site_id)
        await self._db.write(command)
        found = await self._db.read(lambda conn: get_target(conn, site_id))
        assert found is not None
        return found

    async def remove_target(self, ctx: Context, site_id: str | None = None) -> None:
        await self._db.write(remove_target_command(ctx.meta(), site_id))

    async def list(
        self, environment_id: str, limit: int, before: str | None, status: str | None
    ) -> BackupPage:
        return await self._db.read(
            lambda conn: list_backups(conn, environment_id, limit, before, status)
        )

    async def get(self, backup_id: str) -> BackupView:
        return await self._db.read(lambda conn: get_backup(conn, backup_id))

    async def summary(self, site_id: str) -> dict[str, Any]:
        return await self._db.read(lambda conn: site_backup_summary(conn, site_id))

    async def create(
        self, environment_id: str, request: CreateBackupRequest, ctx: Context, retry: Retry | None
    ) -> Answered[BackupAccepted]:
        command = request_backup_command(
            environment_id, request.scope, "manual", ctx.meta(), BackupCreate
        )
        return await self._writer.run(command, BackupAccepted, 202, retry)

    async def restore(
        self,
        environment_id: str,
        request: RestoreRequest,
        confirm: str | None,
        ctx: Context,
        retry: Retry | None,
    ) -> Answered[BackupAccepted]:
        command = restore_command(environment_id, request, confirm, ctx.meta(), EnvRestore)
        return await self._writer.run(command, BackupAccepted, 202, retry)

    async def verify(
        self, backup_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = verify_command(backup_id, ctx.meta(), BackupVerify)

        def accepted(tx: WriteTx) -> JobAccepted:
            return JobAccepted(job_id=command(tx))

        return await self._writer.run(accepted, JobAccepted, 202, retry)

    async def schedule(self, environment_id: str) -> ScheduleView:
        return await self._db.read(lambda conn: get_schedule(conn, environment_id))

    async def change_schedule(
        self, environment_id: str, request: ScheduleRequest, ctx: Context
    ) -> ScheduleView:
        return await self._db.write(change_schedule_command(environment_id, request, ctx.meta()))

    async def control_plane_backups(self) -> ControlPlaneBackups:
        return await self._db.read(control_plane_backups)

    async def overview(self) -> BackupsOverview:
        """The Backups page: the target, the recovery kit, the control plane's copies."""
        return await self._db.read(backups_overview)

    async def back_up_control_plane(
        self, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = request_control_plane_backup(ctx.meta(), ControlPlaneBackup)
        return await self._writer.run(command, JobAccepted, 202, retry)

    async def download(self, backup_id: str, name: str) -> tuple[str, Download]:
        """A completed backup's object (`db.sql`, `files.tar`): its file name for the
        operator and what streams it (the secrets opened here)."""
        vault = self._vault()

        def read(conn: sqlite3.Connection) -> tuple[str, Download]:
            backup = get_backup(conn, backup_id)
            objects = {o["name"]: o for o in (backup.manifest or {}).get("objects", [])}
            if backup.status != "completed" or name not in objects:
                raise BackupNotRestorable(
                    f"backup {backup_id} is {backup.status} and holds"
                    f" {', '.join(objects) or 'nothing'}",
                    details={"hint": "download db.sql or files.tar of a completed backup"},
                )
            # The repository it is stored in, with the key of the target it is in
            # (retired or not: BAK-28).
            repo = conn.execute(
                "SELECT url, secret_id, target_id FROM backup_repositories WHERE url = ?",
                (backup.storage_path,),
            ).fetchone()
            target = None
            if repo is not None:
                target = conn.execute(
                    "SELECT endpoint, region, bucket, prefix, access_key_id, secret_id"
                    " FROM backup_targets WHERE id = ?",
                    (repo[2],),
                ).fetchone()
            if repo is None or target is None:
                raise BackupNotConfigured(
                    "the backup's repository or its target is not configured any more"
                )
            endpoint, region, bucket, prefix, key_id, target_secret = target
            stamp = backup.created_at[:19].replace(":", "").replace("-", "")
            filename = f"pressluft-{backup.environment_id[:8]}-{stamp}-{name}"
            return filename, Download(
                url=repo[0],
                password=vault.open(conn, repo[1]).decode(),
                target=(
                    endpoint,
                    region,
                    bucket,
                    prefix,
                    key_id,
                    vault.open(conn, target_secret).decode(),
                ),
                cache_dir=self._cache_dir,
                snapshot_id=str(objects[name]["snapshot_id"]),
                name=name,
            )

        return await self._db.read(read)
