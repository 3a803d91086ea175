"""`/api/events`: the event log, paged, and live as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from pressluft.contexts.operations.feed import EventPage
from pressluft.contexts.operations.service import Operations
from pressluft.http.streams import CredentialWatch, resume_point

__all__ = ["EVENT_ROUTES"]

StreamFilter = Annotated[str | None, QueryParameter(name="stream", min_length=1, max_length=200)]
TypeFilter = Annotated[str | None, QueryParameter(name="type", min_length=1, max_length=100)]
After = Annotated[int, QueryParameter(name="after", ge=0, le=2**62)]


@get("/api/events", operation_id="listEvents", tags=["events"])
async def events_page(
    operations: NamedDependency[Operations],
    stream: StreamFilter = None,
    type_: TypeFilter = None,
    after: After = 0,
    limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 100,
) -> EventPage:
    return await operations.events(after=after, limit=limit, stream=stream, type_=type_)


@get("/api/events/stream", operation_id="streamEvents", tags=["events"])
async def events_stream(
    operations: NamedDependency[Operations],
    watch: NamedDependency[CredentialWatch],
    stream: StreamFilter = None,
    type_: TypeFilter = None,
    after: After = 0,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    start = resume_point(after, last_event_id)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, retry=2000, comment="pressluft event stream")
        async for item in operations.follow_events(after=start, stream=stream, type_=type_):
            if await watch.ended():
                yield ServerSentEventMessage(data=None, comment="credentials ended")
                return
            if item is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            else:
                yield ServerSentEventMessage(
                    id=str(item.seq), data=msgspec.json.encode(item).decode()
                )

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store"})


EVENT_ROUTES = [events_page, events_stream]
