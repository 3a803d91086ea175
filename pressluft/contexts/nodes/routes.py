"""`/api/nodes`: register, list, check, re-pin, provision, start/stop (lab nodes)
and decommission nodes; their facts."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.contexts.nodes.commands import NodeAccepted, RegisterNodeRequest, RepinRequest
from pressluft.contexts.nodes.service import Nodes
from pressluft.contexts.nodes.views import STATUSES, NodeFacts, NodePage, NodeQuery, NodeView
from pressluft.http.params import query_choice, query_int
from pressluft.http.writes import answer, retry_of

__all__ = ["NODE_ROUTES"]

NodeIdParam = Annotated[str, PathParameter(name="node_id")]  # not a node's id: 404
Raw = Annotated[str | None, QueryParameter(max_length=20)]


@get("/api/nodes", operation_id="listNodes", tags=["nodes"])
async def nodes(
    nodes: NamedDependency[Nodes],
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
    return await nodes.list(query)


@post("/api/nodes", operation_id="registerNode", status_code=202, tags=["nodes"])
async def register_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    data: Annotated[RegisterNodeRequest, Body()],
) -> Response[NodeAccepted]:
    return answer(await nodes.register(data, ctx, await retry_of(request, ctx)))


@get("/api/nodes/{node_id:str}", operation_id="getNode", tags=["nodes"])
async def node(nodes: NamedDependency[Nodes], node_id: NodeIdParam) -> NodeView:
    return await nodes.get(node_id)


@delete(
    "/api/nodes/{node_id:str}", operation_id="decommissionNode", status_code=202, tags=["nodes"]
)
async def decommission_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
    confirm: Annotated[str | None, QueryParameter(max_length=63)] = None,
) -> Response[NodeAccepted]:
    return answer(await nodes.decommission(node_id, confirm, ctx, await retry_of(request, ctx)))


@post("/api/nodes/{node_id:str}/check", operation_id="checkNode", status_code=202, tags=["nodes"])
async def check_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    return answer(await nodes.check(node_id, ctx, await retry_of(request, ctx)))


@post(
    "/api/nodes/{node_id:str}/host-key/repin",
    operation_id="repinNodeHostKey",
    status_code=202,
    tags=["nodes"],
)
async def repin_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
    data: Annotated[RepinRequest | None, Body()] = None,
) -> Response[NodeAccepted]:
    return answer(await nodes.repin(node_id, data, ctx, await retry_of(request, ctx)))


@post(
    "/api/nodes/{node_id:str}/provision",
    operation_id="provisionNode",
    status_code=202,
    tags=["nodes"],
)
async def provision_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    return answer(await nodes.provision(node_id, ctx, await retry_of(request, ctx)))


@post("/api/nodes/{node_id:str}/start", operation_id="startNode", status_code=202, tags=["nodes"])
async def start_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    return answer(await nodes.start(node_id, ctx, await retry_of(request, ctx)))


@post("/api/nodes/{node_id:str}/stop", operation_id="stopNode", status_code=202, tags=["nodes"])
async def stop_node(
    request: Request[Any, Any, Any],
    nodes: NamedDependency[Nodes],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[NodeAccepted]:
    return answer(await nodes.stop(node_id, ctx, await retry_of(request, ctx)))


@get("/api/nodes/{node_id:str}/facts", operation_id="getNodeFacts", tags=["nodes"])
async def facts_of_node(nodes: NamedDependency[Nodes], node_id: NodeIdParam) -> NodeFacts:
    return await nodes.facts(node_id)


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
