"""The jobs that build and remove WordPress environments on their node.

`site_create` builds a new site's production environment (`site-create.yml`:
user, pool, database, vhost, release, WordPress installed by the PHP helper,
health checks); `env_create` builds a staging or clone environment as a copy of
another environment of the site (`env-create.yml`: the same role, with the
source's release, uploads and database copied and its URLs rewritten by the
helper's serialization-safe search-replace, its page cache purged at the end);
`env_delete` and `site_delete`
remove one environment from its node (`site-delete.yml`) and destroy its
secrets — `site_delete` is the production environment's, and the site goes
with it. After a build the control plane checks HTTP itself (10 s, one
retry). Every outcome is an event recorded through the worker port, under the
job's lease. Each job holds its environment in the status its command set
(`creating`, `cloning`, `deleting`): a job that ends failed or cancelled leaves
it `failed` with the job's code (the generic rule of held rows, JOB-48 — no
handler records a failure of its own). See specs/sites.md.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from datetime import UTC, datetime
from html import unescape
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec

from pressluft.clock import parse_ts
from pressluft.contexts.nodes import run_node_playbook
from pressluft.contexts.sites.cache_workers import purge_environment_cache
from pressluft.contexts.sites.events import EnvironmentProvisioned
from pressluft.contexts.sites.failures import (
    ENV_CLONE_FAILED,
    ENV_SOURCE_UNAVAILABLE,
    SITE_HEALTH_FAILED,
    SITE_INSTALL_FAILED,
)
from pressluft.contexts.sites.loaders import (
    CLONE_SOURCE,
    ENV_JOB_TIMEOUT_SECONDS,
    ENVIRONMENT_JOB,
    EnvironmentJob,
    env_names,
    record_environment_deleted,
)
from pressluft.ids import new_id
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort
from pressluft.runners.ansible import PlaybookSummary
from pressluft.runners.http import HttpUnreachable, get

__all__ = [
    "EnvCreate",
    "EnvCreateArgs",
    "EnvDelete",
    "SiteCreate",
    "SiteCreateArgs",
    "SiteDelete",
    "build_throwaway",
    "built_release",
    "check_http",
    "record_provisioned",
    "remove_throwaway",
    "site_workers",
    "skipped_report",
    "throwaway_url",
]

A = TypeVar("A", bound=msgspec.Struct)

SITE_CREATE_PLAYBOOK = "site-create.yml"
ENV_CREATE_PLAYBOOK = "env-create.yml"
SITE_DELETE_PLAYBOOK = "site-delete.yml"
HEALTH_TIMEOUT_SECONDS = 10.0
#: WordPress core when the `wordpress_source` setting is empty: the node image's copy on
#: lab nodes (no network there), else the official latest release.
LAB_WORDPRESS = "/usr/share/wordpress"
OFFICIAL_WORDPRESS = "https://wordpress.org/latest.tar.gz"


def _preview_host(env: EnvironmentJob) -> str:
    """The host name (nginx's server_name; the node's /etc/hosts line)."""
    return str(urlsplit(env.preview_url).hostname)


def _preview_netloc(env: EnvironmentJob) -> str:
    """Host and, on lab nodes, port: the `Host` header WordPress expects (with
    another, it redirects to its own URL)."""
    return urlsplit(env.preview_url).netloc


def _endpoint(env: EnvironmentJob) -> tuple[str, int]:
    """Where the control plane reaches the node's nginx (lab nodes: the published port)."""
    if env.ports:
        return "127.0.0.1", int(env.ports["http"])
    return env.host, 80


