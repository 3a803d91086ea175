"""Access control for every route, driven by the contract's security declarations.

`openapi/pressluft.yaml` declares, per operation, which credentials it accepts
and with which scope (`bearerAuth: [write]`, `sessionAuth: [read]`, or
`security: []` for public ones; the document's default is admin-only). At app
creation those declarations become a table, and one guard on every handler:

- API operations: refuse two `Authorization` headers (400: which one counts is
  not obvious, and a proxy may have added one), authenticate (bearer token or
  session cookie), 401 without
  valid credentials, 401 for credentials the operation does not accept, 403
  without the scope; cookie-authenticated unsafe requests need a same-origin
  `Origin` (or, lacking it, `Referer`) — CSRF;
- a handler whose operation the contract does not list is refused (fail closed);
- a handler without an operation passes only for GET and only when it is marked
  a dashboard page (`opt={"page": True}`, needs a session, else a redirect to
  `/login`) or public (`opt={"public": True}`: the login page; and `/static`).

The authenticated `Principal` is left in `scope["state"]["principal"]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from pressluft.api.contract import load_contract
from pressluft.contexts.access.principals import (
    SCOPES,
    SESSION_COOKIE,
    Principal,
    grants,
)
from pressluft.contexts.access.service import Access
from pressluft.errors import BadRequest, Forbidden, LoginRequired, Unauthorized

__all__ = [
    "SESSION_COOKIE",
    "Credential",
    "Requirement",
    "access_guard",
    "authenticate",
    "presented_credential",
    "principal_of",
    "requirements",
]

_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_SCHEMES = {"bearerAuth": "token", "sessionAuth": "session"}


@dataclass(frozen=True)
class Requirement:
    """What one operation accepts: None = that kind of credential is not accepted."""

    public: bool
    token_scope: str | None = None
    session_scope: str | None = None

    def scope_for(self, kind: str) -> str | None:
        return self.token_scope if kind == "token" else self.session_scope


def requirements(document: dict[str, Any] | None = None) -> dict[str, Requirement]:
    """operationId → Requirement, from the contract (the default applies when unset)."""
    document = document or load_contract()
    default = document.get("security", [])
    table: dict[str, Requirement] = {}
    for item in document.get("paths", {}).values():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            declared = op.get("security", default)
            if declared == []:
                table[op["operationId"]] = Requirement(public=True)
                continue
            scopes: dict[str, str] = {}
            for alternative in declared:
                for scheme, needed in alternative.items():
                    kind = _SCHEMES[scheme]
                    if len(needed) != 1 or needed[0] not in SCOPES:
                        raise ValueError(
                            f"{op['operationId']}: declare exactly one of the scopes {SCOPES}"
                        )
                    scopes[kind] = needed[0]
            table[op["operationId"]] = Requirement(
                public=False,
                token_scope=scopes.get("token"),
                session_scope=scopes.get("session"),
            )
    return table


Credential = tuple[str, str]  # ("token" | "session", secret)


def _one_authorization(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The request's one `Authorization` header; 400 if it has more than one."""
    headers = connection.headers.getall("authorization", [])
    if len(headers) > 1:
        raise BadRequest(
            "invalid request: Authorization: given more than once",
            details={
                "errors": [
                    {"field": "Authorization", "message": "given more than once", "in": "header"}
                ],
                "hint": "send one 'Authorization: Bearer <token>' header",
            },
        )
    return headers[0] if headers else None


def presented_credential(connection: ASGIConnection[Any, Any, Any, Any]) -> Credential | None:
    """The credential a request carries (a bearer token wins over a cookie)."""
    header = _one_authorization(connection)
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        secret = value.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized(
                "send the token as 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="pressluft"'},
            )
        return ("token", secret)
    cookie = connection.cookies.get(SESSION_COOKIE)
    return ("session", cookie) if cookie else None


def access_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    """The access service (its credential lookups) of the app serving `connection`."""
    access: Access = connection.app.state.access
    return access


async def principal_of(access: Access, credential: Credential) -> Principal | None:
    """The principal a credential stands for right now (None: unknown, expired, ended)."""
    return await access.principal(*credential)


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The principal of the request's credentials; None if it presents none.

    Raises Unauthorized for credentials that are present but not valid.
    """
    credential = presented_credential(connection)
    if credential is None:
        return None
    principal = await principal_of(access_of(connection), credential)
    if principal is not None:
        return principal
    if credential[0] == "token":
        raise Unauthorized(
            "the API token is unknown, expired or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="pressluft", error="invalid_token"'},
        )
    raise Unauthorized(
        "the session has expired or was ended; log in again",
        details={"hint": "POST /api/login"},
    )


def _same_origin(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    host = connection.headers.get("host", "")
    expected = f"{connection.scope.get('scheme', 'http')}://{host}".lower()
    origin = connection.headers.get("origin")
    if origin is not None:
        return origin.strip().lower() == expected
    referer = connection.headers.get("referer")
    if referer is not None:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == expected
    return False


async def _page_or_refuse(
    connection: ASGIConnection[Any, Any, Any, Any],
    handler: BaseRouteHandler,
    state: dict[str, Any],
) -> None:
    """A handler without an operation: only a dashboard page (GET, marked) may pass."""
    method = connection.scope.get("method", "GET")
    path = connection.scope["path"]
    if method != "GET":
        raise Forbidden(f"{method} {path} is not an operation of the contract; refused")
    if handler.opt.get("public") or path.startswith("/static/"):
        return
    if not handler.opt.get("page"):
        raise Forbidden(f"{path} is not an operation of the contract; refused")
    try:
        principal = await authenticate(connection)
    except Unauthorized:
        principal = None
    if principal is None or principal.kind != "session":
        raise LoginRequired(path)
    state["principal"] = principal


async def access_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The one guard on every route (installed app-wide)."""
    table: dict[str, Requirement] = connection.app.state.requirements
    operation = getattr(handler, "operation_id", None)
    state = connection.scope.setdefault("state", {})
    if not isinstance(operation, str):
        await _page_or_refuse(connection, handler, state)
        return
    requirement = table.get(operation)
    if requirement is None:
        raise Forbidden(f"operation {operation} is not in the contract; refused")
    if requirement.public:
        _one_authorization(connection)  # ignored here, but never ambiguous
        return
    principal = await authenticate(connection)
    if principal is None:
        raise Unauthorized(
            "authentication required: log in, or send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="pressluft"'},
        )
    needed = requirement.scope_for(principal.kind)
    if needed is None:
        accepted = "a dashboard session" if requirement.session_scope else "an API token"
        raise Unauthorized(f"this operation needs {accepted}")
    if not grants(list(principal.scopes), needed):
        raise Forbidden(
            f"this operation needs the '{needed}' scope",
            details={"required_scope": needed, "scopes": list(principal.scopes)},
        )
    unsafe = connection.scope["method"] not in _SAFE_METHODS  # type: ignore[typeddict-item]
    if principal.kind == "session" and unsafe and not _same_origin(connection):
        raise Forbidden(
            "cross-origin request refused (CSRF protection)",
            details={
                "hint": "cookie sessions are for the dashboard; API clients use a bearer token"
            },
        )
    state["principal"] = principal
