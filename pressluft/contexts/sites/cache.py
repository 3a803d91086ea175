"""An environment's page and object cache: the commands.

`PATCH /api/environments/{id}/cache` queues `env_cache_toggle` with only the flags
given (at least one); `POST /api/environments/{id}/cache/purge` queues
`cache_purge` for everything or for URLs of the environment's own hosts. Both only
for an active environment; neither holds it (its status does not change: the flags
change when the toggle's job has applied them). The jobs are in `cache_workers`.
See specs/cache.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from pressluft.contexts.sites.cache_workers import (
    CachePurge,
    CachePurgeArgs,
    CacheToggleArgs,
    EnvCacheToggle,
)
from pressluft.contexts.sites.magic_login import EnvironmentNotActive
from pressluft.contexts.sites.queries import (
    EnvironmentNotFound,
    EnvironmentView,
    get_environment,
)
from pressluft.db import WriteTx
from pressluft.errors import BadRequest
from pressluft.events import Meta
from pressluft.jobs.workers import enqueue_job

__all__ = [
    "CacheAccepted",
    "CachePurgeRequest",
    "CacheSettingsRequest",
    "environment_hosts",
    "purge_cache_command",
    "toggle_cache_command",
]

#: How many URLs one purge takes.
MAX_PURGE_URLS = 100


class CacheSettingsRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    fastcgi_cache_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    redis_cache_enabled: bool | msgspec.UnsetType = msgspec.UNSET


class CachePurgeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    urls: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]],
        msgspec.Meta(max_length=MAX_PURGE_URLS),
    ] = []


class CacheAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


def _refused(field: str, message: str) -> BadRequest:
    return BadRequest(
        message, details={"errors": [{"field": field, "message": message, "in": "body"}]}
    )


def environment_hosts(conn: sqlite3.Connection, env: EnvironmentView) -> frozenset[str]:
    """The host names the environment answers to (its preview host; its domains when
    they come)."""
    return frozenset({str(urlsplit(env.preview_url).hostname)})


def _active(env: EnvironmentView) -> None:
    if env.status == "deleted":
        raise EnvironmentNotFound(f"environment {env.id} is deleted")
    if env.status != "active":
        raise EnvironmentNotActive(
            f"the environment is {env.status}, not active",
            details={"status": env.status, "hint": "wait for its job, or reset it"},
        )


def toggle_cache_command(
    environment_id: str, request: CacheSettingsRequest, meta: Meta
) -> Callable[[WriteTx], CacheAccepted]:
    """Queue `env_cache_toggle` with the flags given (at least one)."""
    args = CacheToggleArgs(
        fastcgi_cache_enabled=None
        if request.fastcgi_cache_enabled is msgspec.UNSET
        else request.fastcgi_cache_enabled,
        redis_cache_enabled=None
        if request.redis_cache_enabled is msgspec.UNSET
        else request.redis_cache_enabled,
    )
    if args.fastcgi_cache_enabled is None and args.redis_cache_enabled is None:
        raise _refused(
            "fastcgi_cache_enabled",
            "give at least one flag: fastcgi_cache_enabled, redis_cache_enabled",
        )

    def command(tx: WriteTx) -> CacheAccepted:
        env = get_environment(tx.conn, environment_id)
        _active(env)
        job_id = enqueue_job(
            tx,
            EnvCacheToggle,
            args,
            meta,
            site_id=env.site_id,
            environment_id=env.id,
            node_id=env.node_id,
        )
        return CacheAccepted(job_id=job_id)

    return command


def _check_url(url: str, hosts: frozenset[str]) -> str:
    """The URL as the purge takes it, or a 400 naming it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        host = None
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        raise _refused("urls", f"not an absolute http(s) URL: {url}")
    if host.lower() not in hosts:
        raise _refused(
            "urls", f"{url}: its host {host} is not the environment's ({', '.join(sorted(hosts))})"
        )
    return url


def purge_cache_command(
    environment_id: str, request: CachePurgeRequest | None, meta: Meta
) -> Callable[[WriteTx], CacheAccepted]:
    """Queue `cache_purge`: everything (no URLs), or these URLs of the environment."""
    urls = [] if request is None else list(dict.fromkeys(request.urls))

    def command(tx: WriteTx) -> CacheAccepted:
        env = get_environment(tx.conn, environment_id)
        hosts = environment_hosts(tx.conn, env)
        checked = [_check_url(url, hosts) for url in urls]
        _active(env)
        job_id = enqueue_job(
            tx,
            CachePurge,
            CachePurgeArgs(urls=checked),
            meta,
            site_id=env.site_id,
            environment_id=env.id,
            node_id=env.node_id,
        )
        return CacheAccepted(job_id=job_id)

    return command
