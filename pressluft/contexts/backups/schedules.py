"""Scheduled backups: each environment's schedule (production every 24 h by default,
other environments none), the scan that queues the backups and restore drills due
(`backup_scan`, every 15 minutes), and its alerts, each recorded once per silence:
a production environment without a completed backup for 26 hours
(`backup.overdue_noticed`), one without a backup proven by a restore drill for
twice `restore_drill_hours` (`backup.drill_overdue_noticed`), and the control plane
without a copy of its own for 24 hours while a target is configured
(`control_plane.copy_overdue_noticed`). The scan watches the control plane's copies
rather than their own job: a job that cannot run, or runs without a kit, would never
say it made none.

Rules (specs/backups.md): a backup is due when the environment is active, its site
has a target (its own or the default), and no backup of it was asked for within its
interval (pending, running or completed) nor failed within the last hour.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import msgspec

from pressluft.clock import format_ts
from pressluft.contexts.backups.commands import BackupArgs, record_backup_request
from pressluft.contexts.backups.drill_worker import queue_due_drills
from pressluft.contexts.backups.events import (
    BackupDrillOverdueNoticed,
    BackupOverdueNoticed,
    BackupScheduleChanged,
    ControlPlaneCopyOverdueNoticed,
)
from pressluft.contexts.sites import get_environment
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = [
    "COPY_OVERDUE_HOURS",
    "DEFAULT_PRODUCTION_HOURS",
    "DRILL_OVERDUE_FACTOR",
    "OVERDUE_HOURS",
    "BackupScan",
    "ScheduleRequest",
    "ScheduleView",
    "announce_copy_overdue",
    "announce_drills_overdue",
    "announce_overdue",
    "change_schedule_command",
    "get_schedule",
    "queue_due_backups",
]

DEFAULT_PRODUCTION_HOURS = 24
OVERDUE_HOURS = 26
#: A drill is overdue after this many times `restore_drill_hours` without a proof.
DRILL_OVERDUE_FACTOR = 2
#: The control plane's copy is overdue after this long (it is taken every 6 h).
COPY_OVERDUE_HOURS = 24
_EFFECTIVE = (
    "coalesce(s.every_hours, CASE e.environment_type WHEN 'production' THEN "
    f"{DEFAULT_PRODUCTION_HOURS} ELSE 0 END)"
)


class ScheduleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Hours between scheduled backups (1 … 168); 0: none.
    every_hours: Annotated[int, msgspec.Meta(ge=0, le=168)]


class ScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    environment_id: str
    every_hours: int
    #: Whether it is the default of its environment type (no schedule was set).
    default: bool


def get_schedule(conn: sqlite3.Connection, environment_id: str) -> ScheduleView:
    get_environment(conn, environment_id)  # 404
    row = conn.execute(
        f"SELECT {_EFFECTIVE}, s.every_hours IS NULL FROM environments e"
        " LEFT JOIN backup_schedules s ON s.environment_id = e.id WHERE e.id = ?",
        (environment_id,),
    ).fetchone()
    return ScheduleView(environment_id=environment_id, every_hours=row[0], default=bool(row[1]))


def change_schedule_command(
    environment_id: str, request: ScheduleRequest, meta: Meta
) -> Callable[[WriteTx], ScheduleView]:
    def command(tx: WriteTx) -> ScheduleView:
        get_environment(tx.conn, environment_id)
        event = BackupScheduleChanged(
            environment_id=environment_id, every_hours=request.every_hours
        )
        append(tx, f"backup_schedule:{environment_id}", None, [event], meta)
        return get_schedule(tx.conn, environment_id)

    return command


def queue_due_backups(worker: type[JobWorker[BackupArgs]]) -> Callable[[WriteTx, Meta], list[str]]:
    """A `scheduled` full backup of each environment due: the backup ids."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        now = tx.now
        hour_ago = format_ts(now - timedelta(hours=1))
        rows = tx.conn.execute(
            f"SELECT e.id, {_EFFECTIVE} AS every FROM environments e"
            " LEFT JOIN backup_schedules s ON s.environment_id = e.id"
            f" WHERE e.status = 'active' AND {_EFFECTIVE} > 0"
            # The site has a target: its own or the default (BAK-27).
            " AND EXISTS (SELECT 1 FROM backup_targets t WHERE t.status = 'active'"
            "   AND (t.site_id IS NULL OR t.site_id = e.site_id))"
        ).fetchall()
        queued = []
        for environment_id, every in rows:
            since = format_ts(now - timedelta(hours=int(every)))
            recent = tx.conn.execute(
                "SELECT 1 FROM backups WHERE environment_id = ? AND ((status IN"
                " ('pending', 'running', 'completed') AND created_at > ?)"
                " OR (status = 'failed' AND created_at > ?)) LIMIT 1",
                (environment_id, since, hour_ago),
            ).fetchone()
            if recent is None:
                accepted = record_backup_request(
                    tx, environment_id, "full", "scheduled", meta, None, worker
                )
                queued.append(accepted.backup_id)
        return queued

    return command


