"""Appending to and reading from the event log.

`append(tx, stream, expected_version, events, meta)` is the only way events
enter the log. It checks the stream's version (optimistic concurrency), chains
each event's hash, applies the projectors in the same transaction, moves the log
head, and publishes the recorded events for after-commit listeners.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import msgspec

from pressluft.db import WriteTx
from pressluft.errors import StreamConflict
from pressluft.events.chain import event_hash
from pressluft.events.projection import Envelope, ProjectorSet
from pressluft.events.types import Event, event_type
from pressluft.events.upcast import decode_event

__all__ = [
    "ANY_VERSION",
    "INDEXED_ACTOR_TERM",
    "INDEXED_TYPE_TERM",
    "NO_STREAM",
    "UNINDEXED_TYPES",
    "WORKER_ACTOR_PREFIX",
    "Meta",
    "Recorded",
    "StoredRow",
    "actor_filter",
    "append",
    "head_seq",
    "iter_rows",
    "read_last_rows",
    "read_rows",
    "rebuild",
    "stream_version",
    "type_filter",
]

#: `expected_version` for "the stream must not exist yet".
NO_STREAM = 0
#: `expected_version` for "whatever version the stream is at".
ANY_VERSION: None = None

_encode = msgspec.json.Encoder().encode


_TAGS: dict[type[Event], tuple[str, str]] = {}


def _type_and_tag(cls: type[Event]) -> tuple[str, str]:
    """The event type's name and the JSON prefix msgspec writes for it (cached)."""
    known = _TAGS.get(cls)
    if known is None:
        type_ = event_type(cls)
        known = _TAGS[cls] = (type_, '{"type":' + _encode(type_).decode())
    return known


def _event_data(event: Event, tag: str) -> str:
    """The event's fields as JSON, without the tag (it has its own column)."""
    encoded = _encode(event).decode()
    # msgspec writes the tag first; unset and default fields are omitted.
    if not encoded.startswith(tag):
        raise ValueError(f"unexpected encoding of {tag}: {encoded[:80]}")
    rest = encoded[len(tag) :]
    return "{" + rest[1:] if rest.startswith(",") else "{}"


class Meta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who and what caused an event."""

    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None
    idempotency_key: str | None = None


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as it was committed."""

    seq: int
    stream: str
    stream_version: int
    type: str
    event: Event
    meta: Meta
    recorded_at: str


#: `WriteTx.memo` key: (seq, hash) of the newest event appended in this group commit.
_HEAD = "events.head"

_POSITION = (
    "SELECT coalesce((SELECT max(stream_version) FROM events WHERE stream = ?), 0), seq, hash"
    " FROM event_log_head WHERE id = 1"
)


def stream_version(conn: sqlite3.Connection, stream: str) -> int:
    row = conn.execute(
        "SELECT max(stream_version) FROM events WHERE stream = ?", (stream,)
    ).fetchone()
    return int(row[0] or 0)


def head_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT seq FROM event_log_head WHERE id = 1").fetchone()[0])


def append(
    tx: WriteTx,
    stream: str,
    expected_version: int | None,
    events: Sequence[Event],
    meta: Meta,
    projectors: ProjectorSet | None = None,
) -> list[Recorded]:
    """Append `events` to `stream` and project them, inside the caller's transaction
    (with `projectors`, else the transaction's: the daemon's features')."""
    projectors = projectors or tx.projectors
    if projectors is None:
        raise RuntimeError("no projectors: open the Database with the features' projector set")
    conn = tx.conn
    head = tx.memo.get(_HEAD)  # an earlier command of this group commit appended
    if head is None:  # one statement for the stream's version and the log head
        version, seq, prev_hash = conn.execute(_POSITION, (stream,)).fetchone()
    else:
        version = stream_version(conn, stream)
        seq, prev_hash = head
    if expected_version is not None and expected_version != version:
        raise StreamConflict(stream, expected_version, version)
    meta_text = _encode(meta).decode()
    recorded: list[Recorded] = []
    for event in events:
        seq += 1
        version += 1
        type_, tag = _type_and_tag(type(event))
        schema_version = event.SCHEMA_VERSION
        data = _event_data(event, tag)
        digest = event_hash(
            seq, stream, version, type_, schema_version, data, meta_text, tx.now_ts, prev_hash
        )
        conn.execute(
            "INSERT INTO events (seq, stream, stream_version, type, schema_version, data, meta,"
            " recorded_at, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                stream,
                version,
                type_,
                schema_version,
                data,
                meta_text,
                tx.now_ts,
                prev_hash,
                digest,
            ),
        )
        projectors.apply(
            conn,
            event,
            Envelope(seq, stream, version, tx.now_ts, meta.actor, meta.correlation_id),
        )
        prev_hash = digest
        record = Recorded(
            seq=seq,
            stream=stream,
            stream_version=version,
            type=type_,
            event=event,
            meta=meta,
            recorded_at=tx.now_ts,
        )
        tx.publish(record)
        recorded.append(record)
    if events:
        if tx.batched:  # moved once per group commit, just before COMMIT
            tx.memo[_HEAD] = (seq, prev_hash)
            tx.finishers[_HEAD] = _move_head
        else:
            _move_head(conn, (seq, prev_hash))
    return recorded


