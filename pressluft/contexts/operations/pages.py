"""The operations pages of the dashboard: the overview (health, counters, the latest
events), the event feed, the job list, one job, and the audit."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from litestar.response import Template

from pressluft.contexts.access import Principal
from pressluft.contexts.operations.health import Health
from pressluft.contexts.operations.jobs import STATUSES as JOB_STATUSES
from pressluft.contexts.operations.service import Operations
from pressluft.errors import NotFound
from pressluft.http.pages import PAGE

__all__ = ["PAGES"]


@get("/", include_in_schema=False, media_type="text/html", opt=PAGE)
async def overview(
    operations: NamedDependency[Operations],
    health: NamedDependency[Health],
    principal: NamedDependency[Principal],
) -> Template:
    report = await health.report()
    counters = await operations.counters()
    recent = await operations.events(after=max(0, counters.events_total - 10), limit=10)
    return Template(
        template_name="overview.html",
        context={
            "page": "overview",
            "principal": principal,
            "health": report,
            "counters": counters,
            "recent": [
                {
                    "seq": e.seq,
                    "recorded_at": e.recorded_at,
                    "type": e.type,
                    "stream": f"{e.stream}@{e.stream_version}",
                    "actor": msgspec.json.decode(e.meta).get("actor", ""),
                }
                for e in reversed(recent.items)
            ],
        },
    )


@get("/audit", include_in_schema=False, media_type="text/html", opt=PAGE)
async def audit_page(principal: NamedDependency[Principal]) -> Template:
    return Template(template_name="audit.html", context={"page": "audit", "principal": principal})


@get("/events", include_in_schema=False, media_type="text/html", opt=PAGE)
async def events_page(principal: NamedDependency[Principal]) -> Template:
    return Template(template_name="events.html", context={"page": "events", "principal": principal})


@get("/jobs", include_in_schema=False, media_type="text/html", opt=PAGE)
async def jobs_page(principal: NamedDependency[Principal]) -> Template:
    return Template(
        template_name="jobs.html",
        context={"page": "jobs", "principal": principal, "statuses": JOB_STATUSES},
    )


@get("/jobs/{job_id:str}", include_in_schema=False, media_type="text/html", opt=PAGE)
async def job_page(
    operations: NamedDependency[Operations],
    principal: NamedDependency[Principal],
    job_id: Annotated[str, PathParameter()],
) -> Template:
    try:  # any text: what is not a job's id gets the page below, not an API error
        job, pruned = await operations.job_and_log_state(job_id)
    except NotFound:
        return Template(
            template_name="not_found.html",
            context={
                "page": "jobs",
                "principal": principal,
                "message": "There is no such job.",
                "back": "/jobs",
            },
            status_code=404,
        )
    return Template(
        template_name="job.html",
        context={
            "page": "jobs",
            "principal": principal,
            "job": job,
            "payload": msgspec.json.encode(job.payload).decode(),
            "log_pruned": pruned,
            "retention_days": operations.log_retention_days,
        },
    )


PAGES = [overview, audit_page, events_page, jobs_page, job_page]
