"""`/api/events`: the event log, paged, and live as Server-Sent Events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from pressluft.api.security import presented_credential, principal_of
from pressluft.errors import BadRequest
from pressluft.runtime import Runtime
from pressluft.services.events import EventPage, follow_events, list_events

__all__ = ["EVENT_ROUTES"]

_SEQ = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²".isdigit() is True)

StreamFilter = Annotated[str | None, QueryParameter(name="stream", min_length=1, max_length=200)]
TypeFilter = Annotated[str | None, QueryParameter(name="type", min_length=1, max_length=100)]
After = Annotated[int, QueryParameter(name="after", ge=0, le=2**62)]


@get("/api/events", operation_id="listEvents", tags=["events"])
async def events_page(
    runtime: NamedDependency[Runtime],
    stream: StreamFilter = None,
    type_: TypeFilter = None,
    after: After = 0,
    limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 100,
) -> EventPage:
    return await list_events(runtime.db, after=after, limit=limit, stream=stream, type_=type_)


def _resume_point(after: int, last_event_id: str | None) -> int:
    if last_event_id is None:
        return after
    text = last_event_id.strip()
    if not _SEQ.fullmatch(text):
        raise BadRequest(
            "Last-Event-ID must be the seq of an event",
            details={
                "errors": [{"field": "Last-Event-ID", "message": "not a seq", "in": "header"}]
            },
        )
    return int(text)


#: How often a live stream re-checks that its credential is still valid.
REVALIDATE_SECONDS = 1.0


@get("/api/events/stream", operation_id="streamEvents", tags=["events"])
async def events_stream(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Runtime],
    stream: StreamFilter = None,
    type_: TypeFilter = None,
    after: After = 0,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    start = _resume_point(after, last_event_id)
    credential = presented_credential(request)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, retry=2000, comment="pressluft event stream")
        checked_at = runtime.clock.monotonic()
        epoch = runtime.auth_epoch
        async for item in follow_events(
            runtime.db,
            runtime.notifier,
            runtime.stopping,
            after=start,
            stream=stream,
            type_=type_,
            keepalive=runtime.config.sse_keepalive_seconds,
        ):
            # A stream must not outlive its credential: re-check at once when the
            # daemon ended any credential, and every second anyway (the CLI may
            # have, in another process).
            if credential is not None and (
                epoch != runtime.auth_epoch
                or runtime.clock.monotonic() - checked_at >= REVALIDATE_SECONDS
            ):
                epoch = runtime.auth_epoch
                if await principal_of(runtime, credential) is None:
                    yield ServerSentEventMessage(data=None, comment="credentials ended")
                    return
                checked_at = runtime.clock.monotonic()
            if item is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            else:
                yield ServerSentEventMessage(
                    id=str(item.seq), data=msgspec.json.encode(item).decode()
                )

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store"})


EVENT_ROUTES = [events_page, events_stream]
