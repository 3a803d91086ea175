"""The jobs that build and remove WordPress environments on their node.

`site_create` builds a new site's production environment (`site-create.yml`:
user, pool, database, vhost, release, WordPress installed by the PHP helper,
health checks); `env_create` builds a staging or clone environment as a copy of
another environment of the site (`env-create.yml`: the same role, with the
source's release, uploads and database copied and its URLs rewritten by the
helper's serialization-safe search-replace); `env_delete` and `site_delete`
remove one environment from its node (`site-delete.yml`) and destroy its
secrets — `site_delete` is the production environment's, and the site goes
with it. After a build the control plane checks HTTP itself (10 s, one
retry). Every outcome is an event recorded under the job's lease; a failure
for good records `environment.failed`. See specs/sites.md.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from html import unescape
from urllib.parse import urlsplit

import msgspec

from pressluft.clock import parse_ts
from pressluft.db import Database, WriteTx
from pressluft.events import Meta, append
from pressluft.events.types import (
    EnvironmentDeleted,
    EnvironmentFailed,
    EnvironmentProvisioned,
)
from pressluft.ids import new_id
from pressluft.jobs.context import JobContext
from pressluft.jobs.failures import JobFailure, retryable
from pressluft.jobs.queue import require_lease
from pressluft.jobs.registry import JobRegistry, JobType
from pressluft.nodes.ansible import PlaybookSummary
from pressluft.nodes.http import HttpUnreachable, get
from pressluft.services.nodes import run_node_playbook
from pressluft.services.sites import ENV_JOB_TIMEOUT_SECONDS, env_names
from pressluft.vault import Vault

__all__ = ["register_site_jobs", "skipped_report"]

SITE_CREATE_PLAYBOOK = "site-create.yml"
ENV_CREATE_PLAYBOOK = "env-create.yml"
SITE_DELETE_PLAYBOOK = "site-delete.yml"
HEALTH_TIMEOUT_SECONDS = 10.0
#: WordPress core when the `wordpress_source` setting is empty: the node image's copy on
#: lab nodes (no network there), else the official latest release.
LAB_WORDPRESS = "/usr/share/wordpress"
OFFICIAL_WORDPRESS = "https://wordpress.org/latest.tar.gz"


class _Environment(msgspec.Struct, frozen=True, kw_only=True):
    """What a job needs of its environment and node (secrets opened)."""

    site_id: str
    environment_type: str
    status: str
    preview_url: str
    db_password: str | None
    admin_password: str | None
    #: The WordPress administrator (magic login signs in as it).
    admin_user: str
    db_secret_id: str | None
    admin_secret_id: str | None
    fastcgi_cache_enabled: bool
    redis_cache_enabled: bool
    source_environment_id: str | None
    host: str
    ports: dict[str, int] | None
    provider: str

    @property
    def preview_host(self) -> str:
        """The host name (nginx's server_name; the node's /etc/hosts line)."""
        return str(urlsplit(self.preview_url).hostname)

    @property
    def preview_netloc(self) -> str:
        """Host and, on lab nodes, port: the `Host` header WordPress expects (with
        another, it redirects to its own URL)."""
        return urlsplit(self.preview_url).netloc

    def endpoint(self) -> tuple[str, int]:
        """Where the control plane reaches the node's nginx (lab nodes: the published port)."""
        if self.ports:
            return "127.0.0.1", int(self.ports["http"])
        return self.host, 80


def _load(conn: sqlite3.Connection, vault: Vault, environment_id: str) -> _Environment | None:
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
    return _Environment(
        site_id=site_id,
        environment_type=kind,
        status=status,
        preview_url=url,
        db_password=None if db_secret is None else vault.open(conn, db_secret).decode(),
        admin_password=None if admin_secret is None else vault.open(conn, admin_secret).decode(),
        admin_user=str(admin_user),
        db_secret_id=db_secret,
        admin_secret_id=admin_secret,
        fastcgi_cache_enabled=bool(fastcgi),
        redis_cache_enabled=bool(redis),
        source_environment_id=source,
        host=host,
        ports=None if ports is None else msgspec.json.decode(ports),
        provider=provider,
    )


