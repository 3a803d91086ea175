"""Who is calling, and what they may do: principals, scopes, credential lookup.

Scopes are ordered `read < write < admin`; holding one grants the lower ones. A
user's role grants scopes (`admin`: all, `viewer`: `read`). A session carries its
user's scopes; an API token carries its own. Secrets are looked up by their
sha256 only.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Literal

import msgspec

__all__ = [
    "SCOPES",
    "SESSION_COOKIE",
    "Principal",
    "PrincipalView",
    "TokenSummary",
    "UserView",
    "grants",
    "principal_for_session",
    "principal_for_token",
    "scopes_for_role",
    "secret_hash",
]

#: The dashboard session's cookie.
SESSION_COOKIE = "session_token"

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
_RANK = {scope: i for i, scope in enumerate(SCOPES)}


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def scopes_for_role(role: str) -> list[Scope]:
    return list(SCOPES) if role == "admin" else ["read"]


def grants(held: list[str], required: str) -> bool:
    """Whether scopes `held` include `required` (directly or through a higher one)."""
    need = _RANK[required]  # type: ignore[index]
    return any(_RANK.get(scope, -1) >= need for scope in held)  # type: ignore[call-overload]


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    display_name: str
    role: str
    created_at: str


class TokenSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str


class PrincipalView(msgspec.Struct, frozen=True, kw_only=True):
    """The caller as the API shows it (`GET /api/me`)."""

    kind: Literal["session", "token"]
    actor: str
    scopes: list[Scope]
    expires_at: str | None
    user: UserView | None
    token: TokenSummary | None


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The authenticated caller."""

    kind: Literal["session", "token"]
    actor: str
    scopes: list[Scope]
    expires_at: str | None
    user: UserView | None
    token: TokenSummary | None
    session_id: str | None = None

    def view(self) -> PrincipalView:
        return PrincipalView(
            kind=self.kind,
            actor=self.actor,
            scopes=self.scopes,
            expires_at=self.expires_at,
            user=self.user,
            token=self.token,
        )


_USER_COLUMNS = "u.id, u.email, u.display_name, u.role, u.created_at"


def _user(row: tuple[object, ...]) -> UserView:
    return UserView(
        id=str(row[0]),
        email=str(row[1]),
        display_name=str(row[2]),
        role=str(row[3]),
        created_at=str(row[4]),
    )


def principal_for_session(conn: sqlite3.Connection, token: str, now: str) -> Principal | None:
    row = conn.execute(
        f"SELECT s.id, s.expires_at, {_USER_COLUMNS} FROM auth_sessions s"
        " JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = ? AND s.ended_at IS NULL AND s.expires_at > ? AND u.is_active = 1",
        (secret_hash(token), now),
    ).fetchone()
    if row is None:
        return None
    user = _user(row[2:])
    return Principal(
        kind="session",
        actor=f"user:{user.id}",
        scopes=scopes_for_role(user.role),
        expires_at=str(row[1]),
        user=user,
        token=None,
        session_id=str(row[0]),
    )


def principal_for_token(conn: sqlite3.Connection, secret: str, now: str) -> Principal | None:
    row = conn.execute(
        "SELECT id, name, scopes, expires_at FROM api_tokens"
        " WHERE token_hash = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        (secret_hash(secret), now),
    ).fetchone()
    if row is None:
        return None
    return Principal(
        kind="token",
        actor=f"token:{row[0]}",
        scopes=msgspec.json.decode(row[2]),
        expires_at=row[3],
        user=None,
        token=TokenSummary(id=str(row[0]), name=str(row[1])),
    )