def _move_head(conn: sqlite3.Connection, head: tuple[int, str]) -> None:
    conn.execute("UPDATE event_log_head SET seq = ?, hash = ? WHERE id = 1", head)


class StoredRow(msgspec.Struct, frozen=True, array_like=True):
    """One row of `events` as stored (data and meta still JSON text)."""

    seq: int
    stream: str
    stream_version: int
    type: str
    schema_version: int
    data: str
    meta: str
    recorded_at: str
    prev_hash: str
    hash: str


_COLUMNS = (
    "seq, stream, stream_version, type, schema_version, data, meta, recorded_at, prev_hash, hash"
)

#: The job queue's happy path, by far the most frequent types: `events_by_type`
#: leaves them out (migration 0010). A filter on one of them scans the log in seq
#: order (a match every few rows); any other type is found through the index,
#: which SQLite uses only when the query repeats the index's WHERE term.
UNINDEXED_TYPES = ("job.enqueued", "job.claimed", "job.succeeded")
INDEXED_TYPE_TERM = "type NOT IN ({})".format(", ".join(f"'{t}'" for t in UNINDEXED_TYPES))
#: The job workers' actors (`system:worker:<id>`), left out of `events_by_actor`.
WORKER_ACTOR_PREFIX = "system:worker:"
INDEXED_ACTOR_TERM = "actor NOT GLOB 'system:worker:*'"


def type_filter(type_: str) -> tuple[str, list[object]]:
    """The WHERE term (and parameters) for events of one type, index-aware."""
    if type_ in UNINDEXED_TYPES:
        return "type = ?", [type_]
    return f"type = ? AND {INDEXED_TYPE_TERM}", [type_]


def actor_filter(actor: str) -> tuple[str, list[object]]:
    """The WHERE term (and parameters) for events by one actor, index-aware."""
    if actor.startswith(WORKER_ACTOR_PREFIX):
        return "actor = ?", [actor]
    return f"actor = ? AND {INDEXED_ACTOR_TERM}", [actor]


_decode_meta = msgspec.json.Decoder(Meta).decode


def read_rows(
    conn: sqlite3.Connection,
    *,
    after: int = 0,
    limit: int = 100,
    stream: str | None = None,
    type_: str | None = None,
    before: int | None = None,
) -> list[StoredRow]:
    """Events with seq > `after`, oldest first, optionally filtered."""
    where = ["seq > ?"]
    params: list[object] = [after]
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    if stream is not None:
        where.append("stream = ?")
        params.append(stream)
    if type_ is not None:
        term, values = type_filter(type_)
        where.append(term)
        params += values
    params.append(limit)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", params
    ).fetchall()
    return [StoredRow(*row) for row in rows]


def read_last_rows(
    conn: sqlite3.Connection, count: int, *, stream: str | None = None, type_: str | None = None
) -> list[StoredRow]:
    """The newest `count` matching events, oldest first."""
    where: list[str] = ["1"]
    params: list[object] = []
    if stream is not None:
        where.append("stream = ?")
        params.append(stream)
    if type_ is not None:
        term, values = type_filter(type_)
        where.append(term)
        params += values
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
        [*params, count],
    ).fetchall()
    return [StoredRow(*row) for row in reversed(rows)]


def iter_rows(conn: sqlite3.Connection, batch: int = 5000) -> Iterator[StoredRow]:
    """Every event, oldest first, read in batches."""
    after = 0
    while True:
        rows = read_rows(conn, after=after, limit=batch)
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def rebuild(
    source: sqlite3.Connection, target: sqlite3.Connection, projectors: ProjectorSet
) -> int:
    """Re-apply every event of `source` to the (emptied) projections of `target`."""
    count = 0
    projectors.reset(target)
    for row in iter_rows(source):
        event = decode_event(row.type, row.schema_version, row.data)
        meta = _decode_meta(row.meta)
        envelope = Envelope(
            row.seq,
            row.stream,
            row.stream_version,
            row.recorded_at,
            meta.actor,
            meta.correlation_id,
        )
        projectors.apply(target, event, envelope)
        count += 1
    return count
