"""API tokens for API clients and automation agents.

A token is `plt_` + 32 random bytes (URL-safe base64), returned once at
creation; only its sha256 and a short prefix are stored. A token never gets a
scope its creator lacks. Revoking is idempotent.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from pressluft.clock import format_ts, parse_rfc3339
from pressluft.contexts.access.events import TokenCreated, TokenRevoked
from pressluft.contexts.access.principals import SCOPES, Scope, grants, secret_hash
from pressluft.db import WriteTx
from pressluft.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.names import NAME_RULE, is_printable_name

__all__ = [
    "TokenCreateRequest",
    "TokenCreatedView",
    "TokenView",
    "create_token_command",
    "get_token",
    "list_tokens",
    "revoke_token_command",
]

TOKEN_PREFIX = "plt_"  # noqa: S105 - a public marker, not a secret


class TokenCreateRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"\S")]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=3)]
    expires_at: str | None = None


class TokenView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    scopes: list[Scope]
    prefix: str
    status: Literal["active", "revoked", "expired"]
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


class TokenCreatedView(TokenView, frozen=True, kw_only=True):
    token: str


_COLUMNS = "id, name, scopes, prefix, created_at, created_by, expires_at, revoked_at"


def _view(row: tuple[object, ...], now: str) -> TokenView:
    expires_at = row[6]
    revoked_at = row[7]
    status: Literal["active", "revoked", "expired"] = (
        "revoked"
        if revoked_at is not None
        else "expired"
        if expires_at is not None and str(expires_at) <= now
        else "active"
    )
    return TokenView(
        id=str(row[0]),
        name=str(row[1]),
        scopes=msgspec.json.decode(str(row[2])),
        prefix=str(row[3]),
        status=status,
        created_at=str(row[4]),
        created_by=str(row[5]),
        expires_at=None if expires_at is None else str(expires_at),
        revoked_at=None if revoked_at is None else str(revoked_at),
    )


def list_tokens(conn: sqlite3.Connection, now: str, status: str | None = None) -> list[TokenView]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM api_tokens ORDER BY created_at DESC, id"
    ).fetchall()
    views = [_view(row, now) for row in rows]
    return [v for v in views if status is None or v.status == status]


def get_token(conn: sqlite3.Connection, token_id: str, now: str) -> TokenView:
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise NotFound(f"no token {token_id}")
    return _view(row, now)


def _normal_expiry(expires_at: str | None, now: datetime) -> str | None:
    if expires_at is None:
        return None
    try:
        moment = parse_rfc3339(expires_at)
    except ValueError:
        raise BadRequest(
            "expires_at must be an RFC 3339 date-time with a time zone",
            details={"errors": [{"field": "expires_at", "message": "not a date-time"}]},
        ) from None
    if moment <= now:
        raise ValidationFailed(
            "expires_at must be in the future",
            details={"errors": [{"field": "expires_at", "message": "in the past"}]},
        )
    return format_ts(moment)


def create_token_command(
    request: TokenCreateRequest, creator_scopes: list[Scope], meta: Meta
) -> Callable[[WriteTx], TokenCreatedView]:
    if not is_printable_name(request.name):
        raise BadRequest(
            f"invalid request: name: {NAME_RULE}",
            details={"errors": [{"field": "name", "message": NAME_RULE, "in": "body"}]},
        )
    if len(set(request.scopes)) != len(request.scopes):
        raise BadRequest(
            "invalid request: scopes: each scope at most once",
            details={"errors": [{"field": "scopes", "message": "duplicate scope", "in": "body"}]},
        )
    scopes = [s for s in SCOPES if s in set(request.scopes)]  # canonical order
    beyond = [s for s in scopes if not grants(list(creator_scopes), s)]
    if beyond:
        raise Forbidden(
            f"a token cannot get scopes its creator lacks: {', '.join(beyond)}",
            details={"hint": "ask an admin to create this token"},
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)

    def command(tx: WriteTx) -> TokenCreatedView:
        token_id = new_id()
        event = TokenCreated(
            token_id=token_id,
            name=request.name,
            scopes=list(scopes),
            token_hash=secret_hash(secret),
            prefix=secret[: len(TOKEN_PREFIX) + 6],
            expires_at=_normal_expiry(request.expires_at, tx.now),
        )
        append(tx, f"token:{token_id}", NO_STREAM, [event], meta)
        view = get_token(tx.conn, token_id, tx.now_ts)
        return TokenCreatedView(**msgspec.structs.asdict(view), token=secret)

    return command


def revoke_token_command(token_id: str, meta: Meta) -> Callable[[WriteTx], TokenView]:
    if not is_uuid(token_id):
        raise NotFound(f"no token {token_id}")

    def command(tx: WriteTx) -> TokenView:
        view = get_token(tx.conn, token_id, tx.now_ts)
        if view.revoked_at is None:
            append(tx, f"token:{token_id}", None, [TokenRevoked(token_id=token_id)], meta)
            view = get_token(tx.conn, token_id, tx.now_ts)
        return view

    return command