def _release_dir(now: datetime) -> str:
    """A release's directory name under `releases/` (its id is a UUID)."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _site_task_code(task: str) -> str | None:
    """The site playbooks' own failures: health checks, the install, the clone's copy."""
    if task.startswith("Health check"):
        return "SITE_HEALTH_FAILED"
    if task.startswith("Fail when the install failed"):
        return "SITE_INSTALL_FAILED"
    if task.startswith("Clone:"):
        return "ENV_CLONE_FAILED"
    return None


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text)) + " "


def _shows(page: str, title: str) -> bool:
    """The title's words, in order, in the page (WordPress escapes and texturizes
    titles: "A & B's" is served as "A &amp; B&#8217;s")."""
    return _words(title) in _words(unescape(page))


async def _check_http(ctx: JobContext, env: _Environment, title: str) -> None:
    """HTTP 200 with the site's title for its preview host at the node's endpoint
    (10 s, one retry)."""
    address, port = env.endpoint()
    host = env.preview_netloc
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
    raise JobFailure("SITE_HEALTH_FAILED", f"the site does not answer: {problem}")


class _EnvironmentJob:
    """One run of an environment job: its claim, meta, stream and the
    lease-fenced writes of its outcome."""

    def __init__(self, ctx: JobContext, db: Database, vault: Vault) -> None:
        self.ctx = ctx
        self.db = db
        self.vault = vault
        claim = ctx.claim
        assert claim.environment_id is not None
        self.environment_id = claim.environment_id
        self.meta = Meta(actor=f"system:job:{claim.job_id}", correlation_id=claim.correlation_id)
        self.stream = f"environment:{claim.environment_id}"

    async def load(self, *statuses: str) -> _Environment | None:
        env = await self.db.read(lambda conn: _load(conn, self.vault, self.environment_id))
        if env is None or env.status not in statuses:
            self.ctx.log(f"the environment is not {' or '.join(statuses)}: nothing to do")
            return None
        return env

    def base_vars(self, env: _Environment) -> dict[str, object]:
        return {
            "site_id": env.site_id,
            "environment_id": self.environment_id,
            **env_names(self.environment_id, env.site_id),
        }

    async def record(self, write: Callable[[WriteTx], object]) -> None:
        claim = self.ctx.claim

        def command(tx: WriteTx) -> None:
            require_lease(tx.conn, claim.job_id, claim.lease_token, claim.attempt)
            write(tx)

        await self.db.write(command)

    async def guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work`; a failure for good records `environment.failed`."""
        claim = self.ctx.claim
        try:
            await work()
        except JobFailure as failure:
            if not retryable(failure.code) or claim.attempt >= claim.max_attempts:
                event = EnvironmentFailed(
                    environment_id=self.environment_id,
                    job_id=claim.job_id,
                    error_code=failure.code,
                )
                await self.record(lambda tx: append(tx, self.stream, None, [event], self.meta))
            raise

    async def playbook(self, name: str, extra_vars: dict[str, object]) -> PlaybookSummary:
        summary, _ = await run_node_playbook(
            self.ctx,
            self.db,
            self.vault,
            name,
            extra_vars=extra_vars,
            allowlist=frozenset({name}),
            task_codes=_site_task_code,
        )
        return summary

    def build_vars(self, env: _Environment) -> dict[str, object]:
        """The role's variables shared by a new site and a clone."""
        return {
            **self.base_vars(env),
            "environment_type": env.environment_type,
            "preview_host": env.preview_host,
            "preview_url": env.preview_url,
            "db_password": env.db_password,
            # A new site's administrator; a clone's (copied) gets the clone's own password.
            "admin_user": env.admin_user,
            "admin_password": env.admin_password,
            "fastcgi_cache_enabled": env.fastcgi_cache_enabled,
            "redis_cache_enabled": env.redis_cache_enabled,
            # Lab nodes have no way out: WordPress's calls home would each time out.
            "block_external_http": env.provider == "docker",
            "release_id": _release_dir(parse_ts(self.ctx.claim.claimed_at)),
        }

    async def provisioned(
        self, summary: PlaybookSummary, extra_vars: dict[str, object], source: tuple[str, str]
    ) -> str | None:
        reported = summary.data
        release_path = str(
            reported.get("release_path")
            or f"{extra_vars['env_root']}/releases/{extra_vars['release_id']}"
        )
        version = reported.get("wordpress_version")
        event = EnvironmentProvisioned(
            environment_id=self.environment_id,
            job_id=self.ctx.claim.job_id,
            release_id=new_id(),
            release_path=release_path,
            source_type="wordpress" if source[0] == "wordpress" else "clone",
            source_ref=source[1],
            wordpress_version=None if version is None else str(version),
        )
        await self.record(lambda tx: append(tx, self.stream, None, [event], self.meta))
        return None if version is None else str(version)


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


