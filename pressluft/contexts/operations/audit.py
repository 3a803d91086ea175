"""The audit log: a read model over the event log (no copy of it).

Every event is an audit entry: its actor (`events.actor`, a virtual column of the
meta, indexed), action (the event type), resource (the stream `<type>:<id>`, or
just `<type>` for singletons), result and correlation id. Refusals recorded as
events (`auth.login_failed`) are `failed`; everything else `succeeded`, except
jobs: `accepted` when enqueued (and while running), `retrying` when an attempt
failed and another follows, then their final result (`succeeded`, `failed`,
`cancelled`), each carrying the correlation id of the request that started it.
Where what an action found matters more than that it ran, the entry says so in
`outcome`: a node check (`node.checked`) is `reachable, ready`, `reachable, not
ready: <reasons>` or `unreachable: <reason>` — and `failed` when the node could
not be reached (the check ran, but a reader must not take it for a good one).
Filters map onto the event log's indexes: actor → `events_by_actor` (a job
worker's actor is not indexed: its events are frequent, found by a scan),
resource → the stream index.
"""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.clock import format_ts, parse_rfc3339
from pressluft.errors import BadRequest
from pressluft.events import actor_filter

__all__ = ["AuditEntry", "AuditPage", "AuditQuery", "query_audit", "resource_of"]

#: Event types recorded as refusals.
FAILED_TYPES = ("auth.login_failed",)


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    recorded_at: str
    actor: str
    action: str
    resource_type: str
    resource_id: str | None
    result: str
    outcome: str | None
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


def resource_of(stream: str) -> tuple[str, str | None]:
    kind, _, ident = stream.partition(":")
    return kind, ident or None


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


#: Job events: the request was accepted, then the job retries, and ends.
JOB_RESULTS = {
    "job.enqueued": "accepted",
    "job.claimed": "accepted",
    "job.cancel_requested": "accepted",
    "job.hastened": "accepted",
    "job.retry_scheduled": "retrying",
    "job.succeeded": "succeeded",
    "job.failed": "failed",
    "job.cancelled": "cancelled",
}
#: job.lease_expired: by what the rescue did with the attempt.
RESCUE_RESULTS = {"requeued": "retrying", "failed": "failed", "cancelled": "cancelled"}


def _node_check(data: str) -> tuple[str, str]:
    """A node check's result and outcome, from its event's data."""
    checked = msgspec.json.decode(data)
    reasons = ", ".join(str(code) for code in checked.get("reason_codes") or [])
    if not checked.get("reachable"):
        return "failed", f"unreachable: {reasons}" if reasons else "unreachable"
    if checked.get("ready"):
        return "succeeded", "reachable, ready"
    return "succeeded", f"reachable, not ready: {reasons}" if reasons else "reachable, not ready"


def _result(type_: str, outcome: str | None) -> str:
    if type_ == "job.lease_expired":
        return RESCUE_RESULTS.get(outcome or "", "retrying")
    if type_ in JOB_RESULTS:
        return JOB_RESULTS[type_]
    return "failed" if type_ in FAILED_TYPES else "succeeded"


def query_audit(conn: sqlite3.Connection, query: AuditQuery) -> AuditPage:
    where: list[str] = []
    params: list[object] = []
    if query.actor is not None:
        term, values = actor_filter(query.actor)
        where.append(term)
        params += values
    if query.resource_type is not None:
        if query.resource_id is not None:
            where.append("stream = ?")
            params.append(f"{query.resource_type}:{query.resource_id}")
        else:  # `<type>` itself or any `<type>:<id>` (a range on the stream index)
            where.append("(stream = ? OR (stream >= ? AND stream < ?))")
            params += [query.resource_type, query.resource_type + ":", query.resource_type + ";"]
    elif query.resource_id is not None:
        where.append("stream LIKE ? ESCAPE '\\'")
        escaped = query.resource_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params.append("%:" + escaped)
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
        "SELECT seq, recorded_at, actor, type, stream, json_extract(meta, '$.correlation_id'),"
        " CASE type WHEN 'job.lease_expired' THEN json_extract(data, '$.outcome')"
        " WHEN 'node.checked' THEN data END"
        f" FROM events {clause} ORDER BY seq DESC LIMIT ?",
        [*params, query.limit + 1],
    ).fetchall()
    has_more = len(rows) > query.limit
    items = []
    for seq, recorded_at, actor, type_, stream, correlation_id, extra in rows[: query.limit]:
        resource_type, resource_id = resource_of(stream)
        if type_ == "node.checked":
            result, outcome = _node_check(extra)
        else:
            result, outcome = _result(type_, extra), None
        items.append(
            AuditEntry(
                seq=seq,
                recorded_at=recorded_at,
                actor=actor,
                action=type_,
                resource_type=resource_type,
                resource_id=resource_id,
                result=result,
                outcome=outcome,
                correlation_id=correlation_id,
            )
        )
    return AuditPage(
        items=items, next_before=items[-1].seq if has_more else None, has_more=has_more
    )