def announce_overdue() -> Callable[[WriteTx, Meta], list[str]]:
    """`backup.overdue_noticed` for each active production environment older than 26 h
    without a completed backup in 26 h (once per last completed backup)."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        cutoff = format_ts(tx.now - timedelta(hours=OVERDUE_HOURS))
        rows = tx.conn.execute(
            "SELECT e.id, e.site_id, b.id, b.completed_at, a.last_backup_id FROM environments e"
            " LEFT JOIN backups b ON b.id = (SELECT id FROM backups WHERE environment_id = e.id"
            "   AND status IN ('completed', 'expired') ORDER BY completed_at DESC LIMIT 1)"
            " LEFT JOIN backup_alerts a ON a.environment_id = e.id"
            " WHERE e.status = 'active' AND e.environment_type = 'production'"
            " AND e.created_at < ? AND (b.completed_at IS NULL OR b.completed_at < ?)",
            (cutoff, cutoff),
        ).fetchall()
        noticed = []
        for environment_id, site_id, backup_id, completed_at, alerted in rows:
            if alerted is not None and alerted == (backup_id or ""):
                continue
            event = BackupOverdueNoticed(
                environment_id=environment_id,
                site_id=site_id,
                last_backup_id=backup_id,
                last_completed_at=completed_at,
            )
            append(tx, f"backup_schedule:{environment_id}", None, [event], meta)
            noticed.append(environment_id)
        return noticed

    return command


def announce_drills_overdue(drill_hours: int) -> Callable[[WriteTx, Meta], list[str]]:
    """`backup.drill_overdue_noticed` for each active production environment with a
    completed backup and no backup proven by a drill within twice `drill_hours` (counted
    from its first completed backup when none ever was); once per last proof."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        hours = DRILL_OVERDUE_FACTOR * drill_hours
        cutoff = format_ts(tx.now - timedelta(hours=hours))
        rows = tx.conn.execute(
            "SELECT e.id, e.site_id, v.id, v.verified_at, a.last_verified_at FROM environments e"
            " LEFT JOIN backups v ON v.id = (SELECT id FROM backups WHERE environment_id = e.id"
            "   AND verified_at IS NOT NULL ORDER BY verified_at DESC, id DESC LIMIT 1)"
            " LEFT JOIN backup_drill_alerts a ON a.environment_id = e.id"
            " WHERE e.status = 'active' AND e.environment_type = 'production'"
            " AND EXISTS (SELECT 1 FROM backups WHERE environment_id = e.id"
            "   AND status = 'completed')"
            " AND coalesce(v.verified_at, (SELECT min(completed_at) FROM backups"
            "   WHERE environment_id = e.id AND status IN ('completed', 'expired'))) < ?",
            (cutoff,),
        ).fetchall()
        noticed = []
        for environment_id, site_id, backup_id, verified_at, alerted in rows:
            if alerted is not None and alerted == (verified_at or ""):
                continue
            failure = tx.conn.execute(
                "SELECT outcome || ': ' || error FROM backup_drills WHERE environment_id = ?"
                " AND outcome IN ('failed', 'interrupted') AND ended_at > ?"
                " ORDER BY ended_at DESC LIMIT 1",
                (environment_id, verified_at or ""),
            ).fetchone()
            event = BackupDrillOverdueNoticed(
                environment_id=environment_id,
                site_id=site_id,
                overdue_hours=hours,
                last_verified_backup_id=backup_id,
                last_verified_at=verified_at,
                last_drill_error=None if failure is None else str(failure[0])[:600],
            )
            append(tx, f"backup_schedule:{environment_id}", None, [event], meta)
            noticed.append(environment_id)
        return noticed

    return command


