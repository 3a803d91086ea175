"""The cache jobs and the purge step other jobs reuse.

`env_cache_toggle` runs `env-cache-toggle.yml` (the `site_environment` role's
`cache` tasks: the environment's nginx files with or without the FastCGI cache,
nginx reloaded, the object cache's tasks at their marked spot) and records
`environment.cache_changed` with the flags the node reported applied.
`cache_purge` is one SSH command — Pressluft's privileged purge command on the
node — then a verification: a GET of each purged URL (the home page for a full
purge) through the node's nginx must answer `X-FastCGI-Cache: MISS`.
`purge_environment_cache` is that step for any job that changes what a site
serves (`env_create` calls it; deploy, restore and domains will). Neither job
holds its environment: its status does not change. See specs/cache.md.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from pressluft.contexts.nodes import node_command, run_node_playbook
from pressluft.contexts.sites.events import EnvironmentCacheChanged
from pressluft.contexts.sites.failures import (
    CACHE_PURGE_FAILED,
    CACHE_PURGE_UNVERIFIED,
    ENV_NOT_ACTIVE,
    OBJECT_CACHE_UNAVAILABLE,
)
from pressluft.contexts.sites.loaders import ENVIRONMENT_JOB, EnvironmentJob, env_names
from pressluft.contexts.sites.probes import HttpUnreachable, cache_status
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, WorkerPort

__all__ = [
    "PURGE_COMMAND",
    "TOGGLE_PLAYBOOK",
    "CachePurge",
    "CachePurgeArgs",
    "CacheToggleArgs",
    "EnvCacheToggle",
    "cache_workers",
    "purge_environment_cache",
]

#: The privileged purge command the role installs on the node (root-owned).
PURGE_COMMAND = "/usr/local/sbin/pressluft-cache-purge"
TOGGLE_PLAYBOOK = "env-cache-toggle.yml"
#: The purge command's time limit (one SSH connection and a directory walk).
PURGE_DEADLINE_SECONDS = 60.0
VERIFY_TIMEOUT_SECONDS = 10.0


class CacheToggleArgs(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The flags to apply; None: keep the environment's."""

    fastcgi_cache_enabled: bool | None = None
    redis_cache_enabled: bool | None = None


class CachePurgeArgs(msgspec.Struct, frozen=True, kw_only=True):
    #: Absolute URLs of the environment (checked by the command); empty: everything.
    urls: list[str] = []


def _endpoint(env: EnvironmentJob) -> tuple[str, int]:
    """Where the control plane reaches the node's nginx (lab nodes: the published port)."""
    if env.ports:
        return "127.0.0.1", int(env.ports["http"])
    return env.host, 80


async def _active_environment(ctx: WorkerPort) -> tuple[str, EnvironmentJob]:
    environment_id = ctx.environment_id
    if environment_id is None:
        raise JobFailure("HANDLER_ERROR", f"a {ctx.job_type} job needs an environment")
    env = await ctx.load(ENVIRONMENT_JOB, environment_id)
    if env is None or env.status != "active":
        status = "gone" if env is None else env.status
        raise JobFailure(ENV_NOT_ACTIVE, f"the environment is {status}, not active: nothing done")
    return environment_id, env


