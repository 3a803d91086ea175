"""`/api/sites` and `/api/environments`: create, list, read and delete sites and
their environments, reset them; magic login."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.api.daemon import Daemon
from pressluft.api.idempotency import replay_headers, run_write
from pressluft.contexts.sites.environments import (
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
from pressluft.contexts.sites.service import (
    STATUSES,
    CreateSiteRequest,
    EnvironmentView,
    SiteAccepted,
    SitePage,
    SiteQuery,
    SiteView,
    create_site_command,
    get_environment,
    get_site,
    list_environments,
    list_sites,
)
from pressluft.errors import BadRequest
from pressluft.http.params import query_choice, query_int
from pressluft.ids import is_uuid

__all__ = ["SITE_ROUTES"]

SiteIdParam = Annotated[str, PathParameter(name="site_id")]  # not a site's id: 404
EnvironmentIdParam = Annotated[str, PathParameter(name="environment_id")]  # likewise
Raw = Annotated[str | None, QueryParameter(max_length=64)]


@get("/api/sites", operation_id="listSites", tags=["sites"])
async def sites(
    runtime: NamedDependency[Daemon],
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
    return await runtime.db.read_cached(("listSites", query), lambda conn: list_sites(conn, query))


@post("/api/sites", operation_id="createSite", status_code=202, tags=["sites"])
async def create_site(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    data: Annotated[CreateSiteRequest, Body()],
) -> Response[SiteAccepted]:
    command = create_site_command(data, runtime.vault, ctx.meta())
    done = await run_write(request, runtime, ctx, command, SiteAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


@get("/api/sites/{site_id:str}", operation_id="getSite", tags=["sites"])
async def site(runtime: NamedDependency[Daemon], site_id: SiteIdParam) -> SiteView:
    return await runtime.db.read(lambda conn: get_site(conn, site_id))


@get("/api/sites/{site_id:str}/environments", operation_id="listEnvironments", tags=["sites"])
async def environments(
    runtime: NamedDependency[Daemon], site_id: SiteIdParam
) -> list[EnvironmentView]:
    return await runtime.db.read(lambda conn: list_environments(conn, site_id))


@get("/api/environments/{environment_id:str}", operation_id="getEnvironment", tags=["sites"])
async def environment(
    runtime: NamedDependency[Daemon], environment_id: EnvironmentIdParam
) -> EnvironmentView:
    return await runtime.db.read(lambda conn: get_environment(conn, environment_id))


@post(
    "/api/environments/{environment_id:str}/magic-login",
    operation_id="magicLogin",
    status_code=200,
    tags=["sites"],
)
async def magic_login(
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
) -> MagicLogin:
    return await issue_magic_login(runtime.db, runtime.vault, environment_id, ctx.meta())


Confirm = Annotated[str | None, QueryParameter(max_length=40)]


@delete("/api/sites/{site_id:str}", operation_id="deleteSite", status_code=202, tags=["sites"])
async def delete_site(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
    confirm: Confirm = None,
) -> Response[DeletionAccepted]:
    command = delete_site_command(site_id, confirm, ctx.meta())
    done = await run_write(request, runtime, ctx, command, DeletionAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


@post("/api/sites/{site_id:str}/reset", operation_id="resetSite", status_code=200, tags=["sites"])
async def reset_site(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
) -> Response[ResetResult]:
    command = reset_site_command(site_id, ctx.meta())
    done = await run_write(request, runtime, ctx, command, ResetResult, 200)
    return Response(done.value, status_code=200, headers=replay_headers(done))


@post(
    "/api/sites/{site_id:str}/environments",
    operation_id="createEnvironment",
    status_code=202,
    tags=["sites"],
)
async def create_environment(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    site_id: SiteIdParam,
    data: Annotated[CreateEnvironmentRequest, Body()],
) -> Response[EnvironmentAccepted]:
    command = create_environment_command(site_id, data, runtime.vault, ctx.meta())
    done = await run_write(request, runtime, ctx, command, EnvironmentAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


@delete(
    "/api/environments/{environment_id:str}",
    operation_id="deleteEnvironment",
    status_code=202,
    tags=["sites"],
)
async def delete_environment(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    confirm: Confirm = None,
) -> Response[DeletionAccepted]:
    command = delete_environment_command(environment_id, confirm, ctx.meta())
    done = await run_write(request, runtime, ctx, command, DeletionAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


@post(
    "/api/environments/{environment_id:str}/reset",
    operation_id="resetEnvironment",
    status_code=200,
    tags=["sites"],
)
async def reset_environment(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
) -> Response[ResetResult]:
    command = reset_environment_command(environment_id, ctx.meta())
    done = await run_write(request, runtime, ctx, command, ResetResult, 200)
    return Response(done.value, status_code=200, headers=replay_headers(done))


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
]
