"""What every long-lived response (Server-Sent Events) shares.

`CredentialWatch`: a stream must not outlive its credential. It re-checks at
once when the daemon ended any credential (`auth_epoch` moved) and every
second anyway (the CLI may have ended one, in another process).
`resume_point`: `after` or a `Last-Event-ID` header, strictly parsed.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from pressluft.api.daemon import Daemon
from pressluft.api.security import presented_credential, principal_of
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
    """Tells a stream when the credential it was opened with has ended."""

    def __init__(self, request: Request[Any, Any, Any], runtime: Daemon) -> None:
        self._runtime = runtime
        self._credential = presented_credential(request)
        self._checked_at = runtime.clock.monotonic()
        self._epoch = runtime.auth_epoch

    async def ended(self) -> bool:
        runtime = self._runtime
        if self._credential is None:
            return False
        if (
            self._epoch == runtime.auth_epoch
            and runtime.clock.monotonic() - self._checked_at < REVALIDATE_SECONDS
        ):
            return False
        self._epoch = runtime.auth_epoch
        self._checked_at = runtime.clock.monotonic()
        return await principal_of(runtime, self._credential) is None
