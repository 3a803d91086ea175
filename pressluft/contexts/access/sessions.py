"""Dashboard login sessions: log in, log out, expire.

A session secret is 32 random bytes (URL-safe base64) sent as the cookie
`session_token`; only its sha256 is stored. Logging in revokes the session the
request came with (no fixation). Attempts are limited in memory, counted before
the password is checked: per client address (IPv6 per /64) the configured number
a minute, per account 5x that (one noisy address cannot lock the owner out; a
distributed attack is still slowed); and only so many password checks wait at
once. Refused-by-limit attempts are logged, not appended to the log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pressluft.acting import Context
from pressluft.clock import Clock, format_ts
from pressluft.contexts.access.events import (
    LoginFailed,
    SessionExpired,
    SessionRevoked,
    SessionStarted,
)
from pressluft.contexts.access.passwords import PasswordHasher
from pressluft.contexts.access.principals import UserView, principal_for_session, secret_hash
from pressluft.contexts.access.ratelimit import SlidingWindow, client_key
from pressluft.contexts.access.users import find_user
from pressluft.db import Database, WriteTx
from pressluft.errors import RateLimited, Unauthorized
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import new_id
from pressluft.logs import get_logger
from pressluft.vault import Vault, VaultError

__all__ = ["LoginLimits", "LoginResult", "expire_sessions", "log_in", "log_out"]

log = get_logger("pressluft.auth")
SWEEPER_ACTOR = "system:session-sweeper"


class LoginLimits:
    """The login rate limits of one daemon."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.by_address = SlidingWindow(per_minute, 60.0, clock)
        self.by_account = SlidingWindow(per_minute * 5, 60.0, clock)


@dataclass(frozen=True)
class LoginResult:
    token: str
    user: UserView
    expires_at: str


async def log_in(
    db: Database,
    vault: Vault,
    hasher: PasswordHasher,
    limits: LoginLimits,
    *,
    email: str,
    password: str,
    client_address: str | None,
    presented_token: str | None,
    ttl_seconds: int,
    ctx: Context,
) -> LoginResult:
    email = email.strip().lower()
    address_key = client_key(client_address)
    for window, key, what in (
        (limits.by_address, address_key, "this address"),
        (limits.by_account, email, "this account"),
    ):
        wait = window.retry_after(key)
        if wait is not None:
            log.warning("login refused by rate limit", extra={"limit": what})
            raise RateLimited(f"too many login attempts from {what}", retry_after=wait)
    if hasher.pending >= hasher.max_pending:
        raise RateLimited("too many logins in progress", retry_after=1)
    # Count the attempt before the slow verification, so concurrent guesses
    # cannot all slip through the check above.
    limits.by_address.hit(address_key)
    limits.by_account.hit(email)

    found = await db.read(lambda conn: find_user(conn, email))
    encoded: str | None = None
    if found is not None:
        try:
            encoded = (await db.read(lambda conn: vault.open(conn, found[1]))).decode()
        except VaultError:
            log.error("a password could not be opened", extra={"user_id": found[0].id})
    ok = await hasher.verify(encoded, password)
    if found is None or not ok or not found[2]:
        reason: Literal["unknown_user", "bad_password", "inactive_user"] = (
            "unknown_user" if found is None else "bad_password" if not ok else "inactive_user"
        )
        user_id = found[0].id if found else None
        event = LoginFailed(
            email=email, reason=reason, client_address=client_address, user_id=user_id
        )
        stream = f"user:{user_id}" if user_id else "auth"
        await db.write(lambda tx: append(tx, stream, None, [event], ctx.meta()))
        raise Unauthorized("invalid email or password")

    user = found[0]
    token = secrets.token_urlsafe(32)

    def command(tx: WriteTx) -> str:
        if presented_token:
            old = principal_for_session(tx.conn, presented_token, tx.now_ts)
            if old is not None and old.session_id:
                append(
                    tx,
                    f"session:{old.session_id}",
                    None,
                    [SessionRevoked(session_id=old.session_id, reason="rotated")],
                    Meta(actor=f"user:{user.id}", correlation_id=ctx.correlation_id),
                )
        session_id = new_id()
        expires_at = format_ts(tx.now + timedelta(seconds=ttl_seconds))
        started = SessionStarted(
            session_id=session_id,
            user_id=user.id,
            token_hash=secret_hash(token),
            expires_at=expires_at,
            client_address=client_address,
        )
        meta = Meta(actor=f"user:{user.id}", correlation_id=ctx.correlation_id)
        append(tx, f"session:{session_id}", NO_STREAM, [started], meta)
        return expires_at

    expires_at = await db.write(command)
    return LoginResult(token=token, user=user, expires_at=expires_at)


async def log_out(db: Database, session_id: str, ctx: Context) -> None:
    def command(tx: WriteTx) -> None:
        ended = tx.conn.execute(
            "SELECT ended_at FROM auth_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if ended is None or ended[0] is not None:
            return
        event = SessionRevoked(session_id=session_id, reason="logout")
        append(tx, f"session:{session_id}", None, [event], ctx.meta())

    await db.write(command)


async def expire_sessions(db: Database) -> int:
    """Append `auth.session_expired` for every open session past its expiry."""

    def command(tx: WriteTx) -> int:
        due = [
            r[0]
            for r in tx.conn.execute(
                "SELECT id FROM auth_sessions WHERE ended_at IS NULL AND expires_at <= ?",
                (tx.now_ts,),
            )
        ]
        for session_id in due:
            append(
                tx,
                f"session:{session_id}",
                None,
                [SessionExpired(session_id=session_id)],
                Meta(actor=SWEEPER_ACTOR),
            )
        return len(due)

    return await db.write(command)
