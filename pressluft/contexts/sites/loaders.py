"""What the environment jobs read and record through their worker port: the
environment and a clone's source as loaders (`ENVIRONMENT_JOB`, `CLONE_SOURCE`),
an environment's names on its node, and the command that records its deletion."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import msgspec

from pressluft.contexts.sites.events import EnvironmentDeleted
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.jobs.workers import Loader
from pressluft.vault import Vault

__all__ = [
    "CLONE_SOURCE",
    "ENVIRONMENT_JOB",
    "ENV_JOB_TIMEOUT_SECONDS",
    "EnvironmentJob",
    "env_names",
    "record_environment_deleted",
]

#: The time limit of the jobs that build or remove an environment.
ENV_JOB_TIMEOUT_SECONDS = 1800


class EnvironmentJob(msgspec.Struct, frozen=True, kw_only=True):
    """What an environment's job needs of it and its node (secrets as vault ids:
    the worker opens them through its port)."""

    site_id: str
    environment_type: str
    status: str
    preview_url: str
    db_secret_id: str | None
    admin_secret_id: str | None
    #: The WordPress administrator (magic login signs in as it).
    admin_user: str
    fastcgi_cache_enabled: bool
    redis_cache_enabled: bool
    source_environment_id: str | None
    host: str
    ports: dict[str, int] | None
    provider: str


def _environment_job(conn: sqlite3.Connection, environment_id: str) -> EnvironmentJob | None:
    row = conn.execute(
        "SELECT e.site_id, e.environment_type, e.status, e.preview_url, e.db_secret_id,"
        " e.admin_secret_id, e.fastcgi_cache_enabled, e.redis_cache_enabled,"
        " e.source_environment_id, n.host, n.ports_json, n.provider, e.admin_user"
        " FROM environments e"
        " JOIN nodes n ON n.id = e.node_id WHERE e.id = ?",
        (environment_id,),
    ).fetchone()
    if row is None:
        return None
    (site_id, kind, status, url, db_secret, admin_secret, fastcgi, redis, source, host, ports,
     provider, admin_user) = row  # fmt: skip
    return EnvironmentJob(
        site_id=site_id,
        environment_type=kind,
        status=status,
        preview_url=url,
        db_secret_id=db_secret,
        admin_secret_id=admin_secret,
        admin_user=str(admin_user),
        fastcgi_cache_enabled=bool(fastcgi),
        redis_cache_enabled=bool(redis),
        source_environment_id=source,
        host=host,
        ports=None if ports is None else msgspec.json.decode(ports),
        provider=provider,
    )


#: An environment as its job sees it (None: no such environment).
ENVIRONMENT_JOB: Loader[str, EnvironmentJob | None] = Loader("environment_job", _environment_job)


def _clone_source(conn: sqlite3.Connection, source_id: str) -> dict[str, object] | None:
    """The source environment of a clone, when it is active with a release."""
    row = conn.execute(
        "SELECT e.site_id, e.preview_url, r.path FROM environments e"
        " JOIN releases r ON r.id = e.current_release_id"
        " WHERE e.id = ? AND e.status = 'active'",
        (source_id,),
    ).fetchone()
    if row is None:
        return None
    site_id, url, release_path = row
    names = env_names(source_id, site_id)
    return {
        "source_environment_id": source_id,
        "source_env_user": names["env_user"],
        "source_env_root": names["env_root"],
        "source_db_name": names["db_name"],
        "source_release_path": release_path,
        "source_preview_url": url,
    }


#: A clone's source: its playbook variables (None: not active with a release).
CLONE_SOURCE: Loader[str, dict[str, object] | None] = Loader("clone_source", _clone_source)


# -- names on the node -------------------------------------------------------------------


def env_names(environment_id: str, site_id: str) -> dict[str, str]:
    """The node-side names of an environment (derived from its id, never user input)."""
    short = environment_id.replace("-", "")[:12]
    return {
        "env_user": f"wp_{short}",
        "env_root": f"/var/www/sites/{site_id}/{environment_id}",
        "db_name": f"wp_{short}",
        "db_user": f"wp_{short}",
        "redis_prefix": f"pressluft_{environment_id}:",
    }


# -- what they record besides events ---------------------------------------------------


def record_environment_deleted(
    environment_id: str, job_id: str, secret_ids: tuple[str | None, ...]
) -> Callable[[WriteTx, Meta], None]:
    """The environment's job removed it from its node: `environment.deleted`, and
    its sealed secrets destroyed in the same transaction."""

    def command(tx: WriteTx, meta: Meta) -> None:
        for secret in secret_ids:
            if secret is not None:
                Vault.destroy(tx.conn, secret)
        event = EnvironmentDeleted(environment_id=environment_id, job_id=job_id)
        append(tx, f"environment:{environment_id}", None, [event], meta)

    return command
