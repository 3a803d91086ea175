"""The sites service routes and pages call: it owns the read/write boundary of
sites and environments (queries in one read transaction, commands run at most
once per `Idempotency-Key` through the `Writer`, magic login's direct query)."""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from pressluft.acting import Context
from pressluft.contexts.sites.cache import (
    CacheAccepted,
    CachePurgeRequest,
    CacheSettingsRequest,
    purge_cache_command,
    toggle_cache_command,
)
from pressluft.contexts.sites.creation import CreateSiteRequest, SiteAccepted, create_site_command
from pressluft.contexts.sites.environments import (
    BackupSource,
    CreateEnvironmentRequest,
    DeletionAccepted,
    EnvironmentAccepted,
    ResetResult,
    create_environment_command,
    delete_environment_command,
    delete_site_command,
    reset_environment_command,
    reset_site_command,
)
from pressluft.contexts.sites.magic_login import MagicLogin, issue_magic_login
from pressluft.contexts.sites.queries import (
    EnvironmentView,
    SitePage,
    SiteQuery,
    SiteView,
    get_environment,
    get_site,
    list_environments,
    list_sites,
)
from pressluft.db import Database
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer
from pressluft.vault import Vault

__all__ = ["Sites"]

T = TypeVar("T")


class Sites:
    """Sites and their environments: read, create, delete, reset; magic login; the
    cache's toggle and purge."""

    def __init__(self, db: Database, writer: Writer, vault: Callable[[], Vault]) -> None:
        self._db = db
        self._writer = writer
        self._vault = vault

    # -- queries ------------------------------------------------------------------------

    async def list(self, query: SiteQuery) -> SitePage:
        # Kept until the next commit: a page depends only on the database and the query.
        return await self._db.read_cached(
            ("listSites", query), lambda conn: list_sites(conn, query)
        )

    async def get(self, site_id: str) -> SiteView:
        return await self._db.read(lambda conn: get_site(conn, site_id))

    async def read(
        self, site_id: str, also: Callable[[sqlite3.Connection, SiteView], T]
    ) -> tuple[SiteView, T]:
        """A site and what `also` reads beside it, in one read transaction (a page)."""

        def both(conn: sqlite3.Connection) -> tuple[SiteView, T]:
            site = get_site(conn, site_id)
            return site, also(conn, site)

        return await self._db.read(both)

    async def environments(self, site_id: str) -> builtins.list[EnvironmentView]:
        return await self._db.read(lambda conn: list_environments(conn, site_id))

    async def environment(self, environment_id: str) -> EnvironmentView:
        return await self._db.read(lambda conn: get_environment(conn, environment_id))

    # -- commands -----------------------------------------------------------------------

    async def create(
        self, request: CreateSiteRequest, ctx: Context, retry: Retry | None
    ) -> Answered[SiteAccepted]:
        command = create_site_command(request, self._vault(), ctx.meta())
        return await self._writer.run(command, SiteAccepted, 202, retry)

    async def create_environment(
        self,
        site_id: str,
        request: CreateEnvironmentRequest,
        ctx: Context,
        retry: Retry | None,
        backups: BackupSource | None = None,
    ) -> Answered[EnvironmentAccepted]:
        command = create_environment_command(site_id, request, self._vault(), ctx.meta(), backups)
        return await self._writer.run(command, EnvironmentAccepted, 202, retry)

    async def delete(
        self, site_id: str, confirm: str | None, ctx: Context, retry: Retry | None
    ) -> Answered[DeletionAccepted]:
        command = delete_site_command(site_id, confirm, ctx.meta())
        return await self._writer.run(command, DeletionAccepted, 202, retry)

    async def delete_environment(
        self, environment_id: str, confirm: str | None, ctx: Context, retry: Retry | None
    ) -> Answered[DeletionAccepted]:
        command = delete_environment_command(environment_id, confirm, ctx.meta())
        return await self._writer.run(command, DeletionAccepted, 202, retry)

    async def reset(self, site_id: str, ctx: Context, retry: Retry | None) -> Answered[ResetResult]:
        command = reset_site_command(site_id, ctx.meta())
        return await self._writer.run(command, ResetResult, 200, retry)

    async def reset_environment(
        self, environment_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[ResetResult]:
        command = reset_environment_command(environment_id, ctx.meta())
        return await self._writer.run(command, ResetResult, 200, retry)

    async def set_cache(
        self,
        environment_id: str,
        request: CacheSettingsRequest,
        ctx: Context,
        retry: Retry | None,
    ) -> Answered[CacheAccepted]:
        command = toggle_cache_command(environment_id, request, ctx.meta())
        return await self._writer.run(command, CacheAccepted, 202, retry)

    async def purge_cache(
        self,
        environment_id: str,
        request: CachePurgeRequest | None,
        ctx: Context,
        retry: Retry | None,
    ) -> Answered[CacheAccepted]:
        command = purge_cache_command(environment_id, request, ctx.meta())
        return await self._writer.run(command, CacheAccepted, 202, retry)

    async def magic_login(self, environment_id: str, ctx: Context) -> MagicLogin:
        """A one-time wp-admin URL (a direct query to the node, audited)."""
        return await issue_magic_login(self._db, self._vault(), environment_id, ctx.meta())