def _release_dir(now: datetime) -> str:
    """A release's directory name under `releases/` (its id is a UUID)."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _site_task_code(task: str) -> str | None:
    """The site playbooks' own failures: health checks, the install, the clone's copy."""
    if task.startswith("Health check"):
        return SITE_HEALTH_FAILED
    if task.startswith("Fail when the install failed"):
        return SITE_INSTALL_FAILED
    if task.startswith("Clone:"):
        return ENV_CLONE_FAILED
    return None


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text)) + " "


def _shows(page: str, title: str) -> bool:
    """The title's words, in order, in the page (WordPress escapes and texturizes
    titles: "A & B's" is served as "A &amp; B&#8217;s")."""
    return _words(title) in _words(unescape(page))


async def check_http(ctx: WorkerPort, env: EnvironmentJob, title: str) -> None:
    """HTTP 200 with the site's title for its preview host at the node's endpoint
    (10 s, one retry)."""
    address, port = _endpoint(env)
    host = _preview_netloc(env)
    problem = ""
    for attempt in (1, 2):
        try:
            answer = await get(address, port, host, "/", HEALTH_TIMEOUT_SECONDS)
        except HttpUnreachable as exc:
            problem = f"no answer from {address}:{port} ({exc})"
        else:
            if answer.status == 200 and _shows(answer.body, title):
                ctx.log(f"health: http 200 for {host} ({address}:{port})", "system")
                return
            problem = f"http {answer.status} for {host}" + (
                "" if answer.status != 200 else " without the site's title"
            )
        ctx.log(f"health: {problem} (check {attempt} of 2)", "stderr")
        if attempt == 1:
            await asyncio.sleep(2)
    raise JobFailure(SITE_HEALTH_FAILED, f"the site does not answer: {problem}")


class _EnvironmentWorker(JobWorker[A]):
    """A job that builds or removes its environment (on the environment's node)."""

    timeout_seconds = ENV_JOB_TIMEOUT_SECONDS
    timeout_code = "ANSIBLE_TIMEOUT"
    #: A site's job locks its site; its node it shares with other site jobs.
    node_lock = "shared"
    #: The status it finds the environment in (its command set it): else nothing to do.
    held_as: str

    async def environment(self, ctx: WorkerPort) -> tuple[str, EnvironmentJob] | None:
        environment_id = ctx.environment_id
        if environment_id is None:
            raise JobFailure("HANDLER_ERROR", f"a {self.kind} job needs an environment")
        env = await ctx.load(ENVIRONMENT_JOB, environment_id)
        if env is None or env.status != self.held_as:
            ctx.log(f"the environment is not {self.held_as}: nothing to do")
            return None
        return environment_id, env

    @staticmethod
    def base_vars(environment_id: str, env: EnvironmentJob) -> dict[str, object]:
        return {
            "site_id": env.site_id,
            "environment_id": environment_id,
            **env_names(environment_id, env.site_id),
        }

    @staticmethod
    async def playbook(
        ctx: WorkerPort, name: str, extra_vars: dict[str, object]
    ) -> PlaybookSummary:
        summary, _ = await run_node_playbook(
            ctx,
            name,
            extra_vars=extra_vars,
            allowlist=frozenset({name}),
            task_codes=_site_task_code,
        )
        return summary

    async def build_vars(
        self, ctx: WorkerPort, environment_id: str, env: EnvironmentJob
    ) -> dict[str, object]:
        """The role's variables shared by a new site and a clone (secrets opened)."""
        db_password = None if env.db_secret_id is None else await ctx.secret(env.db_secret_id)
        admin_password = (
            None if env.admin_secret_id is None else await ctx.secret(env.admin_secret_id)
        )
        return {
            **self.base_vars(environment_id, env),
            "environment_type": env.environment_type,
            "preview_host": _preview_host(env),
            "preview_url": env.preview_url,
            "db_password": db_password,
            # A new site's administrator; a clone's (copied) gets the clone's own password.
            "admin_user": env.admin_user,
            "admin_password": admin_password,
            "fastcgi_cache_enabled": env.fastcgi_cache_enabled,
            "redis_cache_enabled": env.redis_cache_enabled,
            # Lab nodes have no way out: WordPress's calls home would each time out.
            "block_external_http": env.provider == "docker",
            "release_id": _release_dir(parse_ts(ctx.claimed_at)),
        }

    @staticmethod
    async def provisioned(
        ctx: WorkerPort,
        environment_id: str,
        summary: PlaybookSummary,
        extra_vars: dict[str, object],
        source: tuple[str, str],
    ) -> str | None:
        version = summary.data.get("wordpress_version")
        await record_provisioned(
            ctx,
            environment_id,
            built_release(summary, extra_vars),
            ("wordpress" if source[0] == "wordpress" else "clone", source[1]),
            None if version is None else str(version),
        )
        return None if version is None else str(version)


def built_release(summary: PlaybookSummary, extra_vars: dict[str, object]) -> str:
    """The release directory a build made (the playbook's report, else its name)."""
    return str(
        summary.data.get("release_path")
        or f"{extra_vars['env_root']}/releases/{extra_vars['release_id']}"
    )


async def record_provisioned(
    ctx: WorkerPort,
    environment_id: str,
    release_path: str,
    source: tuple[Literal["wordpress", "clone", "backup"], str],
    wordpress_version: str | None,
) -> None:
    """`environment.provisioned`: the environment serves `release_path` (active)."""
    event = EnvironmentProvisioned(
        environment_id=environment_id,
        job_id=ctx.job_id,
        release_id=new_id(),
        release_path=release_path,
        source_type=source[0],
        source_ref=source[1],
        wordpress_version=wordpress_version,
    )
    await ctx.record(f"environment:{environment_id}", [event])


def skipped_report(passes: object) -> list[str]:
    """The job-log lines for what the clone's search-replace left unchanged: the
    tables without a primary key and the cells holding serialized data it cannot
    rewrite without loss (each once, though every pass of the rewrite saw it)."""
    if not isinstance(passes, list):
        return []
    tables: list[str] = []
    cells: dict[tuple[str, str, str], str] = {}
    counted = 0
    for result in passes:
        if not isinstance(result, dict):
            continue
        counted = max(counted, int(result.get("cells_skipped") or 0))
        for table in result.get("skipped_tables") or []:
            if str(table) not in tables:
                tables.append(str(table))
        for cell in result.get("skipped_cells") or []:
            if not isinstance(cell, dict):
                continue
            key = cell.get("key")
            where = (
                ", ".join(f"{k}={v}" for k, v in key.items()) if isinstance(key, dict) else str(key)
            )
            cells.setdefault(
                (str(cell.get("table")), str(cell.get("column")), where), str(cell.get("reason"))
            )
    lines = [
        f"search-replace skipped table {table}: it has no primary key (its rows keep the"
        " source's URLs)"
        for table in tables
    ]
    if cells:
        lines.append(
            f"search-replace left {max(counted, len(cells))} cell(s) unchanged: serialized data"
            " it cannot rewrite without loss (they keep the source's URLs; fix them by hand)"
        )
        lines += [
            f"  skipped: {table}.{column} where {where}: {reason}"
            for (table, column, where), reason in cells.items()
        ]
        if counted > len(cells):
            lines.append(f"  (the first {len(cells)} of each pass are listed)")
    return lines


class SiteCreateArgs(msgspec.Struct, frozen=True, kw_only=True):
    #: The WordPress site title.
    title: str = ""
    admin_email: str = ""


class SiteCreate(_EnvironmentWorker[SiteCreateArgs]):
    """A new site's production environment (`site-create.yml`), WordPress core from
    the `wordpress_source` setting (a URL or a node directory)."""

    kind = "site_create"
    args = SiteCreateArgs
    held_as = "creating"

    def __init__(self, wordpress_source: str) -> None:
        self.wordpress_source = wordpress_source

    async def work(self, ctx: WorkerPort, args: SiteCreateArgs) -> None:
        found = await self.environment(ctx)
        if found is None:
            return
        environment_id, env = found
        source = self.wordpress_source or (
            LAB_WORDPRESS if env.provider == "docker" else OFFICIAL_WORDPRESS
        )
        extra_vars: dict[str, object] = {
            **await self.build_vars(ctx, environment_id, env),
            "site_title": args.title,
            "admin_email": args.admin_email,
            "wordpress_source": source,
        }
        summary = await self.playbook(ctx, SITE_CREATE_PLAYBOOK, extra_vars)
        await check_http(ctx, env, args.title)
        version = await self.provisioned(
            ctx, environment_id, summary, extra_vars, ("wordpress", source)
        )
        ctx.log(f"environment active: WordPress {version or '?'} at {env.preview_url}")


class EnvCreateArgs(msgspec.Struct, frozen=True, kw_only=True):
    source_environment_id: str | None = None


class EnvCreate(_EnvironmentWorker[EnvCreateArgs]):
    """A staging or clone environment: a copy of another environment of the site."""

    kind = "env_create"
    args = EnvCreateArgs
    held_as = "cloning"

    async def work(self, ctx: WorkerPort, args: EnvCreateArgs) -> None:
        found = await self.environment(ctx)
        if found is None:
            return
        environment_id, env = found
        summary, extra_vars = await self.build_copy(ctx, environment_id, env)
        title = str(summary.data.get("site_title", ""))
        await check_http(ctx, env, title)
        # What the build cached is gone before the copy serves (specs/cache.md).
        await purge_environment_cache(ctx, environment_id, env, [])
        source_id = str(env.source_environment_id)
        await self.provisioned(ctx, environment_id, summary, extra_vars, ("clone", source_id))
        ctx.log(f"environment active: a copy of {source_id} at {env.preview_url}")

    async def build_copy(
        self, ctx: WorkerPort, environment_id: str, env: EnvironmentJob
    ) -> tuple[PlaybookSummary, dict[str, object]]:
        """`env-create.yml` for the recorded environment: a copy of its source (its
        summary and variables); the search-replace's skipped cells logged."""
        assert env.source_environment_id is not None
        source_id = env.source_environment_id
        source = await ctx.load(CLONE_SOURCE, source_id)
        if source is None:
            raise JobFailure(
                ENV_SOURCE_UNAVAILABLE,
                f"the source environment {source_id} is no longer active with a release",
            )
        extra_vars = {**await self.build_vars(ctx, environment_id, env), **source}
        summary = await self.playbook(ctx, ENV_CREATE_PLAYBOOK, extra_vars)
        for line in skipped_report(summary.data.get("search_replace")):
            ctx.log(line, "stderr")
        return summary, extra_vars


class EnvDelete(_EnvironmentWorker[NoArgs]):
    """Remove the environment from its node and destroy its secrets."""

    kind = "env_delete"
    args = NoArgs
    held_as = "deleting"

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        found = await self.environment(ctx)
        if found is None:
            return
        environment_id, env = found
        await self.playbook(ctx, SITE_DELETE_PLAYBOOK, self.base_vars(environment_id, env))
        secrets = (env.db_secret_id, env.admin_secret_id)
        await ctx.command(record_environment_deleted(environment_id, ctx.job_id, secrets))
        ctx.log(f"environment {environment_id} deleted: nothing of it is left on the node")


class SiteDelete(EnvDelete):
    """The production environment's deletion: the site goes with it."""

    kind = "site_delete"


# -- throwaway environments (a restore drill's) -------------------------------------------


def throwaway_url(source: EnvironmentJob, environment_id: str) -> str:
    """A throwaway environment's URL: its source's with the first label of the host
    replaced by its own id's eight characters (the same node, scheme and port)."""
    parts = urlsplit(source.preview_url)
    host = str(parts.hostname)
    label = environment_id[:8] + host[host.index(".") :] if "." in host else environment_id[:8]
    netloc = label + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{netloc}"


async def build_throwaway(
    ctx: WorkerPort, source_id: str, source: EnvironmentJob, environment_id: str
) -> EnvironmentJob:
    """A clone of `source_id` on its node that no record holds (`env-create.yml`, its
    health checks included): what a restore drill restores into, then removes with
    `remove_throwaway`. Caches off; its passwords random and never stored."""
    clone = await ctx.load(CLONE_SOURCE, source_id)
    if clone is None:
        raise JobFailure(ENV_SOURCE_UNAVAILABLE, f"{source_id} is not active with a release")
    env = msgspec.structs.replace(
        source,
        environment_type="clone",
        preview_url=throwaway_url(source, environment_id),
        db_secret_id=None,
        admin_secret_id=None,
        fastcgi_cache_enabled=False,
        redis_cache_enabled=False,
        source_environment_id=source_id,
    )
    worker = EnvCreate()
    extra_vars = {
        **await worker.build_vars(ctx, environment_id, env),
        "db_password": secrets.token_hex(16),
        "admin_password": secrets.token_urlsafe(18),
        **clone,
    }
    await worker.playbook(ctx, ENV_CREATE_PLAYBOOK, extra_vars)
    return env


async def remove_throwaway(ctx: WorkerPort, environment_id: str, site_id: str) -> None:
    """Remove a throwaway environment from its node (`site-delete.yml`)."""
    env_vars: dict[str, object] = {
        "site_id": site_id,
        "environment_id": environment_id,
        **env_names(environment_id, site_id),
    }
    await EnvDelete.playbook(ctx, SITE_DELETE_PLAYBOOK, env_vars)


def site_workers(wordpress_source: str) -> list[JobWorker[Any]]:
    """`site_create` (WordPress core from `wordpress_source`), `env_create`,
    `env_delete` and `site_delete`."""
    return [SiteCreate(wordpress_source), EnvCreate(), EnvDelete(), SiteDelete()]
