"""The access capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.access.events import (
    LoginFailed,
    SessionExpired,
    SessionRevoked,
    SessionStarted,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserPasswordChanged,
)
from pressluft.contexts.access.pages import PAGES
from pressluft.contexts.access.projector import (
    SESSIONS_PROJECTOR,
    TOKENS_PROJECTOR,
    USERS_PROJECTOR,
)
from pressluft.contexts.access.routes import ACCESS_ROUTES
from pressluft.contexts.access.service import Access
from pressluft.contexts.access.token_routes import TOKEN_ROUTES
from pressluft.feature import Feature, Kernel, Parts

__all__ = ["FEATURE"]


def _assemble(kernel: Kernel) -> Parts:
    access = Access(kernel.db, kernel.writer, kernel.vault, kernel.clock, kernel.config)
    return Parts(services={"access": access}, background=[access.sweeper()], closers=[access.close])


FEATURE = Feature(
    name="access",
    events=(
        UserCreated,
        UserPasswordChanged,
        SessionStarted,
        SessionRevoked,
        SessionExpired,
        LoginFailed,
        TokenCreated,
        TokenRevoked,
    ),
    # Users before the sessions and tokens that point at them.
    projectors=(USERS_PROJECTOR, SESSIONS_PROJECTOR, TOKENS_PROJECTOR),
    routes=(*ACCESS_ROUTES, *TOKEN_ROUTES),
    pages=tuple(PAGES),
    templates=Path(str(resources.files("pressluft.contexts.access") / "templates")),
    assemble=_assemble,
)
