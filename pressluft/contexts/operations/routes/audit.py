"""`/api/audit`: who did what, newest first."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from pressluft.contexts.operations.audit import AuditPage, AuditQuery
from pressluft.contexts.operations.service import Operations
from pressluft.http.params import query_int

__all__ = ["AUDIT_ROUTES"]

Text = Annotated[str | None, QueryParameter(min_length=1, max_length=200)]


@get("/api/audit", operation_id="listAudit", tags=["access"])
async def audit(
    operations: NamedDependency[Operations],
    actor: Text = None,
    resource_type: Annotated[str | None, QueryParameter(min_length=1, max_length=100)] = None,
    resource_id: Text = None,
    since: Annotated[str | None, QueryParameter(max_length=64)] = None,
    until: Annotated[str | None, QueryParameter(max_length=64)] = None,
    before: Annotated[str | None, QueryParameter(max_length=20)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> AuditPage:
    query = AuditQuery(
        actor=actor,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        until=until,
        before=query_int("before", before, 1, 2**62),
        limit=limit,
    )
    return await operations.audit(query)


AUDIT_ROUTES = [audit]
