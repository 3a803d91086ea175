"""The dashboard pages (server-rendered), behind a login session."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import Callable

import httpx
import pytest

from pressluft.api.contract import load_contract
from pressluft.api.params import idempotent
from pressluft.contexts.sites.pages import SITE_SECTIONS
from pressluft.contexts.sites.queries import SiteQuery, list_sites
from pressluft.events import Meta
from pressluft.jobs.context import LocalPort
from pressluft.jobs.logs import append_lines
from pressluft.jobs.queue import JobSpec, enqueue
from pressluft.runtime import Runtime
from tests.support.nodes import blocked_node
from tests.support.workers import fn_worker
from tests.test_sites import _active_site


@pytest.mark.spec("WEB-1")
@pytest.mark.parametrize(
    ("path", "marker"),
    [
        ("/", "Overview"),
        ("/settings", "settings-form"),
        ("/events", "event-feed"),
        ("/tokens", "token-form"),
        ("/audit", "audit-table"),
        ("/certificates", "certificates-empty"),
        ("/backups", "backup-target-missing"),
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


# -- a site's page -------------------------------------------------------------------


async def _site_with_failed_staging(
    session: httpx.AsyncClient, runtime: Runtime
) -> tuple[str, str, str]:
    """An active site (production recorded active) and a staging copy whose job was
    cancelled (failed): (site, production, staging)."""
    site_id, production = await _active_site(session, runtime, "acme")
    reply = await session.post(
        f"/api/sites/{site_id}/environments",
        json={
            "name": "Stage",
            "slug": "stage",
            "type": "staging",
            "source_environment_id": production,
        },
    )
    assert reply.status_code == 202, reply.text
    assert (await session.post(f"/api/jobs/{reply.json()['job_id']}/cancel")).status_code == 200
    return site_id, production, reply.json()["environment_id"]


def _no_inline_script(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "style=" not in html


@pytest.mark.spec("WEB-9")
async def test_a_site_has_its_own_page_with_a_section_per_capability(
    runtime: Runtime, session: httpx.AsyncClient
) -> None:
    site_id, production, staging = await _site_with_failed_staging(session, runtime)
    reply = await session.get(f"/sites/{site_id}")
    assert reply.status_code == 200
    html = reply.text
    _no_inline_script(html)
    sections = re.findall(r'<section id="section-([a-z]+)"', html)
    assert sections == [s.name for s in SITE_SECTIONS]
    assert sections[:2] == ["environments", "jobs"]
    assert {"backups", "domains", "cache", "releases"} <= set(sections)
    for env_id in (production, staging):
        assert f'data-environment-id="{env_id}"' in html
    jobs = (await session.get("/api/jobs", params={"site_id": site_id})).json()["items"]
    assert len(jobs) == 2
    for job in jobs:
        assert f'href="/jobs/{job["id"]}"' in html
    assert f'href="/jobs?site_id={site_id}"' in html
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (await session.get(asset)).status_code == 200
    # The sites list links every site to its page.
    assert '"/sites/" + s.id' in (await session.get("/static/sites.js")).text
    for unknown in (str(uuid.uuid4()), "not-a-site"):
        missing = await session.get(f"/sites/{unknown}")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "There is no such site." in missing.text


@pytest.mark.spec("WEB-10", "WEB-11")
async def test_the_site_page_renders_buttons_from_the_actions(
    runtime: Runtime, session: httpx.AsyncClient
) -> None:
    site_id, production, staging = await _site_with_failed_staging(session, runtime)
    html = (await session.get(f"/sites/{site_id}")).text

    def row(env_id: str) -> str:
        found = re.search(rf'<tr data-environment-id="{env_id}".*?</tr>', html, re.S)
        assert found, env_id
        return found.group(0)

    def buttons(fragment: str) -> set[str]:
        return set(re.findall(r'class="(?:secondary|danger) ([a-z-]+)"', fragment))

    assert 'data-actions="magic_login clone cache_toggle cache_purge"' in row(production)
    assert buttons(row(production)) == {"magic-login", "env-clone"}
    assert buttons(row(staging)) == {"env-reset", "env-delete"}
    assert 'data-confirm-typed="stage"' in row(staging)
    assert f'data-url="/api/environments/{staging}"' in row(staging)
    # The site: a staging environment lives, so no "Delete site"; not failed, no reset.
    assert "site-delete" not in html and "site-reset" not in html
    # Each action button sends an Idempotency-Key exactly where its operation takes
    # one (the API refuses it elsewhere): all but magic login, whose answer is a secret.
    operations = [
        (method, re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), op["operationId"])
        for path, item in load_contract()["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    ]
    found = re.findall(r'<button [^>]*data-method="([A-Z]+)" data-url="([^"]+)"[^>]*>', html)
    # Magic login; reset and delete of the failed copy; production's cache buttons
    # (page cache, object cache, purge).
    assert len(found) == 6, found
    for method, url in found:
        tag = next(t for t in re.findall(r"<button [^>]*>", html) if f'data-url="{url}"' in t)
        (operation,) = [o for m, rx, o in operations if m == method.lower() and rx.match(url)]
        assert (operation in idempotent()) == ('data-idempotent="no"' not in tag), tag
    # The pages repeat no status rule: they read `actions`.
    for script in ("/static/sites.js", "/static/site.js"):
        source = (await session.get(script)).text
        assert "actions" in source
        assert not re.search(r"status ===? \"(active|failed)\"", source), script


@pytest.mark.spec("WEB-12")
async def test_site_sections_are_served_alone_as_fragments(
    runtime: Runtime, session: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    site_id, production, staging = await _site_with_failed_staging(session, runtime)
    page = (await session.get(f"/sites/{site_id}")).text
    for section in SITE_SECTIONS:
        src = f"/sites/{site_id}/sections/{section.name}"
        assert f'data-src="{src}"' in page
        reply = await session.get(src)
        assert reply.status_code == 200, src
        assert reply.headers["content-type"].startswith("text/html")
        assert "<html" not in reply.text and "<nav" not in reply.text  # a fragment
        _no_inline_script(reply.text)
    envs = (await session.get(f"/sites/{site_id}/sections/environments")).text
    assert (
        f'data-environment-id="{staging}"' in envs and f'data-environment-id="{production}"' in envs
    )
    assert 'data-follows="site environment"' in page and 'data-follows="job"' in page
    jobs = (await session.get(f"/sites/{site_id}/sections/jobs")).text
    assert jobs.count("<tr data-job-id=") == 2
    for path in (
        f"/sites/{site_id}/sections/nope",
        f"/sites/{uuid.uuid4()}/sections/jobs",
        "/sites/not-a-site/sections/environments",
    ):
        assert (await session.get(path)).status_code == 404, path
    # Guarded like the pages: no session, the login page.
    gone = await anon.get(f"/sites/{site_id}/sections/environments")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login?next=")


@pytest.mark.spec("WEB-13")
async def test_a_page_of_sites_takes_the_same_statements_for_one_site_or_many(
    runtime: Runtime, session: httpx.AsyncClient
) -> None:
    node_id = await blocked_node(runtime)
    for n in range(6):
        reply = await session.post(
            "/api/sites", json={"name": f"s{n}", "slug": f"s{n}", "node_id": node_id}
        )
        assert reply.status_code == 202, reply.text

    def statements(limit: int) -> Callable[[sqlite3.Connection], tuple[int, int]]:
        """(sites on the page, statements run to read it)."""

        def count(conn: sqlite3.Connection) -> tuple[int, int]:
            seen: list[str] = []
            conn.set_trace_callback(seen.append)
            try:
                page = list_sites(conn, SiteQuery(limit=limit))
            finally:
                conn.set_trace_callback(None)
            return len(page.items), len(seen)

        return count

    one = await runtime.db.read(statements(1))
    many = await runtime.db.read(statements(50))
    assert (one[0], many[0]) == (1, 6)
    assert one[1] == many[1] == 2, (one, many)