async def purge_environment_cache(
    ctx: WorkerPort, environment_id: str, env: EnvironmentJob, urls: list[str]
) -> None:
    """Purge the environment's page cache on its node — everything, or `urls` (GET and
    HEAD) — and verify it: each purged URL (the home page for everything) answers
    `X-FastCGI-Cache: MISS` through the node's nginx. JobFailure `CACHE_PURGE_FAILED`
    when the command fails, `CACHE_PURGE_UNVERIFIED` when a page is not a MISS."""
    argv = [PURGE_COMMAND, environment_id]
    stdin = None
    if urls:
        argv.append("--stdin")
        stdin = "".join(f"{url}\n" for url in urls)
    started = time.monotonic()
    result = await node_command(ctx, argv, stdin, PURGE_DEADLINE_SECONDS)
    elapsed = time.monotonic() - started
    if result.exit_status != 0:
        for line in (result.stdout + result.stderr).strip().splitlines()[-20:]:
            ctx.log(line, "stderr")
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise JobFailure(
            CACHE_PURGE_FAILED, f"the purge command exited {result.exit_status}: {last}"
        )
    ctx.log(f"purge: {result.stdout.strip()} (one SSH command, {elapsed:.2f} s)")
    if not env.fastcgi_cache_enabled:
        ctx.log("the page cache is off: nothing is served from it, nothing to verify")
        return
    address, port = _endpoint(env)
    for url in urls or [env.preview_url]:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            status, cache = await cache_status(
                address, port, parts.netloc, path, VERIFY_TIMEOUT_SECONDS
            )
        except HttpUnreachable as exc:
            raise JobFailure(
                CACHE_PURGE_UNVERIFIED, f"{url}: no answer from {address}:{port} ({exc})"
            ) from exc
        if cache != "MISS":
            raise JobFailure(
                CACHE_PURGE_UNVERIFIED,
                f"{url} answered X-FastCGI-Cache: {cache or '(none)'} (HTTP {status}) after"
                " the purge, not MISS",
            )
        ctx.log(f"verified: {url} is a MISS now (HTTP {status})")


class EnvCacheToggle(JobWorker[CacheToggleArgs]):
    """Turn the environment's page (and object) cache on or off on its node."""

    kind = "env_cache_toggle"
    args = CacheToggleArgs
    timeout_seconds = 600
    timeout_code = "ANSIBLE_TIMEOUT"
    node_lock = "shared"

    async def work(self, ctx: WorkerPort, args: CacheToggleArgs) -> None:
        environment_id, env = await _active_environment(ctx)
        fastcgi = (
            env.fastcgi_cache_enabled
            if args.fastcgi_cache_enabled is None
            else args.fastcgi_cache_enabled
        )
        redis = (
            env.redis_cache_enabled
            if args.redis_cache_enabled is None
            else args.redis_cache_enabled
        )
        extra_vars: dict[str, object] = {
            "site_id": env.site_id,
            "environment_id": environment_id,
            **env_names(environment_id, env.site_id),
            "environment_type": env.environment_type,
            "preview_host": str(urlsplit(env.preview_url).hostname),
            "preview_url": env.preview_url,
            "fastcgi_cache_enabled": fastcgi,
            "redis_cache_enabled": redis,
        }
        summary, _ = await run_node_playbook(
            ctx, TOGGLE_PLAYBOOK, extra_vars=extra_vars, allowlist=frozenset({TOGGLE_PLAYBOOK})
        )
        # What the node applied (the role reports each part it ran): the API's flags
        # say what the node serves, nothing else.
        applied_redis = bool(summary.data.get("redis_cache_applied"))
        event = EnvironmentCacheChanged(
            environment_id=environment_id,
            job_id=ctx.job_id,
            fastcgi_cache_enabled=args.fastcgi_cache_enabled,
            redis_cache_enabled=args.redis_cache_enabled if applied_redis else None,
        )
        if event.fastcgi_cache_enabled is not None or event.redis_cache_enabled is not None:
            await ctx.record(f"environment:{environment_id}", [event])
        ctx.log(f"page cache {'on' if fastcgi else 'off'} for {env.preview_url}")
        if args.redis_cache_enabled is not None and not applied_redis:
            raise JobFailure(
                OBJECT_CACHE_UNAVAILABLE,
                "the node's role has no object-cache tasks yet: redis_cache_enabled is unchanged",
            )


class CachePurge(JobWorker[CachePurgeArgs]):
    """Purge the environment's page cache (all of it, or URLs) and verify it."""

    kind = "cache_purge"
    args = CachePurgeArgs
    timeout_seconds = 300
    node_lock = "shared"

    async def work(self, ctx: WorkerPort, args: CachePurgeArgs) -> None:
        environment_id, env = await _active_environment(ctx)
        await purge_environment_cache(ctx, environment_id, env, list(args.urls))


def cache_workers() -> list[JobWorker[Any]]:
    """`env_cache_toggle` and `cache_purge`."""
    return [EnvCacheToggle(), CachePurge()]
