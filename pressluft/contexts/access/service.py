"""The access service routes and pages call: log in and out, API tokens.

It owns the password hasher (argon2id off the loop's CPU) and the login rate
limits, and the session sweeper that records expired sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pressluft.acting import Context
from pressluft.clock import Clock, format_ts
from pressluft.config import Config
from pressluft.contexts.access.passwords import PasswordHasher
from pressluft.contexts.access.principals import (
    Principal,
    Scope,
    principal_for_session,
    principal_for_token,
    secret_hash,
)
from pressluft.contexts.access.sessions import (
    LoginLimits,
    LoginResult,
    expire_sessions,
    log_in,
    log_out,
)
from pressluft.contexts.access.tokens import (
    TokenCreatedView,
    TokenCreateRequest,
    TokenView,
    create_token_command,
    get_token,
    list_tokens,
    revoke_token_command,
)
from pressluft.contexts.access.users import count_users
from pressluft.db import Database
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer
from pressluft.logs import get_logger
from pressluft.supervisor import Service
from pressluft.vault import Vault

__all__ = ["SESSION_SWEEP_SECONDS", "Access"]

log = get_logger("pressluft.access")

SESSION_SWEEP_SECONDS = 60.0


class Access:
    """Sessions and tokens, as requests use them."""

    def __init__(
        self,
        db: Database,
        writer: Writer,
        vault: Callable[[], Vault],
        clock: Clock,
        config: Config,
    ) -> None:
        self._db = db
        self._writer = writer
        self._vault = vault
        self._clock = clock
        self.session_ttl_seconds = config.session_ttl_seconds
        #: Session cookies are `Secure` when the daemon serves TLS itself.
        self.secure_cookies = config.tls
        self.hasher = PasswordHasher()
        self.limits = LoginLimits(config.login_attempts_per_minute, clock)

    async def has_users(self) -> bool:
        """Whether anyone can log in yet (the login page says how to create the first)."""
        return await self._db.read(count_users) > 0

    async def principal(self, kind: str, secret: str) -> Principal | None:
        """The principal a credential (`token` or `session`, its secret) stands for
        right now; None: unknown, expired, ended.

        Looked up once per change of the database (`Database.read_cached`, keyed by
        the secret's hash): revoking a token, ending a session, deactivating a user or
        changing a password is a commit — by this daemon or the CLI beside it — so
        the next request looks the credential up again. The lookup's one dependency
        on time, the credential's expiry, is checked here on every request.
        """
        clock = self._clock
        lookup = principal_for_token if kind == "token" else principal_for_session
        principal = await self._db.read_cached(
            ("principal", kind, secret_hash(secret)),
            lambda conn: lookup(conn, secret, format_ts(clock.now())),
        )
        if principal is None or principal.expires_at is None:
            return principal
        if principal.expires_at <= format_ts(clock.now()):
            return None  # expired since it was looked up (the lookup compares the same way)
        return principal

    def _now(self) -> str:
        return format_ts(self._clock.now())

    async def log_in(
        self,
        email: str,
        password: str,
        *,
        client_address: str | None,
        presented_token: str | None,
        ctx: Context,
    ) -> LoginResult:
        return await log_in(
            self._db,
            self._vault(),
            self.hasher,
            self.limits,
            email=email,
            password=password,
            client_address=client_address,
            presented_token=presented_token,
            ttl_seconds=self.session_ttl_seconds,
            ctx=ctx,
        )

    async def log_out(self, session_id: str, ctx: Context) -> None:
        await log_out(self._db, session_id, ctx)

    async def tokens(self, status: str | None) -> list[TokenView]:
        now = self._now()
        return await self._db.read(lambda conn: list_tokens(conn, now, status))

    async def token(self, token_id: str) -> TokenView:
        now = self._now()
        return await self._db.read(lambda conn: get_token(conn, token_id, now))

    async def create_token(
        self,
        request: TokenCreateRequest,
        grantor_scopes: list[Scope],
        ctx: Context,
        retry: Retry | None,
    ) -> Answered[TokenCreatedView]:
        command = create_token_command(request, grantor_scopes, ctx.meta())
        return await self._writer.run(command, TokenCreatedView, 201, retry)

    async def revoke_token(
        self, token_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[TokenView]:
        return await self._writer.run(
            revoke_token_command(token_id, ctx.meta()), TokenView, 200, retry
        )

    def sweeper(self) -> Service:
        """Every minute: record expired sessions as `auth.session_expired`."""

        async def sweep(stopping: asyncio.Event) -> None:
            while not stopping.is_set():
                ended = await expire_sessions(self._db)
                if ended:
                    log.info("expired %d session(s)", ended)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), SESSION_SWEEP_SECONDS)

        return Service("session-sweeper", sweep)

    def close(self) -> None:
        self.hasher.close()
