"""What every long-lived response (Server-Sent Events) of a context shares.

`CredentialWatch`: a stream must not outlive its credential. It re-checks at
once when the daemon ended any credential (the auth epoch moved) and every
second anyway (the CLI may have ended one, in another process). How to
re-check is handed in (the access guard's credential lookup, by the app's face):
the kit knows no context.
`resume_point`: `after` or a `Last-Event-ID` header, strictly parsed.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from pressluft.clock import Clock
from pressluft.errors import BadRequest

__all__ = ["REVALIDATE_SECONDS", "CredentialWatch", "resume_point"]

#: How often a live stream re-checks that its credential is still valid.
REVALIDATE_SECONDS = 1.0

_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True)


def resume_point(after: int, last_event_id: str | None) -> int:
    if last_event_id is None:
        return after
    text = last_event_id.strip()
    if not _SEQ.fullmatch(text):
        raise BadRequest(
            "Last-Event-ID must be the seq of a message of this stream",
            details={
                "errors": [{"field": "Last-Event-ID", "message": "not a seq", "in": "header"}]
            },
        )
    return int(text)


class CredentialWatch:
    """Tells a stream when the credential it was opened with has ended.

    `still_valid` asks whether that credential still stands (None: the request
    presented none, so there is nothing to end); `epoch` moves whenever the
    daemon ends a session or token.
    """

    def __init__(
        self,
        still_valid: Callable[[], Awaitable[bool]] | None,
        epoch: Callable[[], int],
        clock: Clock,
    ) -> None:
        self._still_valid = still_valid
        self._epoch_of = epoch
        self._clock = clock
        self._checked_at = clock.monotonic()
        self._epoch = epoch()

    async def ended(self) -> bool:
        if self._still_valid is None:
            return False
        if (
            self._epoch == self._epoch_of()
            and self._clock.monotonic() - self._checked_at < REVALIDATE_SECONDS
        ):
            return False
        self._epoch = self._epoch_of()
        self._checked_at = self._clock.monotonic()
        return not await self._still_valid()
