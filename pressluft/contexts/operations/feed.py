"""Queries over the event log: pages for the API and CLI, and live following.

Views of events (the API's pages and stream, the dashboard) hide what only the
daemon needs: the sha256 of session and token secrets (`token_hash`) and job
lease tokens (`lease_token`) read `"redacted"`. The log keeps them — the hash
chain covers the stored data, so `pressluft events verify` and replay are
unchanged — and `pressluft events tail`, run by whoever owns the data dir,
prints them as stored.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from pressluft.db import Database
from pressluft.events import StoredRow, head_seq, read_rows
from pressluft.events.notify import LogNotifier

__all__ = ["REDACTED_FIELDS", "EventOut", "EventPage", "follow_events", "list_events", "to_out"]

MAX_PAGE = 1000

#: Fields of event data that only the daemon needs (at any depth of the data).
REDACTED_FIELDS = frozenset({"token_hash", "lease_token"})
REDACTED = "redacted"


class EventOut(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the API shows it (data and meta as stored JSON)."""

    seq: int
    stream: str
    stream_version: int
    type: str
    schema_version: int
    data: msgspec.Raw
    meta: msgspec.Raw
    recorded_at: str
    prev_hash: str
    hash: str


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of events; continue with `after=next_after` while `has_more`."""

    items: list[EventOut]
    next_after: int
    has_more: bool


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if key in REDACTED_FIELDS and item is not None else _redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted(item) for item in value]
    return value


def _shown_data(data: str) -> bytes:
    if not any(f'"{name}"' in data for name in REDACTED_FIELDS):
        return data.encode()
    return msgspec.json.encode(_redacted(msgspec.json.decode(data)))


def to_out(row: StoredRow, *, redact: bool = True) -> EventOut:
    """The view of a stored event; `redact=False` only for the data dir's owner (CLI)."""
    return EventOut(
        seq=row.seq,
        stream=row.stream,
        stream_version=row.stream_version,
        type=row.type,
        schema_version=row.schema_version,
        data=msgspec.Raw(_shown_data(row.data) if redact else row.data.encode()),
        meta=msgspec.Raw(row.meta.encode()),
        recorded_at=row.recorded_at,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


async def list_events(
    db: Database,
    *,
    after: int = 0,
    limit: int = 100,
    stream: str | None = None,
    type_: str | None = None,
) -> EventPage:
    limit = max(1, min(limit, MAX_PAGE))

    def query(conn: sqlite3.Connection) -> EventPage:
        rows = read_rows(conn, after=after, limit=limit + 1, stream=stream, type_=type_)
        has_more = len(rows) > limit
        rows = rows[:limit]
        return EventPage(
            items=[to_out(r) for r in rows],
            next_after=rows[-1].seq if rows else after,
            has_more=has_more,
        )

    # Until the next commit, the same page (the log changes only by commits).
    return await db.read_cached(("listEvents", after, limit, stream, type_), query)


async def follow_events(
    db: Database,
    notifier: LogNotifier,
    stopping: asyncio.Event,
    *,
    after: int = 0,
    stream: str | None = None,
    type_: str | None = None,
    keepalive: float = 15.0,
    page: int = 500,
) -> AsyncIterator[EventOut | None]:
    """Every matching event after `after`, then new ones as they commit.

    Yields `None` when `keepalive` seconds pass without an event. Always reads
    from the database, so a slow consumer falls behind but never loses an event.
    """
    cursor = after
    while not stopping.is_set():

        def query(conn: sqlite3.Connection, cursor: int = cursor) -> tuple[list[StoredRow], int]:
            rows = read_rows(conn, after=cursor, limit=page, stream=stream, type_=type_)
            return rows, head_seq(conn)

        rows, head = await db.read(query)
        for row in rows:
            yield to_out(row)
            cursor = row.seq
        if len(rows) == page:
            continue
        # Everything up to `head` has been scanned (filters may have skipped rows).
        cursor = max(cursor, head)
        stop_wait = asyncio.ensure_future(stopping.wait())
        moved = asyncio.ensure_future(notifier.wait_beyond(cursor, keepalive))
        try:
            done, _ = await asyncio.wait({stop_wait, moved}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when the consumer goes away mid-wait: leave no task behind.
            stop_wait.cancel()
            moved.cancel()
        if moved in done and not moved.result():
            yield None
