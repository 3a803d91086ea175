"""Who is acting, and on behalf of which request: carried into every event's meta."""

from __future__ import annotations

import msgspec

from pressluft.events import Meta

__all__ = ["ANONYMOUS_ACTOR", "CLI_ACTOR", "Context"]

#: Requests without credentials (only login and health accept them).
ANONYMOUS_ACTOR = "anonymous"
#: Commands run by `pressluft …` on the machine itself (whoever holds the data dir).
CLI_ACTOR = "local:cli"


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """The accountable actor and request identifiers of one command."""

    actor: str
    correlation_id: str | None = None
    idempotency_key: str | None = None

    def meta(self, causation_id: str | None = None) -> Meta:
        return Meta(
            actor=self.actor,
            correlation_id=self.correlation_id,
            causation_id=causation_id,
            idempotency_key=self.idempotency_key,
        )
