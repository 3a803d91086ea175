"""Projector of site.* and environment.* events into `sites`, `environments` and
`releases`.

Status moves (specs/sites.md): a site and its production environment start
`creating`; a staging or clone environment starts `cloning` and takes its
`active` site to `cloning` while it is built. `environment.provisioned` makes
the environment `active` (with its release); `environment.failed` (recorded by
handlers before jobs declared their holds; replayed) makes it `failed`. The
site follows its production environment (`active`, `failed`, `deleting`,
`deleted`) and is `active` again when a clone ends either way (its production
still serves). An environment is held by the job that builds or deletes it, in
the status the job's command put it in (`creating`, `cloning`, `deleting`, and
any status a later job holds it in, e.g. `deploying`, `restoring`): when a job
holding an environment ends failed or cancelled (`job.failed`,
`job.cancelled`, `job.lease_expired` failed/cancelled) and the environment
still has the held status, it is `failed` with the job's error code — one
generic rule; this projector names no job type. `failed → active` only through
a reset. Every UPDATE is guarded by the states it may apply to.
"""

from __future__ import annotations

import sqlite3

from pressluft.contexts.sites.events import (
    EnvironmentCacheChanged,
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentDeletionRequested,
    EnvironmentFailed,
    EnvironmentProvisioned,
    EnvironmentReleaseActivated,
    EnvironmentReleaseChangeRequested,
    EnvironmentReleaseChangeReverted,
    EnvironmentReleasesPruned,
    EnvironmentReset,
    EnvironmentRestored,
    EnvironmentRestoreRequested,
    EnvironmentRestoreReverted,
    SiteCreated,
    SiteReset,
)
from pressluft.events.projection import Envelope, GuardFailed, Projector, one_row
from pressluft.jobs.projector import on_job_end, released_hold

__all__ = ["LEGACY_ADMIN_USER", "SITES_PROJECTOR"]

#: The administrator every site got before sites had their own (events without one).
LEGACY_ADMIN_USER = "pressluft-admin"

#: The statuses an `environment.failed` event (recorded by the handlers of old)
#: applies to: those their jobs held environments in.
_FAILABLE = "('creating', 'cloning', 'deleting')"


def _site_created(conn: sqlite3.Connection, e: SiteCreated, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO sites (id, name, slug, status, primary_environment_id, created_at,"
        " updated_at, state_version) VALUES (?, ?, ?, 'creating', ?, ?, ?, ?)",
        (
            e.site_id,
            e.name,
            e.slug,
            e.primary_environment_id,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
        ),
    )


def _environment_created(conn: sqlite3.Connection, e: EnvironmentCreated, env: Envelope) -> None:
    status = "creating" if e.environment_type == "production" else "cloning"
    conn.execute(
        "INSERT INTO environments (id, site_id, name, slug, environment_type, status, node_id,"
        " source_environment_id, preview_url, db_secret_id, admin_secret_id,"
        " fastcgi_cache_enabled, redis_cache_enabled, promotion_preset, admin_user, created_at,"
        " updated_at, state_version, source_backup_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.environment_id,
            e.site_id,
            e.name,
            e.slug,
            e.environment_type,
            status,
            e.node_id,
            e.source_environment_id,
            e.preview_url,
            e.db_secret_id,
            e.admin_secret_id,
            int(e.fastcgi_cache_enabled),
            int(e.redis_cache_enabled),
            e.promotion_preset,
            e.admin_user or LEGACY_ADMIN_USER,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
            e.source_backup_id,
        ),
    )
    if e.environment_type != "production":
        cursor = conn.execute(
            "UPDATE sites SET status = 'cloning', updated_at = ?"
            " WHERE id = ? AND status = 'active'",
            (env.recorded_at, e.site_id),
        )
        one_row(cursor, f"site {e.site_id} active for a clone")


def _site_follows(conn: sqlite3.Connection, environment_id: str, to: str, at: str) -> None:
    """The site after its environment's job: it follows its production
    environment; a clone's end (either way) makes a `cloning` site `active`."""
    site_id, kind = conn.execute(
        "SELECT site_id, environment_type FROM environments WHERE id = ?", (environment_id,)
    ).fetchone()
    if kind != "production":
        conn.execute(
            "UPDATE sites SET status = 'active', updated_at = ? WHERE id = ? AND status = 'cloning'"
            " AND NOT EXISTS (SELECT 1 FROM environments WHERE site_id = ? AND status = 'cloning')",
            (at, site_id, site_id),
        )
        return
    conn.execute(
        "UPDATE sites SET status = ?, updated_at = ?,"
        " deleted_at = CASE WHEN ? = 'deleted' THEN ? END"
        " WHERE id = ? AND status NOT IN ('active', 'failed', 'deleted')",
        (to, at, to, at, site_id),
    )


