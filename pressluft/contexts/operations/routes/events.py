"""`/api/events`: the event log, paged, and live as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from pressluft.api.daemon import Daemon
from pressluft.api.streams import CredentialWatch, resume_point
from pressluft.contexts.operations.feed import EventPage, follow_events, list_events

__all__ = ["EVENT_ROUTES"]

StreamFilter = Annotated[str | None, QueryParameter(name="stream", min_length=1, max_length=200)]
TypeFilter = Annotated[str | None, QueryParameter(name="type", min_length=1, max_length=100)]
After = Annotated[int, QueryParameter(name="after", ge=0, le=2**62)]


@get("/api/events", operation_id="listEvents", tags=["events"])
async def events_page(
    runtime: NamedDependency[Daemon],
    stream: StreamFilter = None,
    type_: TypeFilter = None,
    after: After = 0,
    limit: Annotated[int, QueryParameter(name="limit", ge=1, le=1000)] = 100,
) -> EventPage:
    return await list_events(runtime.db, after=after, limit=limit, stream=stream, type_=type_)


@get("/api/events/stream", operation_id="streamEvents", tags=["events"])
async def events_stream(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    stream: StreamFilter = None,
    type_: TypeFilter = None,
    after: After = 0,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    start = resume_point(after, last_event_id)
    watch = CredentialWatch(request, runtime)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, retry=2000, comment="pressluft event stream")
        async for item in follow_events(
            runtime.db,
            runtime.notifier,
            runtime.stopping,
            after=start,
            stream=stream,
            type_=type_,
            keepalive=runtime.config.sse_keepalive_seconds,
        ):
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
