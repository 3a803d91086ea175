"""What the backup jobs read through their worker port: a backup with its
environment and repository (`BACKUP_JOB`), the default target (`TARGET`), a target
by id (`TARGET_BY_ID`, retired ones too), the target a site's backups go to
(`SITE_TARGET`), the repositories and the backups a cleanup expires, the throwaways
killed drills left (`DRILL_LEFTOVERS`)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from pressluft.jobs.workers import Loader

__all__ = [
    "BACKUP_JOB",
    "DRILL_LEFTOVERS",
    "EXPIRED_BACKUPS",
    "LIVE_BACKUPS",
    "RECOVERY_KEY",
    "REPOSITORIES",
    "SERVED_RELEASE",
    "SITE_TARGET",
    "TARGET",
    "TARGET_BY_ID",
    "BackupJob",
    "DrillLeftover",
    "ExpiredBackup",
    "TargetRecord",
]


class TargetRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    endpoint: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_id: str


class BackupJob(msgspec.Struct, frozen=True, kw_only=True):
    """A backup as its jobs see it, with its environment and its site's repository."""

    backup_id: str
    site_id: str
    environment_id: str
    node_id: str
    scope: str
    reason: str
    status: str
    job_id: str
    manifest: dict[str, Any] | None
    #: The environment now (None once deleted).
    environment_status: str | None
    preview_url: str | None
    #: The repository it is stored in (None before it started).
    repository_url: str | None
    repository_secret_id: str | None
    #: The target whose key opens that repository (None: it was removed).
    target_id: str | None


_TARGET_COLUMNS = "id, endpoint, region, bucket, prefix, access_key_id, secret_id"


def _record(row: tuple[Any, ...] | None) -> TargetRecord | None:
    if row is None:
        return None
    target_id, endpoint, region, bucket, prefix, key_id, secret_id = row
    return TargetRecord(
        id=target_id,
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        prefix=prefix,
        access_key_id=key_id,
        secret_id=secret_id,
    )


def _target(conn: sqlite3.Connection, _key: None) -> TargetRecord | None:
    return _record(
        conn.execute(
            f"SELECT {_TARGET_COLUMNS} FROM backup_targets"
            " WHERE site_id IS NULL AND status = 'active'"
        ).fetchone()
    )


#: The default target (None: none configured): the control plane's own copy's.
TARGET: Loader[None, TargetRecord | None] = Loader("backup_target", _target)


def _target_by_id(conn: sqlite3.Connection, target_id: str) -> TargetRecord | None:
    return _record(
        conn.execute(
            f"SELECT {_TARGET_COLUMNS} FROM backup_targets WHERE id = ?", (target_id,)
        ).fetchone()
    )


#: A target, active or retired (None: removed).
TARGET_BY_ID: Loader[str, TargetRecord | None] = Loader("backup_target_by_id", _target_by_id)


def _site_target(conn: sqlite3.Connection, site_id: str) -> TargetRecord | None:
    return _record(
        conn.execute(
            f"SELECT {_TARGET_COLUMNS} FROM backup_targets WHERE status = 'active'"
            " AND (site_id IS NULL OR site_id = ?) ORDER BY site_id IS NULL LIMIT 1",
            (site_id,),
        ).fetchone()
    )


#: The target a site's new backups go to: its own, else the default (None: neither).
SITE_TARGET: Loader[str, TargetRecord | None] = Loader("site_backup_target", _site_target)


def _backup_job(conn: sqlite3.Connection, backup_id: str) -> BackupJob | None:
    row = conn.execute(
        "SELECT b.site_id, b.environment_id, b.node_id, b.backup_scope, b.reason, b.status,"
        " b.job_id, b.manifest_json, e.status, e.preview_url, r.url, r.secret_id, t.id"
        " FROM backups b LEFT JOIN environments e ON e.id = b.environment_id"
        " LEFT JOIN backup_repositories r ON r.url = b.storage_path"
        " LEFT JOIN backup_targets t ON t.id = r.target_id WHERE b.id = ?",
        (backup_id,),
    ).fetchone()
    if row is None:
        return None
    (site_id, environment_id, node_id, scope, reason, status, job_id, manifest, env_status,
     url, repo_url, repo_secret, target_id) = row  # fmt: skip
    return BackupJob(
        backup_id=backup_id,
        site_id=site_id,
        environment_id=environment_id,
        node_id=node_id,
        scope=scope,
        reason=reason,
        status=status,
        job_id=job_id,
        manifest=None if manifest is None else msgspec.json.decode(manifest),
        environment_status=env_status,
        preview_url=url,
        repository_url=repo_url,
        repository_secret_id=repo_secret,
        target_id=target_id,
    )


#: A backup and what its jobs need (None: no such backup).
BACKUP_JOB: Loader[str, BackupJob | None] = Loader("backup_job", _backup_job)


class ExpiredBackup(msgspec.Struct, frozen=True, kw_only=True):
    backup_id: str
    site_id: str
    snapshot_ids: list[str]
    #: The repository it is stored in.
    repository_url: str | None


#: Kept whatever their age: the newest completed backups of each environment.
KEEP_NEWEST = 3
#: Kept past `retention_until`: the newest completed backup of each month, this long.
KEEP_MONTHLY = 12


