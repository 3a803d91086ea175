"""`/api/nodes`: register, list, check, re-pin, provision, start/stop (lab nodes)
and decommission nodes; their facts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.api.daemon import Daemon
from pressluft.api.idempotency import replay_headers, run_write
from pressluft.clock import format_ts
from pressluft.contexts.nodes.service import (
    STATUSES,
    NodeAccepted,
    NodeFacts,
    NodePage,
    NodeQuery,
    NodeView,
    RegisterNodeRequest,
    RepinRequest,
    check_command,
    decommission_command,
    get_node,
    list_nodes,
    node_facts,
    provision_command,
    register_command,
    repin_command,
    start_command,
    stop_command,
)
from pressluft.db import WriteTx
from pressluft.http.params import query_choice, query_int

__all__ = ["NODE_ROUTES"]

NodeIdParam = Annotated[str, PathParameter(name="node_id")]  # not a node's id: 404
Raw = Annotated[str | None, QueryParameter(max_length=20)]


async def _accepted(
    request: Request[Any, Any, Any],
    runtime: Daemon,
    ctx: Context,
    command: Callable[[WriteTx], NodeAccepted],
) -> Response[NodeAccepted]:
    """Run a node mutation (it enqueues its job) under Idempotency-Key: 202 {job_id, node_id}."""
    done = await run_write(request, runtime, ctx, command, NodeAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


@get("/api/nodes", operation_id="listNodes", tags=["nodes"])
async def nodes(
    runtime: NamedDependency[Daemon],
    status: Raw = None,
    provider: Raw = None,
    before: Raw = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> NodePage:
    query = NodeQuery(
        status=query_choice("status", status, STATUSES),
        provider=query_choice("provider", provider, ("ssh", "docker")),
        before=query_int("before", before, 1, 2**62),
        limit=limit,
    )
    return await runtime.db.read_cached(("listNodes", query), lambda conn: list_nodes(conn, query))


@post("/api/nodes", operation_id="registerNode", status_code=202, tags=["nodes"])
async def register_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    data: Annotated[RegisterNodeRequest, Body()],
) -> Response[NodeAccepted]:
    command = register_command(data, runtime.vault, runtime.providers, ctx.meta())
    return await _accepted(request, runtime, ctx, command)


@get("/api/nodes/{node_id:str}", operation_id="getNode", tags=["nodes"])
async def node(runtime: NamedDependency[Daemon], node_id: NodeIdParam) -> NodeView:
    return await runtime.db.read(lambda conn: get_node(conn, node_id))


@delete(
    "/api/nodes/{node_id:str}", operation_id="decommissionNode", status_code=202, tags=["nodes"]
)
async def decommission_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
    confirm: Annotated[str | None, QueryParameter(max_length=63)] = None,
) -> Response[NodeAccepted]:
    command = decommission_command(node_id, confirm, ctx.meta())
    return await _accepted(request, runtime, ctx, command)


@post("/api/nodes/{node_id:str}/check", operation_id="checkNode", status_code=202, tags=["nodes"])
async def check_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    command = check_command(node_id, ctx.meta())
    return await _accepted(request, runtime, ctx, command)


@post(
    "/api/nodes/{node_id:str}/host-key/repin",
    operation_id="repinNodeHostKey",
    status_code=202,
    tags=["nodes"],
)
async def repin_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
    data: Annotated[RepinRequest | None, Body()] = None,
) -> Response[NodeAccepted]:
    command = repin_command(node_id, data, ctx.meta())
    return await _accepted(request, runtime, ctx, command)


@post(
    "/api/nodes/{node_id:str}/provision",
    operation_id="provisionNode",
    status_code=202,
    tags=["nodes"],
)
async def provision_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    command = provision_command(node_id, ctx.meta())
    return await _accepted(request, runtime, ctx, command)


@post("/api/nodes/{node_id:str}/start", operation_id="startNode", status_code=202, tags=["nodes"])
async def start_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    return await _accepted(request, runtime, ctx, start_command(node_id, ctx.meta()))


@post("/api/nodes/{node_id:str}/stop", operation_id="stopNode", status_code=202, tags=["nodes"])
async def stop_node(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    return await _accepted(request, runtime, ctx, stop_command(node_id, ctx.meta()))


@get("/api/nodes/{node_id:str}/facts", operation_id="getNodeFacts", tags=["nodes"])
async def facts_of_node(runtime: NamedDependency[Daemon], node_id: NodeIdParam) -> NodeFacts:
    now = format_ts(runtime.clock.now())
    return await node_facts(runtime.db, runtime.vault, node_id, now)


NODE_ROUTES = [
    nodes,
    register_node,
    node,
    decommission_node,
    check_node,
    repin_node,
    provision_node,
    start_node,
    stop_node,
    facts_of_node,
]
