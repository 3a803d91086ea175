"""Projector of site.* and environment.* events into `sites`, `environments` and
`releases`.

Status moves (specs/sites.md): a site and its production environment start
`creating`; `environment.provisioned` makes the environment `active` (with its
release) and a site that was `creating` or `cloning` `active`;
`environment.failed` makes both `failed`. Like a node's provisioning, an
environment is `creating` only while its job can still finish: when a
`site_create` job ends without its handler recording the outcome (last attempt
timed out, worker lost for good, cancelled), the environment and its site are
`failed`. Every UPDATE is guarded by the states it may apply to.
"""

from __future__ import annotations

import sqlite3

from pressluft.events.projection import Envelope, Projector
from pressluft.events.projectors.jobs import GuardFailed
from pressluft.events.types import (
    EnvironmentCreated,
    EnvironmentFailed,
    EnvironmentProvisioned,
    JobCancelled,
    JobFailed,
    JobLeaseExpired,
    SiteCreated,
)

__all__ = ["SITES_PROJECTOR"]

#: The statuses a job that builds an environment holds it in.
_BUILDING = "('creating', 'cloning')"
_ENV_JOBS = "('site_create', 'env_create')"


def _one(cursor: sqlite3.Cursor, what: str) -> None:
    if cursor.rowcount != 1:
        raise GuardFailed(what)


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
        " fastcgi_cache_enabled, redis_cache_enabled, created_at, updated_at, state_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
        ),
    )


def _site_follows(conn: sqlite3.Connection, environment_id: str, to: str, at: str) -> None:
    conn.execute(
        f"UPDATE sites SET status = ?, updated_at = ? WHERE status IN {_BUILDING}"
        " AND id = (SELECT site_id FROM environments WHERE id = ?)",
        (to, at, environment_id),
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
        f" WHERE id = ? AND status IN {_BUILDING}",
        (
            e.release_id,
            e.wordpress_version,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
            e.environment_id,
        ),
    )
    _one(cursor, f"provisioned {e.environment_id}")
    _site_follows(conn, e.environment_id, "active", env.recorded_at)


def _failed(conn: sqlite3.Connection, e: EnvironmentFailed, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE environments SET status = 'failed', updated_at = ?, state_version = ?"
        f" WHERE id = ? AND status IN {_BUILDING}",
        (env.recorded_at, env.stream_version, e.environment_id),
    )
    _one(cursor, f"failed {e.environment_id}")
    _site_follows(conn, e.environment_id, "failed", env.recorded_at)


def _abandoned(conn: sqlite3.Connection, job_id: str, env: Envelope) -> None:
    """A job that builds an environment ended without its handler's outcome."""
    row = conn.execute(
        f"SELECT environment_id FROM jobs WHERE id = ? AND job_type IN {_ENV_JOBS}"
        " AND environment_id IS NOT NULL",
        (job_id,),
    ).fetchone()
    if row is None:
        return
    cursor = conn.execute(
        "UPDATE environments SET status = 'failed', updated_at = ?"
        f" WHERE id = ? AND status IN {_BUILDING}",
        (env.recorded_at, row[0]),
    )
    if cursor.rowcount:
        _site_follows(conn, row[0], "failed", env.recorded_at)


def _job_failed(conn: sqlite3.Connection, e: JobFailed, env: Envelope) -> None:
    _abandoned(conn, e.job_id, env)


def _job_cancelled(conn: sqlite3.Connection, e: JobCancelled, env: Envelope) -> None:
    _abandoned(conn, e.job_id, env)


def _job_lease_expired(conn: sqlite3.Connection, e: JobLeaseExpired, env: Envelope) -> None:
    if e.outcome != "requeued":
        _abandoned(conn, e.job_id, env)


SITES_PROJECTOR = Projector(
    "sites",
    ("sites", "environments", "releases"),
    {
        SiteCreated: _site_created,
        EnvironmentCreated: _environment_created,
        EnvironmentProvisioned: _provisioned,
        EnvironmentFailed: _failed,
        JobFailed: _job_failed,
        JobCancelled: _job_cancelled,
        JobLeaseExpired: _job_lease_expired,
    },
)
