"""Restore into a new environment, the command's half: the sites capability's
`BackupSource` (through `Parts.backup_sources`) checks the backup in the
transaction that records the new environment and names its job
(`clone_worker.EnvFromBackup`). See specs/backups.md BAK-48."""

from __future__ import annotations

import sqlite3

from pressluft.contexts.backups.commands import BackupArgs, BackupNotRestorable, _require_target
from pressluft.contexts.sites import FromBackup
from pressluft.errors import ValidationFailed
from pressluft.jobs.workers import JobWorker

__all__ = ["RestoreIntoNew"]


class RestoreIntoNew:
    """The `BackupSource` of the sites capability: a completed backup of one of the
    site's environments, while a storage target is configured."""

    def __init__(self, worker: type[JobWorker[BackupArgs]]) -> None:
        self.worker = worker

    def plan(self, conn: sqlite3.Connection, site_id: str, backup_id: str) -> FromBackup:
        row = conn.execute(
            "SELECT environment_id, site_id, status, checksum FROM backups WHERE id = ?",
            (backup_id,),
        ).fetchone()
        if row is None or row[1] != site_id:
            raise ValidationFailed(
                "no such backup of this site",
                details={"errors": [{"field": "source_backup_id", "in": "body",
                                     "message": "a backup of this site"}]},
            )  # fmt: skip
        environment_id, _, status, checksum = row
        if status != "completed" or checksum is None:
            raise BackupNotRestorable(
                f"the backup is {status}, not completed",
                details={"status": status, "hint": "choose a completed backup"},
            )
        _require_target(conn, site_id)
        return FromBackup(
            environment_id=environment_id, worker=self.worker, args=BackupArgs(backup_id=backup_id)
        )
