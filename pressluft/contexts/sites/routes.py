"""`/api/sites` and `/api/environments`: create, list, read and delete sites and
their environments, reset them; magic login; their cache (toggle, purge)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.contexts.sites.cache import CacheAccepted, CachePurgeRequest, CacheSettingsRequest
from pressluft.contexts.sites.creation import CreateSiteRequest, SiteAccepted
from pressluft.contexts.sites.environments import (
    BackupSource,
    CreateEnvironmentRequest,
    DeletionAccepted,
    EnvironmentAccepted,
    ResetResult,
)
from pressluft.contexts.sites.magic_login import MagicLogin
from pressluft.contexts.sites.queries import (
    STATUSES,
    EnvironmentView,
    SitePage,
    SiteQuery,
    SiteView,
)
from pressluft.contexts.sites.service import Sites
from pressluft.errors import BadRequest
from pressluft.http.params import query_choice, query_int
from pressluft.http.writes import answer, retry_of
from pressluft.ids import is_uuid

__all__ = ["SITE_ROUTES"]

SiteIdParam = Annotated[str, PathParameter(name="site_id")]  # not a site's id: 404
EnvironmentIdParam = Annotated[str, PathParameter(name="environment_id")]  # likewise
Raw = Annotated[str | None, QueryParameter(max_length=64)]


@get("/api/sites", operation_id="listSites", tags=["sites"])
async def sites(
    sites: NamedDependency[Sites],
    status: Raw = None,
    node_id: Raw = None,
    before: Raw = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> SitePage:
    if node_id is not None and not is_uuid(node_id):
        raise BadRequest(
            "invalid query",
            details={"errors": [{"field": "node_id", "message": "a node id", "in": "query"}]},
        )
    query = SiteQuery(
        status=query_choice("status", status, STATUSES),
        node_id=node_id,
        before=query_int("before", before, 1, 2**62),
        limit=limit,
    )
    return await sites.list(query)


@post("/api/sites", operation_id="createSite", status_code=202, tags=["sites"])
async def create_site(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    data: Annotated[CreateSiteRequest, Body()],
) -> Response[SiteAccepted]:
    done = await sites.create(data, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@get("/api/sites/{site_id:str}", operation_id="getSite", tags=["sites"])
async def site(sites: NamedDependency[Sites], site_id: SiteIdParam) -> SiteView:
    return await sites.get(site_id)


@get("/api/sites/{site_id:str}/environments", operation_id="listEnvironments", tags=["sites"])
async def environments(
    sites: NamedDependency[Sites], site_id: SiteIdParam
) -> list[EnvironmentView]:
    return await sites.environments(site_id)


@get("/api/environments/{environment_id:str}", operation_id="getEnvironment", tags=["sites"])
async def environment(
    sites: NamedDependency[Sites], environment_id: EnvironmentIdParam
) -> EnvironmentView:
    return await sites.environment(environment_id)


@post(
    "/api/environments/{environment_id:str}/magic-login",
    operation_id="magicLogin",
    status_code=200,
    tags=["sites"],
)
async def magic_login(
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
) -> MagicLogin:
    return await sites.magic_login(environment_id, ctx)


Confirm = Annotated[str | None, QueryParameter(max_length=40)]


@delete("/api/sites/{site_id:str}", operation_id="deleteSite", status_code=202, tags=["sites"])
async def delete_site(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
    confirm: Confirm = None,
) -> Response[DeletionAccepted]:
    done = await sites.delete(site_id, confirm, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@post("/api/sites/{site_id:str}/reset", operation_id="resetSite", status_code=200, tags=["sites"])
async def reset_site(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
) -> Response[ResetResult]:
    done = await sites.reset(site_id, ctx, await retry_of(request, ctx))
    return answer(done, 200)


@post(
    "/api/sites/{site_id:str}/environments",
    operation_id="createEnvironment",
    status_code=202,
    tags=["sites"],
)
async def create_environment(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
    data: Annotated[CreateEnvironmentRequest, Body()],
    backup_sources: NamedDependency[tuple[BackupSource, ...]],
) -> Response[EnvironmentAccepted]:
    retry = await retry_of(request, ctx)
    backups = backup_sources[0] if backup_sources else None
    done = await sites.create_environment(site_id, data, ctx, retry, backups)
    return answer(done, 202)


@delete(
    "/api/environments/{environment_id:str}",
    operation_id="deleteEnvironment",
    status_code=202,
    tags=["sites"],
)
async def delete_environment(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    confirm: Confirm = None,
) -> Response[DeletionAccepted]:
    retry = await retry_of(request, ctx)
    done = await sites.delete_environment(environment_id, confirm, ctx, retry)
    return answer(done, 202)


@post(
    "/api/environments/{environment_id:str}/reset",
    operation_id="resetEnvironment",
    status_code=200,
    tags=["sites"],
)
async def reset_environment(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
) -> Response[ResetResult]:
    done = await sites.reset_environment(environment_id, ctx, await retry_of(request, ctx))
    return answer(done, 200)


@patch(
    "/api/environments/{environment_id:str}/cache",
    operation_id="setEnvironmentCache",
    status_code=202,
    tags=["sites"],
)
async def set_cache(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    data: Annotated[CacheSettingsRequest, Body()],
) -> Response[CacheAccepted]:
    done = await sites.set_cache(environment_id, data, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@post(
    "/api/environments/{environment_id:str}/cache/purge",
    operation_id="purgeEnvironmentCache",
    status_code=202,
    tags=["sites"],
)
async def purge_cache(
    request: Request[Any, Any, Any],
    sites: NamedDependency[Sites],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    data: Annotated[CachePurgeRequest | None, Body()] = None,
) -> Response[CacheAccepted]:
    done = await sites.purge_cache(environment_id, data, ctx, await retry_of(request, ctx))
    return answer(done, 202)


SITE_ROUTES = [
    sites,
    create_site,
    site,
    delete_site,
    reset_site,
    environments,
    create_environment,
    environment,
    delete_environment,
    reset_environment,
    magic_login,
    set_cache,
    purge_cache,
]
