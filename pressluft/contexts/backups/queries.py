"""Reads of backups and the storage targets (one read transaction each), and what
the dashboard shows of them: a site's summary (`site_backup_summary`) and the Backups
page (`backups_overview`: the default target, the recovery kit, the control plane's
copies)."""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

import msgspec

from pressluft.contexts.backups.commands import BackupNotFound
from pressluft.contexts.backups.recovery import ControlPlaneCopy, control_plane_backups
from pressluft.contexts.sites import get_environment

__all__ = [
    "BackupPage",
    "BackupView",
    "BackupsOverview",
    "TargetView",
    "backups_overview",
    "effective_target",
    "get_backup",
    "get_target",
    "list_backups",
    "site_backup_summary",
]


class BackupView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    site_id: str
    environment_id: str
    backup_scope: str
    reason: str
    status: str
    storage_type: str
    storage_path: str | None
    job_id: str
    retention_until: str
    checksum: str | None
    size_bytes: int | None
    added_bytes: int | None
    manifest: dict[str, Any] | None
    error_code: str | None
    error: str | None
    verified_at: str | None
    restore_seconds: float | None
    #: The last restore drill's failure (cleared when one passes).
    verify_error: str | None
    created_at: str
    started_at: str | None
    completed_at: str | None
    expired_at: str | None


class BackupPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[BackupView]
    #: The cursor of the next page (`before`), None on the last.
    next_before: str | None
    has_more: bool


class TargetView(msgspec.Struct, frozen=True, kw_only=True):
    """A storage target as the API shows it (the secret key never)."""

    id: str
    #: The default target, or a site's own.
    scope: Literal["default", "site"]
    site_id: str | None
    endpoint: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key_configured: bool
    verified_at: str
    updated_at: str


_COLUMNS = (
    "id, site_id, environment_id, backup_scope, reason, status, storage_type, storage_path,"
    " job_id, retention_until, checksum, size_bytes, added_bytes, manifest_json, error_code,"
    " error, verified_at, restore_seconds, verify_error, created_at, started_at, completed_at,"
    " expired_at"
)


def _view(row: tuple[Any, ...]) -> BackupView:
    values = list(row)
    manifest = values[13]
    values[13] = None if manifest is None else msgspec.json.decode(manifest)
    names = _COLUMNS.replace(" ", "").split(",")
    names[13] = "manifest"
    return BackupView(**dict(zip(names, values, strict=True)))


def get_backup(conn: sqlite3.Connection, backup_id: str) -> BackupView:
    row = conn.execute(f"SELECT {_COLUMNS} FROM backups WHERE id = ?", (backup_id,)).fetchone()
    if row is None:
        raise BackupNotFound(f"no backup {backup_id}")
    return _view(row)


def list_backups(
    conn: sqlite3.Connection,
    environment_id: str,
    limit: int,
    before: str | None,
    status: str | None,
) -> BackupPage:
    """An environment's backups, newest first; `before` is a backup id (the cursor)."""
    get_environment(conn, environment_id)  # 404 for an unknown environment
    where = ["environment_id = ?"]
    params: list[Any] = [environment_id]
    if before is not None:
        anchor = conn.execute(
            "SELECT created_at, id FROM backups WHERE id = ? AND environment_id = ?",
            (before, environment_id),
        ).fetchone()
        if anchor is None:
            raise BackupNotFound(f"no backup {before} of this environment (the cursor)")
        where.append("(created_at, id) < (?, ?)")
        params += list(anchor)
    if status is not None:
        where.append("status = ?")
        params.append(status)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM backups WHERE {' AND '.join(where)}"
        " ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    items = [_view(r) for r in rows[:limit]]
    more = len(rows) > limit
    return BackupPage(items=items, next_before=items[-1].id if more else None, has_more=more)


_TARGET_COLUMNS = (
    "id, site_id, endpoint, region, bucket, prefix, access_key_id, verified_at, updated_at"
)


def _target_view(row: tuple[Any, ...]) -> TargetView:
    target_id, site_id, endpoint, region, bucket, prefix, key_id, verified, updated = row
    return TargetView(
        id=target_id,
        scope="default" if site_id is None else "site",
        site_id=site_id,
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        prefix=prefix,
        access_key_id=key_id,
        secret_access_key_configured=True,
        verified_at=verified,
        updated_at=updated,
    )


def get_target(conn: sqlite3.Connection, site_id: str | None = None) -> TargetView | None:
    """The active target of one scope: the default (`site_id` None) or a site's own."""
    row = conn.execute(
        f"SELECT {_TARGET_COLUMNS} FROM backup_targets WHERE status = 'active' AND site_id IS ?",
        (site_id,),
    ).fetchone()
    return None if row is None else _target_view(row)


def effective_target(conn: sqlite3.Connection, site_id: str) -> TargetView | None:
    """The target a site's backups go to: its own, else the default (None: neither)."""
    return get_target(conn, site_id) or get_target(conn, None)


