"""Projects backup events into `backup_targets`, `backup_repositories`, `backups`,
the schedules, the restore drills (`backup_drills`), the alerts and the control
plane's copies.

Targets (B11, B12): `backup_target.configured` makes its target the active one of its
scope (the default, or a site's own) — a new row, or the same one with a new key;
`backup_target.retired` keeps it for the backups in it; `backup_target.removed` drops
it. The events of before per-site targets carry no target id: they are the default
target `legacy` (what migration 0024 made of the one row of before).

A backup job holds its backup (JOB-48): when it ends failed or cancelled, the
backup — pending or running — is `failed` with the job's code. So is a backup a
job takes itself before it changes an environment (the restore's `pre_restore`,
its `job_id` that job's) when the job ends while it is still pending or running —
a restore killed with the daemon during it fails its next attempt without it
(BAK-46). A `completed` backup is never touched by a job's end (reference scenario
25: completed only with its checksum and size, enforced by the table's CHECK).
A restore drill whose job ends that way without a result is `interrupted` (BAK-71).
"""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.contexts.backups.events import (
    BackupCompleted,
    BackupDrillOverdueNoticed,
    BackupDrillStarted,
    BackupDrillThrowawayRemoved,
    BackupExpired,
    BackupFailed,
    BackupOverdueNoticed,
    BackupRepositoryAdopted,
    BackupRepositoryCreated,
    BackupRequested,
    BackupScheduleChanged,
    BackupStarted,
    BackupTargetConfigured,
    BackupTargetRemoved,
    BackupTargetRetired,
    BackupVerificationFailed,
    BackupVerified,
    ControlPlaneCopyOverdueNoticed,
    ControlPlaneCopyStored,
    RecoveryKitExported,
)
from pressluft.events.projection import Envelope, Projector, one_row
from pressluft.jobs.projector import on_job_end, released_hold

__all__ = ["BACKUPS_PROJECTOR"]