def _kept(rows: list[tuple[str, str]], now: str) -> set[str]:
    """Of one environment's completed backups (id, created_at; newest first), those the
    retention rules keep: the newest `KEEP_NEWEST`, and the newest of each of the last
    `KEEP_MONTHLY` months."""
    kept = {backup_id for backup_id, _ in rows[:KEEP_NEWEST]}
    year, month = int(now[:4]), int(now[5:7])
    recent = set()
    for _ in range(KEEP_MONTHLY):
        recent.add(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    seen: set[str] = set()
    for backup_id, created in rows:
        if created[:7] in recent and created[:7] not in seen:
            seen.add(created[:7])
            kept.add(backup_id)
    return kept


def _expired(conn: sqlite3.Connection, now: str) -> list[ExpiredBackup]:
    """Completed backups past `retention_until` that no retention rule keeps
    (specs/backups.md: the newest three of an environment, the newest of each month for
    a year)."""
    rows = conn.execute(
        "SELECT b.id, b.site_id, b.environment_id, b.manifest_json, b.storage_path"
        " FROM backups b WHERE b.status = 'completed' AND b.retention_until < ?"
        " ORDER BY b.site_id, b.created_at",
        (now,),
    ).fetchall()
    kept: dict[str, set[str]] = {}
    found = []
    for backup_id, site_id, environment_id, manifest, repo_url in rows:
        if environment_id not in kept:
            completed = conn.execute(
                "SELECT id, created_at FROM backups WHERE environment_id = ?"
                " AND status = 'completed' ORDER BY created_at DESC, id DESC",
                (environment_id,),
            ).fetchall()
            kept[environment_id] = _kept([(str(a), str(b)) for a, b in completed], now)
        if backup_id in kept[environment_id]:
            continue
        objects = msgspec.json.decode(manifest).get("objects", []) if manifest else []
        found.append(
            ExpiredBackup(
                backup_id=backup_id,
                site_id=site_id,
                snapshot_ids=[str(o["snapshot_id"]) for o in objects],
                repository_url=repo_url,
            )
        )
    return found


#: The completed backups whose retention has passed at a time.
EXPIRED_BACKUPS: Loader[str, list[ExpiredBackup]] = Loader("expired_backups", _expired)


def _served_release(conn: sqlite3.Connection, environment_id: str) -> str | None:
    row = conn.execute(
        "SELECT r.path FROM environments e JOIN releases r ON r.id = e.current_release_id"
        " WHERE e.id = ?",
        (environment_id,),
    ).fetchone()
    return None if row is None else str(row[0])


#: The path of the release the control plane records as served (None: none).
SERVED_RELEASE: Loader[str, str | None] = Loader("served_release", _served_release)


class RepositoryRecord(msgspec.Struct, frozen=True, kw_only=True):
    site_id: str
    url: str
    secret_id: str
    #: The target whose key opens it (active or retired).
    target_id: str


def _repositories(conn: sqlite3.Connection, _key: None) -> list[RepositoryRecord]:
    rows = conn.execute(
        "SELECT r.site_id, r.url, r.secret_id, r.target_id FROM backup_repositories r"
        " JOIN backup_targets t ON t.id = r.target_id ORDER BY r.site_id, r.url"
    ).fetchall()
    return [RepositoryRecord(site_id=a, url=b, secret_id=c, target_id=d) for a, b, c, d in rows]


#: Every repository whose target is there (active or retired; a removed target's key is
#: gone).
REPOSITORIES: Loader[None, list[RepositoryRecord]] = Loader("backup_repositories", _repositories)


def _live(conn: sqlite3.Connection, site_id: str) -> set[str]:
    rows = conn.execute(
        "SELECT id FROM backups WHERE site_id = ?"
        " AND status IN ('pending', 'running', 'completed')",
        (site_id,),
    ).fetchall()
    return {str(r[0]) for r in rows}


#: The backups of a site whose objects must stay (being taken, or completed).
LIVE_BACKUPS: Loader[str, set[str]] = Loader("live_backups", _live)


def _recovery_key(conn: sqlite3.Connection, _key: None) -> str | None:
    row = conn.execute("SELECT secret_id FROM recovery_kit WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


#: The recovery key's vault id (None: no kit exported yet).
RECOVERY_KEY: Loader[None, str | None] = Loader("recovery_key", _recovery_key)


class DrillLeftover(msgspec.Struct, frozen=True, kw_only=True):
    #: The drill that built it.
    job_id: str
    site_id: str
    throwaway_id: str


def _drill_leftovers(conn: sqlite3.Connection, key: tuple[str, str]) -> list[DrillLeftover]:
    environment_id, node_id = key
    rows = conn.execute(
        "SELECT job_id, site_id, throwaway_id FROM backup_drills"
        " WHERE environment_id = ? AND node_id = ? AND throwaway_removed_at IS NULL"
        " AND outcome IS NOT NULL ORDER BY started_at, rowid",
        (environment_id, node_id),
    ).fetchall()
    return [DrillLeftover(job_id=a, site_id=b, throwaway_id=c) for a, b, c in rows]


#: The throwaways of an environment's ended drills still on its node, (environment id,
#: node id) → oldest first: what the environment's next drill removes first (BAK-72).
DRILL_LEFTOVERS: Loader[tuple[str, str], list[DrillLeftover]] = Loader(
    "backup_drill_leftovers", _drill_leftovers
)
