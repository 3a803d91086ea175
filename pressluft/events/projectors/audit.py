"""The audit log: one row per event — who (actor), what (action), on what, with what result.

A projection like any other, so it is rebuilt by replay and can never disagree
with the log. The resource is read from the stream name (`<type>:<id>`); the
result is `failed` for refusals recorded as events (`auth.login_failed`) and
`succeeded` otherwise. (Jobs add `accepted` and `retrying`.)
"""

from __future__ import annotations

import sqlite3

from pressluft.events.projection import Envelope, Projector
from pressluft.events.types import Event, LoginFailed, event_type

__all__ = ["AUDIT_PROJECTOR", "resource_of"]

_FAILED: tuple[type[Event], ...] = (LoginFailed,)


def resource_of(stream: str) -> tuple[str, str | None]:
    kind, _, ident = stream.partition(":")
    return kind, ident or None


def _record(conn: sqlite3.Connection, event: Event, env: Envelope) -> None:
    resource_type, resource_id = resource_of(env.stream)
    result = "failed" if isinstance(event, _FAILED) else "succeeded"
    conn.execute(
        "INSERT INTO audit_log (seq, recorded_at, actor, action, resource_type, resource_id,"
        " result, correlation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            env.seq,
            env.recorded_at,
            env.actor,
            event_type(type(event)),
            resource_type,
            resource_id,
            result,
            env.correlation_id,
        ),
    )


AUDIT_PROJECTOR = Projector(name="audit", tables=("audit_log",), handlers={}, every_event=_record)
