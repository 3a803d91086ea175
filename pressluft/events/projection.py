"""Projections: state tables derived from the event log.

A projector owns some tables and maps event types to handlers
`handler(conn, event, envelope)`. A handler is deterministic: it reads the event,
its envelope (seq, stream version, time) and rows of projection tables — its own,
or those of a projector that comes earlier in the features' order (e.g. the nodes and
sites projectors read `jobs` to follow a job's end), which hold the same rows at
that point live and in a replay — and writes only its own tables. Handlers run
inside the appending transaction, and the same handlers rebuild every table from
the log (`rebuild_into`), which is what `pressluft replay` and `replay --verify` do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pressluft.events.types import Event

__all__ = [
    "NON_PROJECTION_TABLES",
    "Difference",
    "Envelope",
    "GuardFailed",
    "Projector",
    "ProjectorSet",
    "diff_tables",
    "one_row",
]

#: The log's own tables that are not derived from events, and why (features add theirs).
NON_PROJECTION_TABLES: Mapping[str, str] = {
    "events": "the log itself",
    "event_log_head": "the chain's tail anchor, written by every append",
    "schema_migrations": "the migration ledger",
    "secrets": "sealed secrets; events hold only their ids",
}


class GuardFailed(RuntimeError):
    """An event did not match the state it acts on (a stale or out-of-order transition):
    a projector's guarded UPDATE changed no row. It aborts the appending transaction."""


def one_row(cursor: sqlite3.Cursor, what: str) -> None:
    """A projector's guard: the statement changed exactly one row, or `GuardFailed`."""
    if cursor.rowcount != 1:
        raise GuardFailed(what)


@dataclass(frozen=True)
class Envelope:
    """Where an event sits in the log, and who caused it."""

    seq: int
    stream: str
    stream_version: int
    recorded_at: str
    actor: str = ""
    correlation_id: str | None = None


Handler = Callable[[sqlite3.Connection, Any, Envelope], None]


@dataclass(frozen=True)
class Projector:
    """A named set of handlers that own `tables`.

    `every_event`, when set, sees every event of every type (the audit log).
    """

    name: str
    tables: tuple[str, ...]
    handlers: Mapping[type[Event], Handler]
    every_event: Handler | None = None


@dataclass
class ProjectorSet:
    """All projectors, indexed by the event type they handle."""

    projectors: tuple[Projector, ...]
    _by_type: dict[type[Event], list[Handler]] = field(default_factory=dict, init=False)
    _every: list[Handler] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        owners: dict[str, str] = {}
        for projector in self.projectors:
            for table in projector.tables:
                if table in owners:
                    raise ValueError(f"table {table} owned by {owners[table]} and {projector.name}")
                owners[table] = projector.name
            for cls, handler in projector.handlers.items():
                self._by_type.setdefault(cls, []).append(handler)
            if projector.every_event is not None:
                self._every.append(projector.every_event)

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(t for p in self.projectors for t in p.tables)

    def apply(self, conn: sqlite3.Connection, event: Event, envelope: Envelope) -> None:
        for handler in self._by_type.get(type(event), ()):
            handler(conn, event, envelope)
        for handler in self._every:
            handler(conn, event, envelope)

    def reset(self, conn: sqlite3.Connection) -> None:
        """Empty every projection table (before a rebuild)."""
        for table in reversed(self.tables):
            conn.execute(f"DELETE FROM {table}")


@dataclass(frozen=True)
class Difference:
    """A row that differs between the live tables and a replay."""

    table: str
    key: tuple[Any, ...]
    live: tuple[Any, ...] | None
    replayed: tuple[Any, ...] | None


def _key_columns(conn: sqlite3.Connection, table: str) -> list[int]:
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    keys = sorted((row[5], row[0]) for row in info if row[5] > 0)
    return [cid for _, cid in keys] or list(range(len(info)))


def diff_tables(
    live: sqlite3.Connection, replayed: sqlite3.Connection, tables: Iterable[str]
) -> list[Difference]:
    """Row-by-row differences of `tables` between two databases (same schema)."""
    out: list[Difference] = []
    for table in tables:
        keys = _key_columns(live, table)
        live_rows = {tuple(r) for r in live.execute(f"SELECT * FROM {table}")}
        replayed_rows = {tuple(r) for r in replayed.execute(f"SELECT * FROM {table}")}
        by_key: dict[tuple[Any, ...], list[tuple[Any, ...] | None]] = {}
        for row in live_rows - replayed_rows:
            by_key.setdefault(tuple(row[k] for k in keys), [None, None])[0] = row
        for row in replayed_rows - live_rows:
            by_key.setdefault(tuple(row[k] for k in keys), [None, None])[1] = row
        for key in sorted(by_key, key=repr):
            live_row, replayed_row = by_key[key]
            out.append(Difference(table, key, live_row, replayed_row))
    return out
