"""The dashboard pages (server-rendered), behind a login session."""

from __future__ import annotations

import re

import httpx
import pytest


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
