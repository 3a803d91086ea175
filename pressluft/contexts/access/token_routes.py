"""`/api/tokens`: API tokens for clients and automation agents."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.api.daemon import Daemon
from pressluft.api.idempotency import replay_headers, run_write
from pressluft.api.params import query_choice
from pressluft.clock import format_ts
from pressluft.contexts.access.principals import Principal
from pressluft.contexts.access.routes import NO_STORE
from pressluft.contexts.access.tokens import (
    TokenCreatedView,
    TokenCreateRequest,
    TokenView,
    create_token_command,
    get_token,
    list_tokens,
    revoke_token_command,
)
from pressluft.errors import Unauthorized

__all__ = ["TOKEN_ROUTES"]

import msgspec


class TokenList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TokenView]


def _now(runtime: Daemon) -> str:
    return format_ts(runtime.clock.now())


@get("/api/tokens", operation_id="listTokens", tags=["access"])
async def tokens(
    runtime: NamedDependency[Daemon],
    status: Annotated[str | None, QueryParameter(name="status", max_length=20)] = None,
) -> TokenList:
    status = query_choice("status", status, ("active", "revoked", "expired"))
    now = _now(runtime)
    return TokenList(items=await runtime.db.read(lambda conn: list_tokens(conn, now, status)))


@post("/api/tokens", operation_id="createToken", status_code=201, tags=["access"])
async def create_token(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    principal: NamedDependency[Principal],
    data: Annotated[TokenCreateRequest, Body()],
) -> Response[TokenCreatedView]:
    command = create_token_command(data, principal.scopes, ctx.meta())
    done = await run_write(request, runtime, ctx, command, TokenCreatedView, 201)
    # The secret, once (and again only to a retry with the same Idempotency-Key).
    return Response(done.value, status_code=201, headers={**NO_STORE, **replay_headers(done)})


@get("/api/tokens/current", operation_id="getCurrentToken", tags=["access"])
async def current_token(
    runtime: NamedDependency[Daemon], principal: NamedDependency[Principal]
) -> TokenView:
    if principal.token is None:
        raise Unauthorized("this request carries no API token")
    token_id = principal.token.id
    now = _now(runtime)
    return await runtime.db.read(lambda conn: get_token(conn, token_id, now))


@delete("/api/tokens/{token_id:str}", operation_id="revokeToken", status_code=200, tags=["access"])
async def revoke_token(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    token_id: Annotated[str, PathParameter()],  # not a token's id: 404
) -> Response[TokenView]:
    command = revoke_token_command(token_id, ctx.meta())
    done = await run_write(request, runtime, ctx, command, TokenView, 200)
    return Response(done.value, headers=replay_headers(done))


TOKEN_ROUTES = [tokens, create_token, current_token, revoke_token]