def _source_vars(conn: sqlite3.Connection, source_id: str) -> dict[str, object] | None:
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


def register_site_jobs(
    registry: JobRegistry, db: Database, vault: Callable[[], Vault], wordpress_source: str
) -> None:
    """`site_create` (WordPress core from `wordpress_source`: a URL or a node
    directory), `env_create`, `env_delete` and `site_delete`."""

    async def site_create(ctx: JobContext) -> None:
        job = _EnvironmentJob(ctx, db, vault())
        env = await job.load("creating")
        if env is None:
            return
        title = str(ctx.claim.payload.get("title", ""))
        source = wordpress_source or (
            LAB_WORDPRESS if env.provider == "docker" else OFFICIAL_WORDPRESS
        )
        extra_vars: dict[str, object] = {
            **job.build_vars(env),
            "site_title": title,
            "admin_email": str(ctx.claim.payload.get("admin_email", "")),
            "wordpress_source": source,
        }

        async def work() -> None:
            summary = await job.playbook(SITE_CREATE_PLAYBOOK, extra_vars)
            await _check_http(ctx, env, title)
            version = await job.provisioned(summary, extra_vars, ("wordpress", source))
            ctx.log(f"environment active: WordPress {version or '?'} at {env.preview_url}")

        await job.guarded(work)

    async def env_create(ctx: JobContext) -> None:
        job = _EnvironmentJob(ctx, db, vault())
        env = await job.load("cloning")
        if env is None:
            return
        assert env.source_environment_id is not None
        source_id = env.source_environment_id

        async def work() -> None:
            source = await db.read(lambda conn: _source_vars(conn, source_id))
            if source is None:
                raise JobFailure(
                    "ENV_SOURCE_UNAVAILABLE",
                    f"the source environment {source_id} is no longer active with a release",
                )
            extra_vars = {**job.build_vars(env), **source}
            summary = await job.playbook(ENV_CREATE_PLAYBOOK, extra_vars)
            for line in skipped_report(summary.data.get("search_replace")):
                ctx.log(line, "stderr")
            title = str(summary.data.get("site_title", ""))
            await _check_http(ctx, env, title)
            await job.provisioned(summary, extra_vars, ("clone", source_id))
            ctx.log(f"environment active: a copy of {source_id} at {env.preview_url}")

        await job.guarded(work)

    async def env_delete(ctx: JobContext) -> None:
        job = _EnvironmentJob(ctx, db, vault())
        env = await job.load("deleting")
        if env is None:
            return

        async def work() -> None:
            await job.playbook(SITE_DELETE_PLAYBOOK, job.base_vars(env))
            event = EnvironmentDeleted(environment_id=job.environment_id, job_id=ctx.claim.job_id)

            def deleted(tx: WriteTx) -> None:
                for secret in (env.db_secret_id, env.admin_secret_id):
                    if secret is not None:
                        Vault.destroy(tx.conn, secret)
                append(tx, job.stream, None, [event], job.meta)

            await job.record(deleted)
            ctx.log(f"environment {job.environment_id} deleted: nothing of it is left on the node")

        await job.guarded(work)

    for name, handler in (
        ("site_create", site_create),
        ("env_create", env_create),
        ("env_delete", env_delete),
        ("site_delete", env_delete),
    ):
        registry.register(
            JobType(
                name,
                handler,
                timeout_seconds=ENV_JOB_TIMEOUT_SECONDS,
                timeout_code="ANSIBLE_TIMEOUT",
            )
        )