def site_backup_summary(conn: sqlite3.Connection, site_id: str) -> dict[str, Any]:
    """What the site page shows: the last completed backup, the last proven restore,
    the last drill, the overdue notices that still stand, the drills' leftovers."""
    last = conn.execute(
        "SELECT id, completed_at, size_bytes FROM backups WHERE site_id = ?"
        " AND status = 'completed' ORDER BY completed_at DESC LIMIT 1",
        (site_id,),
    ).fetchone()
    proven = conn.execute(
        "SELECT id, verified_at, restore_seconds FROM backups WHERE site_id = ?"
        " AND verified_at IS NOT NULL ORDER BY verified_at DESC LIMIT 1",
        (site_id,),
    ).fetchone()
    drill = conn.execute(
        "SELECT job_id, backup_id, environment_id, started_at, outcome, error, ended_at"
        " FROM backup_drills WHERE site_id = ? ORDER BY started_at DESC, job_id DESC LIMIT 1",
        (site_id,),
    ).fetchone()
    # An overdue notice stands until a drill proves a backup (its last proof changes).
    overdue = conn.execute(
        "SELECT a.environment_id, a.noticed_at, nullif(a.last_verified_at, '')"
        " FROM backup_drill_alerts a JOIN environments e ON e.id = a.environment_id"
        " WHERE e.site_id = ? AND e.status = 'active' AND a.last_verified_at ="
        "   coalesce((SELECT max(verified_at) FROM backups"
        "     WHERE environment_id = a.environment_id), '')"
        " ORDER BY a.noticed_at",
        (site_id,),
    ).fetchall()
    # A missing backup stands until a backup completes (the latest one changes).
    silent = conn.execute(
        "SELECT a.environment_id, a.noticed_at FROM backup_alerts a"
        " JOIN environments e ON e.id = a.environment_id"
        " WHERE e.site_id = ? AND e.status = 'active' AND a.last_backup_id ="
        "   coalesce((SELECT id FROM backups WHERE environment_id = a.environment_id"
        "     AND status IN ('completed', 'expired') ORDER BY completed_at DESC LIMIT 1), '')"
        " ORDER BY a.noticed_at",
        (site_id,),
    ).fetchall()
    (leftovers,) = conn.execute(
        "SELECT count(*) FROM backup_drills WHERE site_id = ? AND outcome IS NOT NULL"
        " AND throwaway_removed_at IS NULL",
        (site_id,),
    ).fetchone()
    drill_names = ("job_id", "backup_id", "environment_id", "at", "outcome", "error", "ended_at")
    return {
        "last_backup": None
        if last is None
        else dict(zip(("id", "at", "bytes"), last, strict=True)),
        "last_proven_restore": None
        if proven is None
        else dict(zip(("id", "at", "seconds"), proven, strict=True)),
        "last_drill": None if drill is None else dict(zip(drill_names, drill, strict=True)),
        "drills_overdue": [
            dict(zip(("environment_id", "noticed_at", "last_verified_at"), r, strict=True))
            for r in overdue
        ],
        "drill_leftovers": int(leftovers),
        "backups_overdue": [
            dict(zip(("environment_id", "noticed_at"), r, strict=True)) for r in silent
        ],
    }


class KitView(msgspec.Struct, frozen=True, kw_only=True):
    exported_at: str
    exports: int


class CopyOverdue(msgspec.Struct, frozen=True, kw_only=True):
    noticed_at: str
    #: The last copy when it was noticed (None: none ever).
    last_copied_at: str | None


class BackupsOverview(msgspec.Struct, frozen=True, kw_only=True):
    """What the Backups page shows."""

    target: TargetView | None
    #: The recovery kit's exports (None: never exported — no copy can be made).
    kit: KitView | None
    #: The control plane's last copies, newest first.
    copies: list[ControlPlaneCopy]
    #: A missing copy noticed and not followed by one (BAK-85).
    copy_overdue: CopyOverdue | None


#: How many of the control plane's copies the Backups page lists.
COPIES_SHOWN = 10


def backups_overview(conn: sqlite3.Connection) -> BackupsOverview:
    target = get_target(conn)
    kit = conn.execute("SELECT exported_at, exports FROM recovery_kit WHERE id = 1").fetchone()
    copies = control_plane_backups(conn).items[:COPIES_SHOWN]
    overdue = None
    if target is not None:  # the notice stands until a copy follows it
        row = conn.execute(
            "SELECT a.noticed_at, c.created_at FROM control_plane_alerts a"
            " LEFT JOIN control_plane_backups c ON c.rowid = (SELECT rowid"
            "   FROM control_plane_backups ORDER BY created_at DESC, rowid DESC LIMIT 1)"
            " WHERE a.id = 1 AND a.last_snapshot_id = coalesce(c.snapshot_id, '')"
        ).fetchone()
        if row is not None:
            overdue = CopyOverdue(noticed_at=row[0], last_copied_at=row[1])
    return BackupsOverview(
        target=target,
        kit=None if kit is None else KitView(exported_at=kit[0], exports=kit[1]),
        copies=copies,
        copy_overdue=overdue,
    )
