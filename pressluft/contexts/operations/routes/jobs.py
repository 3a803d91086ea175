"""`/api/jobs` and `/api/diagnostics/jobs`: the job queue, its logs, the diagnostic jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, HeaderParameter, PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from pressluft.acting import Context
from pressluft.contexts.operations.jobs import (
    STATUSES,
    DiagnosticJobRequest,
    JobAccepted,
    JobCancelResult,
    JobLogPage,
    JobPage,
    JobQuery,
    JobView,
)
from pressluft.contexts.operations.service import Operations
from pressluft.errors import BadRequest
from pressluft.http.params import query_choice, query_int
from pressluft.http.streams import CredentialWatch, resume_point
from pressluft.http.writes import answer, retry_of
from pressluft.ids import is_uuid

__all__ = ["JOB_ROUTES"]

JobIdParam = Annotated[str, PathParameter(name="job_id")]  # not a job's id: 404
Uuid = Annotated[str | None, QueryParameter(min_length=36, max_length=36)]
Raw = Annotated[str | None, QueryParameter(max_length=20)]


def _uuid_filter(name: str, value: str | None) -> str | None:
    if value is not None and not is_uuid(value):
        raise BadRequest(
            f"invalid request: {name}: expected a UUID",
            details={"errors": [{"field": name, "message": "expected a UUID", "in": "query"}]},
        )
    return value


@get("/api/jobs", operation_id="listJobs", tags=["jobs"])
async def jobs(
    operations: NamedDependency[Operations],
    status: Raw = None,
    job_type: Annotated[
        str | None, QueryParameter(pattern=r"^[a-z][a-z0-9_]{0,63}$", max_length=64)
    ] = None,
    site_id: Uuid = None,
    node_id: Uuid = None,
    before: Raw = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
) -> JobPage:
    query = JobQuery(
        status=query_choice("status", status, STATUSES),
        job_type=job_type,
        site_id=_uuid_filter("site_id", site_id),
        node_id=_uuid_filter("node_id", node_id),
        before=query_int("before", before, 1, 2**62),
        limit=limit,
    )
    return await operations.jobs(query)


@get("/api/jobs/{job_id:str}", operation_id="getJob", tags=["jobs"])
async def job(operations: NamedDependency[Operations], job_id: JobIdParam) -> JobView:
    return await operations.job(job_id)


@post("/api/jobs/{job_id:str}/cancel", operation_id="cancelJob", status_code=200, tags=["jobs"])
async def cancel_job(
    request: Request[Any, Any, Any],
    operations: NamedDependency[Operations],
    ctx: NamedDependency[Context],
    job_id: JobIdParam,
) -> Response[JobCancelResult]:
    done = await operations.cancel(job_id, ctx, await retry_of(request, ctx))
    return answer(done, 200)


@post("/api/jobs/{job_id:str}/retry", operation_id="retryJob", status_code=202, tags=["jobs"])
async def retry_job(
    request: Request[Any, Any, Any],
    operations: NamedDependency[Operations],
    ctx: NamedDependency[Context],
    job_id: JobIdParam,
) -> Response[JobAccepted]:
    return answer(await operations.retry(job_id, ctx, await retry_of(request, ctx)))


@get("/api/jobs/{job_id:str}/log", operation_id="getJobLog", tags=["jobs"])
async def job_log(
    operations: NamedDependency[Operations],
    job_id: JobIdParam,
    after: Raw = None,
    limit: Annotated[int | None, QueryParameter(ge=1, le=5000)] = None,
    tail: Raw = None,
) -> JobLogPage:
    tail_n = query_int("tail", tail, 1, 1000)
    after_n = query_int("after", after, 0, 2**62)
    for other, given in (("after", after_n is not None), ("limit", limit is not None)):
        if tail_n is not None and given:
            raise BadRequest(
                f"invalid request: use either tail or {other}, not both",
                details={
                    "errors": [{"field": "tail", "message": f"not with {other}", "in": "query"}]
                },
            )
    return await operations.log(job_id, after=after_n, limit=limit, tail=tail_n)


@get("/api/jobs/{job_id:str}/log/stream", operation_id="streamJobLog", tags=["jobs"])
async def job_log_stream(
    operations: NamedDependency[Operations],
    watch: NamedDependency[CredentialWatch],
    job_id: JobIdParam,
    after: Annotated[int, QueryParameter(name="after", ge=0, le=2**62)] = 0,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    start = resume_point(after, last_event_id)
    await operations.job(job_id)  # 404 before streaming

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, retry=2000, comment="pressluft job log")
        async for item in operations.follow_log(job_id, after=start):
            if await watch.ended():
                yield ServerSentEventMessage(data=None, comment="credentials ended")
                return
            if item is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            elif isinstance(item, str):
                final = await operations.job(job_id)
                yield ServerSentEventMessage(event="end", data=msgspec.json.encode(final).decode())
                return
            else:
                yield ServerSentEventMessage(
                    id=str(item.seq), data=msgspec.json.encode(item).decode()
                )

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-store"})


@post("/api/diagnostics/jobs", operation_id="createDiagnosticJob", status_code=202, tags=["jobs"])
async def diagnostic_job(
    request: Request[Any, Any, Any],
    operations: NamedDependency[Operations],
    ctx: NamedDependency[Context],
    data: Annotated[DiagnosticJobRequest, Body()],
) -> Response[JobAccepted]:
    return answer(await operations.diagnostic(data, ctx, await retry_of(request, ctx)))


JOB_ROUTES = [jobs, job, cancel_job, retry_job, job_log, job_log_stream, diagnostic_job]