def _target(conn: sqlite3.Connection, e: BackupTargetConfigured, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backup_targets (id, site_id, status, endpoint, region, bucket, prefix,"
        " access_key_id, secret_id, verified_at, updated_at, retired_at, state_version)"
        " VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)"
        " ON CONFLICT (id) DO UPDATE SET status = 'active', endpoint = excluded.endpoint,"
        " region = excluded.region, bucket = excluded.bucket, prefix = excluded.prefix,"
        " access_key_id = excluded.access_key_id, secret_id = excluded.secret_id,"
        " verified_at = excluded.verified_at, updated_at = excluded.updated_at,"
        " retired_at = NULL, state_version = excluded.state_version",
        (e.target_id, e.site_id, e.endpoint, e.region, e.bucket, e.prefix, e.access_key_id,
         e.secret_id, env.recorded_at, env.recorded_at, env.stream_version),
    )  # fmt: skip


def _target_retired(conn: sqlite3.Connection, e: BackupTargetRetired, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE backup_targets SET status = 'retired', retired_at = ?, updated_at = ?,"
        " state_version = ? WHERE id = ? AND status = 'active'",
        (env.recorded_at, env.recorded_at, env.stream_version, e.target_id),
    )
    one_row(cursor, f"retirement of backup target {e.target_id}")


def _target_removed(conn: sqlite3.Connection, e: BackupTargetRemoved, env: Envelope) -> None:
    conn.execute("DELETE FROM backup_targets WHERE id = ?", (e.target_id,))


def _repository(conn: sqlite3.Connection, e: BackupRepositoryCreated, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backup_repositories (url, site_id, target_id, secret_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (e.url, e.site_id, e.target_id, e.secret_id, env.recorded_at),
    )


def _adopted(conn: sqlite3.Connection, e: BackupRepositoryAdopted, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE backup_repositories SET target_id = ? WHERE url = ? AND site_id = ?",
        (e.target_id, e.url, e.site_id),
    )
    one_row(cursor, f"adoption of repository {e.url}")


def _requested(conn: sqlite3.Connection, e: BackupRequested, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backups (id, site_id, environment_id, node_id, backup_scope, reason, status,"
        " job_id, retention_until, created_at, updated_at, state_version)"
        " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
        (e.backup_id, e.site_id, e.environment_id, e.node_id, e.scope, e.reason, e.job_id,
         e.retention_until, env.recorded_at, env.recorded_at, env.stream_version),
    )  # fmt: skip


def _started(conn: sqlite3.Connection, e: BackupStarted, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE backups SET status = 'running', storage_path = ?,"
        " started_at = coalesce(started_at, ?), updated_at = ?, state_version = ?"
        " WHERE id = ? AND status IN ('pending', 'running')",
        (e.storage_path, env.recorded_at, env.recorded_at, env.stream_version, e.backup_id),
    )
    one_row(cursor, f"start of backup {e.backup_id}")


def _completed(conn: sqlite3.Connection, e: BackupCompleted, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE backups SET status = 'completed', checksum = ?, size_bytes = ?, added_bytes = ?,"
        " manifest_json = ?, completed_at = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'running'",
        (e.checksum, e.size_bytes, e.added_bytes, msgspec.json.encode(e.manifest).decode(),
         env.recorded_at, env.recorded_at, env.stream_version, e.backup_id),
    )  # fmt: skip
    one_row(cursor, f"completion of backup {e.backup_id}")


def _failed(conn: sqlite3.Connection, e: BackupFailed, env: Envelope) -> None:
    conn.execute(
        "UPDATE backups SET status = 'failed', error_code = ?, error = ?, updated_at = ?,"
        " state_version = ? WHERE id = ? AND status IN ('pending', 'running')",
        (e.code, e.message, env.recorded_at, env.stream_version, e.backup_id),
    )


def _expired(conn: sqlite3.Connection, e: BackupExpired, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE backups SET status = 'expired', expired_at = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'completed'",
        (env.recorded_at, env.recorded_at, env.stream_version, e.backup_id),
    )
    one_row(cursor, f"expiry of backup {e.backup_id}")


def _verified(conn: sqlite3.Connection, e: BackupVerified, env: Envelope) -> None:
    conn.execute(
        "UPDATE backups SET verified_at = ?, restore_seconds = ?, verify_error = NULL,"
        " updated_at = ?,"
        " state_version = ? WHERE id = ?",
        (env.recorded_at, e.restore_seconds, env.recorded_at, env.stream_version, e.backup_id),
    )
    conn.execute(
        "UPDATE backup_drills SET outcome = 'verified', ended_at = ?"
        " WHERE job_id = ? AND outcome IS NULL",
        (env.recorded_at, e.job_id),
    )


def _verification_failed(
    conn: sqlite3.Connection, e: BackupVerificationFailed, env: Envelope
) -> None:
    conn.execute(
        "UPDATE backups SET verify_error = ?, updated_at = ?, state_version = ? WHERE id = ?",
        (f"{e.code}: {e.message}", env.recorded_at, env.stream_version, e.backup_id),
    )
    conn.execute(
        "UPDATE backup_drills SET outcome = 'failed', error = ?, ended_at = ?"
        " WHERE job_id = ? AND outcome IS NULL",
        (f"{e.code}: {e.message}", env.recorded_at, e.job_id),
    )


def _drill_started(conn: sqlite3.Connection, e: BackupDrillStarted, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backup_drills (job_id, backup_id, site_id, environment_id, node_id,"
        " throwaway_id, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (e.job_id, e.backup_id, e.site_id, e.environment_id, e.node_id, e.throwaway_id,
         env.recorded_at),
    )  # fmt: skip


def _throwaway_removed(
    conn: sqlite3.Connection, e: BackupDrillThrowawayRemoved, env: Envelope
) -> None:
    cursor = conn.execute(
        "UPDATE backup_drills SET throwaway_removed_at = ?, removed_by_job_id = ?"
        " WHERE job_id = ? AND throwaway_id = ? AND throwaway_removed_at IS NULL",
        (env.recorded_at, e.job_id, e.drill_job_id, e.throwaway_id),
    )
    one_row(cursor, f"removal of drill {e.drill_job_id}'s throwaway {e.throwaway_id}")


def _schedule(conn: sqlite3.Connection, e: BackupScheduleChanged, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backup_schedules (environment_id, every_hours, updated_at, state_version)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (environment_id) DO UPDATE SET"
        " every_hours = excluded.every_hours, updated_at = excluded.updated_at,"
        " state_version = excluded.state_version",
        (e.environment_id, e.every_hours, env.recorded_at, env.stream_version),
    )


def _overdue(conn: sqlite3.Connection, e: BackupOverdueNoticed, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backup_alerts (environment_id, last_backup_id, noticed_at) VALUES (?, ?, ?)"
        " ON CONFLICT (environment_id) DO UPDATE SET last_backup_id = excluded.last_backup_id,"
        " noticed_at = excluded.noticed_at",
        (e.environment_id, e.last_backup_id or "", env.recorded_at),
    )


def _drill_overdue(conn: sqlite3.Connection, e: BackupDrillOverdueNoticed, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO backup_drill_alerts (environment_id, last_verified_at, noticed_at)"
        " VALUES (?, ?, ?) ON CONFLICT (environment_id) DO UPDATE SET"
        " last_verified_at = excluded.last_verified_at, noticed_at = excluded.noticed_at",
        (e.environment_id, e.last_verified_at or "", env.recorded_at),
    )


def _copy_overdue(
    conn: sqlite3.Connection, e: ControlPlaneCopyOverdueNoticed, env: Envelope
) -> None:
    conn.execute(
        "INSERT INTO control_plane_alerts (id, last_snapshot_id, noticed_at) VALUES (1, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET last_snapshot_id = excluded.last_snapshot_id,"
        " noticed_at = excluded.noticed_at",
        (e.last_snapshot_id or "", env.recorded_at),
    )


def _kit(conn: sqlite3.Connection, e: RecoveryKitExported, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO recovery_kit (id, secret_id, exported_at, exports) VALUES (1, ?, ?, 1)"
        " ON CONFLICT (id) DO UPDATE SET secret_id = excluded.secret_id,"
        " exported_at = excluded.exported_at, exports = exports + 1",
        (e.secret_id, env.recorded_at),
    )


def _control_plane(conn: sqlite3.Connection, e: ControlPlaneCopyStored, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO control_plane_backups (snapshot_id, job_id, sha256, size_bytes, events,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (e.snapshot_id, e.job_id, e.sha256, e.size_bytes, e.events, env.recorded_at),
    )


def _released(conn: sqlite3.Connection, job_id: str, env: Envelope) -> None:
    """A job ended failed or cancelled: the backup it held, and the backups it took
    itself (pre-operation), still pending or running, are `failed` with the job's
    code and message."""
    held = released_hold(conn, job_id, "backup")
    if held is not None:
        (message,) = conn.execute(
            "SELECT coalesce(error_message, '') FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        conn.execute(
            "UPDATE backups SET status = 'failed', error_code = ?, error = ?, updated_at = ?"
            " WHERE id = ? AND status IN ('pending', 'running')",
            (held.error_code, message, env.recorded_at, held.id),
        )
    # Its own backups, held by no job (a job holds a backup only when it was queued
    # to take it): the attempt taking one was lost and the job has ended.
    conn.execute(
        "UPDATE backups SET status = 'failed',"
        " error_code = (CASE j.status WHEN 'cancelled' THEN 'CANCELLED'"
        "   ELSE coalesce(j.error_code, 'HANDLER_ERROR') END),"
        " error = coalesce(j.error_message, ''), updated_at = ?"
        " FROM jobs j WHERE j.id = ? AND j.status IN ('failed', 'cancelled')"
        " AND backups.job_id = j.id AND backups.status IN ('pending', 'running')"
        " AND j.holds_kind IS NOT 'backup'",
        (env.recorded_at, job_id),
    )
    # A restore drill that ended without recording its result (BAK-71).
    conn.execute(
        "UPDATE backup_drills SET outcome = 'interrupted', ended_at = ?,"
        " error = (CASE j.status WHEN 'cancelled' THEN 'CANCELLED'"
        "   ELSE coalesce(j.error_code, 'HANDLER_ERROR') END)"
        "   || ': ' || coalesce(j.error_message, '')"
        " FROM jobs j WHERE j.id = ? AND j.status IN ('failed', 'cancelled')"
        " AND backup_drills.job_id = j.id AND backup_drills.outcome IS NULL",
        (env.recorded_at, job_id),
    )


BACKUPS_PROJECTOR = Projector(
    "backups",
    (
        "backup_targets",
        "backup_repositories",
        "backups",
        "backup_schedules",
        "backup_alerts",
        "recovery_kit",
        "control_plane_backups",
        "backup_drills",
        "backup_drill_alerts",
        "control_plane_alerts",
    ),
    {
        BackupTargetConfigured: _target,
        BackupTargetRetired: _target_retired,
        BackupTargetRemoved: _target_removed,
        BackupRepositoryCreated: _repository,
        BackupRepositoryAdopted: _adopted,
        BackupRequested: _requested,
        BackupStarted: _started,
        BackupCompleted: _completed,
        BackupFailed: _failed,
        BackupExpired: _expired,
        BackupVerified: _verified,
        BackupVerificationFailed: _verification_failed,
        BackupScheduleChanged: _schedule,
        BackupOverdueNoticed: _overdue,
        BackupDrillStarted: _drill_started,
        BackupDrillThrowawayRemoved: _throwaway_removed,
        BackupDrillOverdueNoticed: _drill_overdue,
        RecoveryKitExported: _kit,
        ControlPlaneCopyStored: _control_plane,
        ControlPlaneCopyOverdueNoticed: _copy_overdue,
        **on_job_end(_released),
    },
)
