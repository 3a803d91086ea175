"""Queries over the audit log (the projection in `events/projectors/audit.py`)."""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.clock import format_ts, parse_rfc3339
from pressluft.errors import BadRequest

__all__ = ["AuditEntry", "AuditPage", "AuditQuery", "query_audit"]


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    recorded_at: str
    actor: str
    action: str
    resource_type: str
    resource_id: str | None
    result: str
    correlation_id: str | None


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[AuditEntry]
    next_before: int | None
    has_more: bool


class AuditQuery(msgspec.Struct, frozen=True, kw_only=True):
    actor: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: str | None = None
    until: str | None = None
    before: int | None = None
    limit: int = 50


def _time(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return format_ts(parse_rfc3339(value))
    except ValueError:
        raise BadRequest(
            f"{field} must be an RFC 3339 date-time with a time zone",
            details={"errors": [{"field": field, "message": "not a date-time", "in": "query"}]},
        ) from None


def query_audit(conn: sqlite3.Connection, query: AuditQuery) -> AuditPage:
    where: list[str] = []
    params: list[object] = []
    for column, value in (
        ("actor", query.actor),
        ("resource_type", query.resource_type),
        ("resource_id", query.resource_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    since, until = _time("since", query.since), _time("until", query.until)
    if since is not None:
        where.append("recorded_at >= ?")
        params.append(since)
    if until is not None:
        where.append("recorded_at < ?")
        params.append(until)
    if query.before is not None:
        where.append("seq < ?")
        params.append(query.before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        "SELECT seq, recorded_at, actor, action, resource_type, resource_id, result,"
        f" correlation_id FROM audit_log {clause} ORDER BY seq DESC LIMIT ?",
        [*params, query.limit + 1],
    ).fetchall()
    has_more = len(rows) > query.limit
    items = [AuditEntry(**dict(zip(AuditEntry.__struct_fields__, r, strict=True))) for r in rows]
    items = items[: query.limit]
    return AuditPage(
        items=items, next_before=items[-1].seq if has_more else None, has_more=has_more
    )
