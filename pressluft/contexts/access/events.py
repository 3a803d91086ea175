"""Events of users (`user:<id>`), login sessions (`session:<id>`) and API tokens (`token:<id>`).

No event carries a secret: passwords are sealed in the vault (`password_ref`),
and session and token secrets appear only as their sha256 (`token_hash`).
"""

from __future__ import annotations

from typing import Literal

from pressluft.events.types.base import Event

__all__ = [
    "LoginFailed",
    "SessionExpired",
    "SessionRevoked",
    "SessionStarted",
    "TokenCreated",
    "TokenRevoked",
    "UserCreated",
    "UserPasswordChanged",
]

Role = Literal["admin", "viewer"]


class UserCreated(Event, frozen=True, tag="user.created"):
    user_id: str
    email: str
    display_name: str
    role: Role
    password_ref: str


class UserPasswordChanged(Event, frozen=True, tag="user.password_changed"):
    user_id: str
    password_ref: str


class SessionStarted(Event, frozen=True, tag="auth.session_started"):
    session_id: str
    user_id: str
    token_hash: str
    expires_at: str
    client_address: str | None = None


class SessionRevoked(Event, frozen=True, tag="auth.session_revoked"):
    session_id: str
    reason: Literal["logout", "rotated", "password_changed"]


class SessionExpired(Event, frozen=True, tag="auth.session_expired"):
    session_id: str


class LoginFailed(Event, frozen=True, tag="auth.login_failed"):
    """A login that was refused (never the password)."""

    email: str
    reason: Literal["unknown_user", "bad_password", "inactive_user"]
    client_address: str | None = None
    user_id: str | None = None


class TokenCreated(Event, frozen=True, tag="token.created"):
    token_id: str
    name: str
    scopes: list[str]
    token_hash: str
    prefix: str
    expires_at: str | None = None


class TokenRevoked(Event, frozen=True, tag="token.revoked"):
    token_id: str
