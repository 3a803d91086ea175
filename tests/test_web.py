"""The dashboard pages (server-rendered), behind a login session."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from pressluft.events import Meta
from pressluft.jobs.context import LocalPort
from pressluft.jobs.logs import append_lines
from pressluft.jobs.queue import JobSpec, enqueue
from pressluft.runtime import Runtime
from tests.support.workers import fn_worker


@pytest.mark.spec("WEB-1")
@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/", "Overview"),
        ("/settings", "settings-form"),
        ("/events", "event-feed"),
        ("/tokens", "token-form"),
        ("/audit", "audit-table"),
    ],
)
async def test_pages_render_without_inline_scripts(
    session: httpx.AsyncClient, path: str, marker: str
) -> None:
    await session.patch("/api/settings", json={"control_plane_domain": "web.example.com"})
    response = await session.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert marker in html
    for link in (
        'href="/"',
        'href="/events"',
        'href="/settings"',
        'href="/tokens"',
        'href="/audit"',
    ):
        assert link in html
    assert "admin@example.com" in html  # who is logged in
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "style=" not in html
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (await session.get(asset)).status_code == 200


@pytest.mark.spec("WEB-1")
async def test_overview_shows_recent_events_and_health(session: httpx.AsyncClient) -> None:
    await session.patch("/api/settings", json={"control_plane_domain": "web.example.com"})
    html = (await session.get("/")).text
    assert "settings.changed" in html
    assert "user:" in html  # the logged-in admin is the actor
    assert 'id="health-status">ok<' in html


@pytest.mark.spec("WEB-4")
async def test_a_job_page_says_how_many_output_lines_were_lost(
    runtime: Runtime, session: httpx.AsyncClient
) -> None:
    async def loses_three(ctx: LocalPort) -> None:
        note = "3 lines of output lost: the database refused writes for 9 s"
        await runtime.db.write(
            lambda tx: append_lines(
                tx, ctx.job_id, ctx.claim.lease_token, ctx.attempt, [], lost=3, lost_note=note
            )
        )

    runtime.jobs.register(fn_worker("loses_three", loses_three))
    kept = (await session.post("/api/diagnostics/jobs", json={"job_type": "noop"})).json()
    job_id = await runtime.db.write(
        lambda tx: enqueue(tx, JobSpec(job_type="loses_three"), Meta(actor="test"))
    )
    for _ in range(500):
        job = (await session.get(f"/api/jobs/{job_id}")).json()
        if job["status"] == "succeeded":
            break
        await asyncio.sleep(0.01)
    assert job["output_lines_lost"] == 3
    html = (await session.get(f"/jobs/{job_id}")).text
    assert re.search(
        r'<p id="log-lost" class="status-fail">\s*<span id="log-lost-count">3</span>', html
    )
    clean = (await session.get(f"/jobs/{kept['job_id']}")).text
    assert '<p id="log-lost" class="status-fail" hidden>' in clean
