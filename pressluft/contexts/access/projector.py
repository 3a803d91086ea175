"""Projectors of users, login sessions and API tokens."""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.contexts.access.events import (
    SessionExpired,
    SessionRevoked,
    SessionStarted,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserPasswordChanged,
)
from pressluft.events.projection import Envelope, Projector

__all__ = ["SESSIONS_PROJECTOR", "TOKENS_PROJECTOR", "USERS_PROJECTOR"]


def _user_created(conn: sqlite3.Connection, event: UserCreated, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO users (id, email, display_name, role, password_ref, created_at, updated_at,"
        " state_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.user_id,
            event.email,
            event.display_name,
            event.role,
            event.password_ref,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
        ),
    )


def _password_changed(conn: sqlite3.Connection, event: UserPasswordChanged, env: Envelope) -> None:
    conn.execute(
        "UPDATE users SET password_ref = ?, updated_at = ?, state_version = ? WHERE id = ?",
        (event.password_ref, env.recorded_at, env.stream_version, event.user_id),
    )


USERS_PROJECTOR = Projector(
    name="users",
    tables=("users",),
    handlers={UserCreated: _user_created, UserPasswordChanged: _password_changed},
)


def _session_started(conn: sqlite3.Connection, event: SessionStarted, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO auth_sessions (id, user_id, token_hash, client_address, created_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            event.session_id,
            event.user_id,
            event.token_hash,
            event.client_address,
            env.recorded_at,
            event.expires_at,
        ),
    )


def _end(conn: sqlite3.Connection, session_id: str, reason: str, at: str) -> None:
    conn.execute(
        "UPDATE auth_sessions SET ended_at = ?, ended_reason = ? WHERE id = ? AND ended_at IS NULL",
        (at, reason, session_id),
    )


def _session_revoked(conn: sqlite3.Connection, event: SessionRevoked, env: Envelope) -> None:
    _end(conn, event.session_id, event.reason, env.recorded_at)


def _session_expired(conn: sqlite3.Connection, event: SessionExpired, env: Envelope) -> None:
    _end(conn, event.session_id, "expired", env.recorded_at)


SESSIONS_PROJECTOR = Projector(
    name="sessions",
    tables=("auth_sessions",),
    handlers={
        SessionStarted: _session_started,
        SessionRevoked: _session_revoked,
        SessionExpired: _session_expired,
    },
)


def _token_created(conn: sqlite3.Connection, event: TokenCreated, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO api_tokens (id, name, token_hash, prefix, scopes, created_by, created_at,"
        " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.token_id,
            event.name,
            event.token_hash,
            event.prefix,
            msgspec.json.encode(event.scopes).decode(),
            env.actor,
            env.recorded_at,
            event.expires_at,
        ),
    )


def _token_revoked(conn: sqlite3.Connection, event: TokenRevoked, env: Envelope) -> None:
    conn.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (env.recorded_at, event.token_id),
    )


TOKENS_PROJECTOR = Projector(
    name="tokens",
    tables=("api_tokens",),
    handlers={TokenCreated: _token_created, TokenRevoked: _token_revoked},
)