def _provisioned(conn: sqlite3.Connection, e: EnvironmentProvisioned, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO releases (id, environment_id, source_type, source_ref, path, health_status,"
        " created_at) VALUES (?, ?, ?, ?, ?, 'healthy', ?)",
        (e.release_id, e.environment_id, e.source_type, e.source_ref, e.release_path,
         env.recorded_at),
    )  # fmt: skip
    cursor = conn.execute(
        "UPDATE environments SET status = 'active', current_release_id = ?,"
        " wordpress_version = coalesce(?, wordpress_version), health_status = 'healthy',"
        " health_checked_at = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status IN ('creating', 'cloning')",
        (
            e.release_id,
            e.wordpress_version,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
            e.environment_id,
        ),
    )
    one_row(cursor, f"provisioned {e.environment_id}")
    _site_follows(conn, e.environment_id, "active", env.recorded_at)


def _failed(conn: sqlite3.Connection, e: EnvironmentFailed, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE environments SET status = 'failed', updated_at = ?,"
        f" state_version = ? WHERE id = ? AND status IN {_FAILABLE}",
        (env.recorded_at, env.stream_version, e.environment_id),
    )
    one_row(cursor, f"failed {e.environment_id}")
    _site_follows(conn, e.environment_id, "failed", env.recorded_at)


def _released(conn: sqlite3.Connection, job_id: str, env: Envelope) -> None:
    """A job ended failed or cancelled: the environment it held, if it still has
    the held status, is `failed` (why: the job's error code, found by its holds)."""
    held = released_hold(conn, job_id, "environment")
    if held is None:
        return
    cursor = conn.execute(
        "UPDATE environments SET status = 'failed', updated_at = ? WHERE id = ? AND status = ?",
        (env.recorded_at, held.id, held.status),
    )
    if cursor.rowcount:
        _site_follows(conn, held.id, "failed", env.recorded_at)


def _deletion_requested(
    conn: sqlite3.Connection, e: EnvironmentDeletionRequested, env: Envelope
) -> None:
    cursor = conn.execute(
        "UPDATE environments SET status = 'deleting', updated_at = ?,"
        " state_version = ?"
        " WHERE id = ? AND status IN ('active', 'failed') RETURNING site_id, environment_type",
        (env.recorded_at, env.stream_version, e.environment_id),
    )
    row = cursor.fetchone()
    if row is None:
        raise GuardFailed(f"deletion of {e.environment_id}")
    if row[1] == "production":
        site = conn.execute(
            "UPDATE sites SET status = 'deleting', updated_at = ?"
            " WHERE id = ? AND status IN ('active', 'failed')",
            (env.recorded_at, row[0]),
        )
        one_row(site, f"deletion of site {row[0]}")


def _deleted(conn: sqlite3.Connection, e: EnvironmentDeleted, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE environments SET status = 'deleted', deleted_at = ?, db_secret_id = NULL,"
        " admin_secret_id = NULL, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'deleting'",
        (env.recorded_at, env.recorded_at, env.stream_version, e.environment_id),
    )
    one_row(cursor, f"deleted {e.environment_id}")
    _site_follows(conn, e.environment_id, "deleted", env.recorded_at)


def _environment_reset(conn: sqlite3.Connection, e: EnvironmentReset, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE environments SET status = 'active', updated_at = ?,"
        " state_version = ? WHERE id = ? AND status = 'failed' AND current_release_id IS NOT NULL"
        " RETURNING site_id, environment_type",
        (env.recorded_at, env.stream_version, e.environment_id),
    )
    row = cursor.fetchone()
    if row is None:
        raise GuardFailed(f"reset of {e.environment_id}")
    if row[1] == "production":
        conn.execute(
            "UPDATE sites SET status = 'active', updated_at = ? WHERE id = ? AND status = 'failed'",
            (env.recorded_at, row[0]),
        )


def _cache_changed(conn: sqlite3.Connection, e: EnvironmentCacheChanged, env: Envelope) -> None:
    """The flags its job applied (a flag not given keeps its value)."""
    cursor = conn.execute(
        "UPDATE environments SET fastcgi_cache_enabled = coalesce(?, fastcgi_cache_enabled),"
        " redis_cache_enabled = coalesce(?, redis_cache_enabled), updated_at = ?,"
        " state_version = ? WHERE id = ? AND status != 'deleted'",
        (
            e.fastcgi_cache_enabled,
            e.redis_cache_enabled,
            env.recorded_at,
            env.stream_version,
            e.environment_id,
        ),
    )
    one_row(cursor, f"cache of {e.environment_id}")


def _move(conn: sqlite3.Connection, environment_id: str, env: Envelope, frm: str, to: str,
          what: str) -> None:  # fmt: skip
    """A job's hold on the environment taken or given back (`frm` → `to`), guarded."""
    cursor = conn.execute(
        "UPDATE environments SET status = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = ?",
        (to, env.recorded_at, env.stream_version, environment_id, frm),
    )
    one_row(cursor, f"{what} {environment_id}")


def _restoring(conn: sqlite3.Connection, e: EnvironmentRestoreRequested, env: Envelope) -> None:
    _move(conn, e.environment_id, env, "active", "restoring", "restore of")


def _restored(conn: sqlite3.Connection, e: EnvironmentRestored, env: Envelope) -> None:
    """The backup is served: a files restore's release is the current one."""
    if e.release_id is not None:
        conn.execute(
            "INSERT INTO releases (id, environment_id, source_type, source_ref, path,"
            " health_status, created_at) VALUES (?, ?, 'backup', ?, ?, 'healthy', ?)",
            (e.release_id, e.environment_id, e.backup_id, e.release_path, env.recorded_at),
        )
    cursor = conn.execute(
        "UPDATE environments SET status = 'active',"
        " current_release_id = coalesce(?, current_release_id),"
        " wordpress_version = coalesce(?, wordpress_version), health_status = 'healthy',"
        " health_checked_at = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'restoring'",
        (e.release_id, e.wordpress_version, env.recorded_at, env.recorded_at,
         env.stream_version, e.environment_id),
    )  # fmt: skip
    one_row(cursor, f"restored {e.environment_id}")


def _restore_reverted(
    conn: sqlite3.Connection, e: EnvironmentRestoreReverted, env: Envelope
) -> None:
    _move(conn, e.environment_id, env, "restoring", "active", "restore reverted")


def _release_change(
    conn: sqlite3.Connection, e: EnvironmentReleaseChangeRequested, env: Envelope
) -> None:
    _move(conn, e.environment_id, env, "active", "deploying", "release change of")


def _release_activated(
    conn: sqlite3.Connection, e: EnvironmentReleaseActivated, env: Envelope
) -> None:
    cursor = conn.execute(
        "UPDATE environments SET status = 'active', current_release_id = ?,"
        " wordpress_version = coalesce(?, wordpress_version), health_status = 'healthy',"
        " health_checked_at = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'deploying'"
        " AND EXISTS (SELECT 1 FROM releases r WHERE r.id = ? AND r.environment_id = ?"
        "   AND r.pruned_at IS NULL)",
        (e.release_id, e.wordpress_version, env.recorded_at, env.recorded_at,
         env.stream_version, e.environment_id, e.release_id, e.environment_id),
    )  # fmt: skip
    one_row(cursor, f"release {e.release_id} activated in {e.environment_id}")


def _release_reverted(
    conn: sqlite3.Connection, e: EnvironmentReleaseChangeReverted, env: Envelope
) -> None:
    _move(conn, e.environment_id, env, "deploying", "active", "release change reverted in")


def _releases_pruned(conn: sqlite3.Connection, e: EnvironmentReleasesPruned, env: Envelope) -> None:
    for release_id in e.release_ids:
        cursor = conn.execute(
            "UPDATE releases SET pruned_at = ? WHERE id = ? AND environment_id = ?"
            " AND pruned_at IS NULL AND id IS NOT (SELECT current_release_id FROM environments"
            "   WHERE id = ?)",
            (env.recorded_at, release_id, e.environment_id, e.environment_id),
        )
        one_row(cursor, f"release {release_id} pruned")


def _site_reset(conn: sqlite3.Connection, e: SiteReset, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE sites SET status = 'active', updated_at = ?, state_version = ?"
        " WHERE id = ? AND status = 'failed'",
        (env.recorded_at, env.stream_version, e.site_id),
    )
    one_row(cursor, f"reset of site {e.site_id}")


SITES_PROJECTOR = Projector(
    "sites",
    ("sites", "environments", "releases"),
    {
        SiteCreated: _site_created,
        EnvironmentCreated: _environment_created,
        EnvironmentProvisioned: _provisioned,
        EnvironmentFailed: _failed,
        EnvironmentDeletionRequested: _deletion_requested,
        EnvironmentDeleted: _deleted,
        EnvironmentReset: _environment_reset,
        EnvironmentCacheChanged: _cache_changed,
        SiteReset: _site_reset,
        EnvironmentRestoreRequested: _restoring,
        EnvironmentRestored: _restored,
        EnvironmentRestoreReverted: _restore_reverted,
        EnvironmentReleaseChangeRequested: _release_change,
        EnvironmentReleaseActivated: _release_activated,
        EnvironmentReleaseChangeReverted: _release_reverted,
        EnvironmentReleasesPruned: _releases_pruned,
        **on_job_end(_released),
    },
)
