"""`/api/jobs` and `/api/diagnostics/jobs`: the job queue, its logs, the diagnostic jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, HeaderParameter, PathParameter, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from pressluft.acting import Context
from pressluft.api.daemon import Daemon
from pressluft.api.idempotency import replay_headers, run_write
from pressluft.api.streams import CredentialWatch, resume_point
from pressluft.contexts.operations.jobs import (
    STATUSES,
    DiagnosticJobRequest,
    JobAccepted,
    JobCancelResult,
    JobLogPage,
    JobPage,
    JobQuery,
    JobView,
    diagnostic_command,
    follow_log,
    get_job,
    list_jobs,
    read_log,
    wait_for_end,
)
from pressluft.errors import BadRequest
from pressluft.http.params import query_choice, query_int
from pressluft.ids import is_uuid
from pressluft.jobs.queue import cancel, retry

__all__ = ["JOB_ROUTES"]

#: A running job reaches `cancelled` within this; the cancel answer waits for it.
CANCEL_WAIT_SECONDS = 5.0

#: Log lines per page unless `limit` says otherwise.
LOG_PAGE = 500

#: How a job asked to stop ended: cancelled, or on its own before it stopped.
_ENDINGS: dict[str, Literal["cancelled", "succeeded", "failed"]] = {
    "cancelled": "cancelled",
    "succeeded": "succeeded",
    "failed": "failed",
}

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
    runtime: NamedDependency[Daemon],
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
    return await runtime.db.read_cached(("listJobs", query), lambda conn: list_jobs(conn, query))


@get("/api/jobs/{job_id:str}", operation_id="getJob", tags=["jobs"])
async def job(runtime: NamedDependency[Daemon], job_id: JobIdParam) -> JobView:
    return await runtime.db.read(lambda conn: get_job(conn, job_id))


@post("/api/jobs/{job_id:str}/cancel", operation_id="cancelJob", status_code=200, tags=["jobs"])
async def cancel_job(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    job_id: JobIdParam,
) -> Response[JobCancelResult]:
    command = cancel(job_id, ctx.meta())

    def to_result(tx: Any) -> JobCancelResult:
        status = command(tx)
        ended = status == "cancelled"
        return JobCancelResult(status="cancelled" if ended else "cancel_requested", job_id=job_id)

    done = await run_write(request, runtime, ctx, to_result, JobCancelResult, 200)
    result = done.value
    if result.status == "cancel_requested":
        final = await wait_for_end(runtime.db, runtime.job_changes, job_id, CANCEL_WAIT_SECONDS)
        ended = _ENDINGS.get(final)
        if ended is not None:
            result = JobCancelResult(status=ended, job_id=job_id)
    return Response(result, headers=replay_headers(done))


@post("/api/jobs/{job_id:str}/retry", operation_id="retryJob", status_code=202, tags=["jobs"])
async def retry_job(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    job_id: JobIdParam,
) -> Response[JobAccepted]:
    command = retry(job_id, ctx.meta())

    def accepted(tx: Any) -> JobAccepted:
        return JobAccepted(job_id=command(tx))

    done = await run_write(request, runtime, ctx, accepted, JobAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


@get("/api/jobs/{job_id:str}/log", operation_id="getJobLog", tags=["jobs"])
async def job_log(
    runtime: NamedDependency[Daemon],
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
    return await runtime.db.read(
        lambda conn: read_log(
            conn, job_id, after=after_n or 0, limit=limit or LOG_PAGE, tail=tail_n
        )
    )


@get("/api/jobs/{job_id:str}/log/stream", operation_id="streamJobLog", tags=["jobs"])
async def job_log_stream(
    request: Request[Any, Any, Any],
    runtime: NamedDependency[Daemon],
    job_id: JobIdParam,
    after: Annotated[int, QueryParameter(name="after", ge=0, le=2**62)] = 0,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
) -> ServerSentEvent:
    start = resume_point(after, last_event_id)
    await runtime.db.read(lambda conn: get_job(conn, job_id))  # 404 before streaming
    watch = CredentialWatch(request, runtime)

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        yield ServerSentEventMessage(data=None, retry=2000, comment="pressluft job log")
        async for item in follow_log(
            runtime.db,
            runtime.job_changes,
            runtime.stopping,
            job_id,
            after=start,
            keepalive=runtime.config.sse_keepalive_seconds,
        ):
            if await watch.ended():
                yield ServerSentEventMessage(data=None, comment="credentials ended")
                return
            if item is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            elif isinstance(item, str):
                final = await runtime.db.read(lambda conn: get_job(conn, job_id))
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
    runtime: NamedDependency[Daemon],
    ctx: NamedDependency[Context],
    data: Annotated[DiagnosticJobRequest, Body()],
) -> Response[JobAccepted]:
    command = diagnostic_command(data, ctx.meta())
    done = await run_write(request, runtime, ctx, command, JobAccepted, 202)
    return Response(done.value, status_code=202, headers=replay_headers(done))


JOB_ROUTES = [jobs, job, cancel_job, retry_job, job_log, job_log_stream, diagnostic_job]
