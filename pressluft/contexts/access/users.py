"""Operator accounts: create, change password, look up.

Commands here are plain `command(tx)` builders, so the daemon (`Database.write`)
and the CLI (`pressluft admin …`, writing directly) run the very same code. The
argon2id hash is sealed in the vault; the event holds only its reference.
Changing a password ends that user's open sessions and (unless told otherwise)
revokes the API tokens the account minted, transitively.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

import msgspec

from pressluft.contexts.access.events import (
    SessionRevoked,
    TokenRevoked,
    UserCreated,
    UserPasswordChanged,
)
from pressluft.contexts.access.principals import UserView
from pressluft.db import WriteTx
from pressluft.errors import Conflict, NotFound, ValidationFailed
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import new_id
from pressluft.vault import Vault

__all__ = [
    "EMAIL_PATTERN",
    "PasswordReset",
    "change_password_command",
    "count_users",
    "create_user_command",
    "find_user",
    "valid_email",
]

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ROLES = ("admin", "viewer")


def valid_email(email: str) -> str:
    normal = email.strip().lower()
    if len(normal) > 254 or not EMAIL_PATTERN.match(normal):
        raise ValidationFailed(
            f"{email!r} is not an email address",
            details={"errors": [{"field": "email", "message": "not an email address"}]},
        )
    return normal


def count_users(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


def find_user(conn: sqlite3.Connection, email: str) -> tuple[UserView, str, bool] | None:
    """(user, password_ref, is_active) for an email, case-insensitively."""
    row = conn.execute(
        "SELECT id, email, display_name, role, created_at, password_ref, is_active FROM users"
        " WHERE email = ?",
        (email.strip().lower(),),
    ).fetchone()
    if row is None:
        return None
    user = UserView(id=row[0], email=row[1], display_name=row[2], role=row[3], created_at=row[4])
    return user, str(row[5]), bool(row[6])


def create_user_command(
    vault: Vault,
    email: str,
    password_hash: str,
    role: str,
    display_name: str | None,
    meta: Meta,
) -> Callable[[WriteTx], UserView]:
    email = valid_email(email)
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}")

    def command(tx: WriteTx) -> UserView:
        if find_user(tx.conn, email) is not None:
            raise Conflict(f"a user with email {email} already exists")
        user_id = new_id()
        ref = vault.seal(tx.conn, "password", password_hash.encode(), tx.now_ts)
        event = UserCreated(
            user_id=user_id,
            email=email,
            display_name=display_name or email.split("@")[0],
            role=role,  # type: ignore[arg-type]
            password_ref=ref,
        )
        append(tx, f"user:{user_id}", NO_STREAM, [event], meta)
        found = find_user(tx.conn, email)
        assert found is not None
        return found[0]

    return command


class PasswordReset(msgspec.Struct, frozen=True, kw_only=True):
    sessions_ended: int
    tokens_revoked: int


def _tokens_minted_by(conn: sqlite3.Connection, actor: str) -> list[str]:
    """Active tokens created by `actor`, and by those tokens, and so on."""
    found: list[str] = []
    creators = [actor]
    while creators:
        marks = ", ".join("?" * len(creators))
        rows = conn.execute(
            f"SELECT id FROM api_tokens WHERE created_by IN ({marks}) AND revoked_at IS NULL",
            creators,
        ).fetchall()
        new = [row[0] for row in rows if row[0] not in found]
        found.extend(new)
        creators = [f"token:{token_id}" for token_id in new]
    return found


def change_password_command(
    vault: Vault, email: str, password_hash: str, meta: Meta, *, revoke_tokens: bool = True
) -> Callable[[WriteTx], PasswordReset]:
    """Replace a user's password and end their sessions; by default also revoke the
    API tokens the account minted (and the tokens those minted) — after a takeover,
    an attacker's tokens must not outlive the reset."""
    email = email.strip().lower()

    def command(tx: WriteTx) -> PasswordReset:
        found = find_user(tx.conn, email)
        if found is None:
            raise NotFound(f"no user with email {email}")
        user, old_ref, _ = found
        ref = vault.seal(tx.conn, "password", password_hash.encode(), tx.now_ts)
        vault.destroy(tx.conn, old_ref)
        append(
            tx,
            f"user:{user.id}",
            None,
            [UserPasswordChanged(user_id=user.id, password_ref=ref)],
            meta,
        )
        open_sessions = [
            r[0]
            for r in tx.conn.execute(
                "SELECT id FROM auth_sessions WHERE user_id = ? AND ended_at IS NULL", (user.id,)
            )
        ]
        for session_id in open_sessions:
            append(
                tx,
                f"session:{session_id}",
                None,
                [SessionRevoked(session_id=session_id, reason="password_changed")],
                meta,
            )
        tokens = _tokens_minted_by(tx.conn, f"user:{user.id}") if revoke_tokens else []
        for token_id in tokens:
            append(tx, f"token:{token_id}", None, [TokenRevoked(token_id=token_id)], meta)
        return PasswordReset(sessions_ended=len(open_sessions), tokens_revoked=len(tokens))

    return command
