"""`/api/login`, `/api/logout`, `/api/me`: dashboard sessions and introspection."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import Body

from pressluft.acting import Context
from pressluft.contexts.access.principals import SESSION_COOKIE, Principal, PrincipalView, UserView
from pressluft.contexts.access.service import Access

__all__ = ["ACCESS_ROUTES", "NO_STORE"]

#: Responses that set or carry credentials are never cached.
NO_STORE = {"Cache-Control": "no-store"}


class LoginRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class LoginResponse(msgspec.Struct, frozen=True, kw_only=True):
    success: bool
    user: UserView
    expires_at: str


class Success(msgspec.Struct, frozen=True):
    success: bool = True


def _cookie(access: Access, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=access.secure_cookies,
    )


@post("/api/login", operation_id="login", status_code=200, tags=["access"])
async def login(
    request: Request[Any, Any, Any],
    access: NamedDependency[Access],
    ctx: NamedDependency[Context],
    data: Annotated[LoginRequest, Body()],
) -> Response[LoginResponse]:
    result = await access.log_in(
        data.email,
        data.password,
        client_address=request.client.host if request.client else None,
        presented_token=request.cookies.get(SESSION_COOKIE),
        ctx=ctx,
    )
    return Response(
        LoginResponse(success=True, user=result.user, expires_at=result.expires_at),
        cookies=[_cookie(access, result.token, access.session_ttl_seconds)],
        headers=NO_STORE,
    )


@post("/api/logout", operation_id="logout", status_code=200, tags=["access"])
async def logout(
    access: NamedDependency[Access],
    ctx: NamedDependency[Context],
    principal: NamedDependency[Principal],
) -> Response[Success]:
    if principal.session_id is not None:
        await access.log_out(principal.session_id, ctx)
    return Response(Success(), cookies=[_cookie(access, "", 0)], headers=NO_STORE)


@get("/api/me", operation_id="getMe", tags=["access"])
async def me(principal: NamedDependency[Principal]) -> PrincipalView:
    return principal.view()


ACCESS_ROUTES = [login, logout, me]