def announce_copy_overdue() -> Callable[[WriteTx, Meta], bool]:
    """`control_plane.copy_overdue_noticed` when a target is configured and the control
    plane's last copy — or, without one, the target's configuration — is older than
    24 h; once per last copy. Whether it was recorded."""

    def command(tx: WriteTx, meta: Meta) -> bool:
        row = tx.conn.execute(
            "SELECT t.verified_at, c.snapshot_id, c.created_at, k.id IS NOT NULL,"
            " a.last_snapshot_id FROM backup_targets t"
            " LEFT JOIN control_plane_backups c ON c.rowid = (SELECT rowid"
            "   FROM control_plane_backups ORDER BY created_at DESC, rowid DESC LIMIT 1)"
            " LEFT JOIN recovery_kit k ON k.id = 1"
            " LEFT JOIN control_plane_alerts a ON a.id = 1"
            # The default target: the control plane's copy goes there.
            " WHERE t.site_id IS NULL AND t.status = 'active'"
        ).fetchone()
        if row is None:
            return False
        configured_at, snapshot_id, copied_at, kit, alerted = row
        cutoff = format_ts(tx.now - timedelta(hours=COPY_OVERDUE_HOURS))
        if (copied_at or configured_at) >= cutoff or alerted == (snapshot_id or ""):
            return False
        event = ControlPlaneCopyOverdueNoticed(
            last_snapshot_id=snapshot_id,
            last_copied_at=copied_at,
            recovery_kit_exported=bool(kit),
        )
        append(tx, "control_plane", None, [event], meta)
        return True

    return command


class BackupScan(JobWorker[NoArgs]):
    """`backup_scan`: queue the scheduled backups and restore drills due; say which
    environments' backups or drills are overdue, and whether the control plane's copy is."""

    kind = "backup_scan"
    args = NoArgs
    timeout_seconds = 60
    max_attempts = 1
    node_lock = "shared"
    unique = True

    def __init__(
        self,
        worker: type[JobWorker[BackupArgs]],
        drill: type[JobWorker[BackupArgs]],
        drill_every_hours: int,
    ) -> None:
        self.worker = worker
        self.drill = drill
        self.drill_every_hours = drill_every_hours

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        queued = await ctx.command(queue_due_backups(self.worker))
        drills = await ctx.command(queue_due_drills(self.drill_every_hours, self.drill))
        if drills:
            ctx.log(f"{len(drills)} restore drill(s) queued")
        for environment_id in await ctx.command(announce_overdue()):
            ctx.log(f"environment {environment_id}: no completed backup for 26 h", "stderr")
        hours = DRILL_OVERDUE_FACTOR * self.drill_every_hours
        for environment_id in await ctx.command(announce_drills_overdue(self.drill_every_hours)):
            ctx.log(
                f"environment {environment_id}: no backup proven by a restore drill for {hours} h",
                "stderr",
            )
        if await ctx.command(announce_copy_overdue()):
            ctx.log(f"the control plane: no copy of its own for {COPY_OVERDUE_HOURS} h", "stderr")
        ctx.log(f"{len(queued)} scheduled backup(s) queued" if queued else "no backup due")
