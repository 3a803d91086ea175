"""`/api/tokens`: API tokens for clients and automation agents."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.contexts.access.principals import Principal
from pressluft.contexts.access.routes import NO_STORE
from pressluft.contexts.access.service import Access
from pressluft.contexts.access.tokens import TokenCreatedView, TokenCreateRequest, TokenView
from pressluft.errors import Unauthorized
from pressluft.http.params import query_choice
from pressluft.http.writes import answer, retry_of

__all__ = ["TOKEN_ROUTES"]

import msgspec


class TokenList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[TokenView]


@get("/api/tokens", operation_id="listTokens", tags=["access"])
async def tokens(
    access: NamedDependency[Access],
    status: Annotated[str | None, QueryParameter(name="status", max_length=20)] = None,
) -> TokenList:
    status = query_choice("status", status, ("active", "revoked", "expired"))
    return TokenList(items=await access.tokens(status))


@post("/api/tokens", operation_id="createToken", status_code=201, tags=["access"])
async def create_token(
    request: Request[Any, Any, Any],
    access: NamedDependency[Access],
    ctx: NamedDependency[Context],
    principal: NamedDependency[Principal],
    data: Annotated[TokenCreateRequest, Body()],
) -> Response[TokenCreatedView]:
    done = await access.create_token(data, principal.scopes, ctx, await retry_of(request, ctx))
    # The secret, once (and again only to a retry with the same Idempotency-Key).
    return answer(done, 201, NO_STORE)


@get("/api/tokens/current", operation_id="getCurrentToken", tags=["access"])
async def current_token(
    access: NamedDependency[Access], principal: NamedDependency[Principal]
) -> TokenView:
    if principal.token is None:
        raise Unauthorized("this request carries no API token")
    return await access.token(principal.token.id)


@delete("/api/tokens/{token_id:str}", operation_id="revokeToken", status_code=200, tags=["access"])
async def revoke_token(
    request: Request[Any, Any, Any],
    access: NamedDependency[Access],
    ctx: NamedDependency[Context],
    token_id: Annotated[str, PathParameter()],  # not a token's id: 404
) -> Response[TokenView]:
    return answer(await access.revoke_token(token_id, ctx, await retry_of(request, ctx)), 200)


TOKEN_ROUTES = [tokens, create_token, current_token, revoke_token]
