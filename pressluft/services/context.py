"""Who is acting, and on behalf of which request: carried into every event's meta."""

from __future__ import annotations

import msgspec

from pressluft.events import Meta

__all__ = ["CLI_ACTOR", "LOOPBACK_ACTOR", "Context"]

#: Until operator login exists (issue 3), requests reach the daemon only over loopback.
LOOPBACK_ACTOR = "local:loopback"
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
