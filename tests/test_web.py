"""The dashboard pages (server-rendered)."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.spec("WEB-1")
@pytest.mark.parametrize(
    ("path", "marker"),
    [("/", "Overview"), ("/settings", "settings-form"), ("/events", "event-feed")],
)
async def test_pages_render_without_inline_scripts(
    client: httpx.AsyncClient, path: str, marker: str
) -> None:
    await client.patch("/api/settings", json={"control_plane_domain": "web.example.com"})
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert marker in html
    for link in ('href="/"', 'href="/events"', 'href="/settings"', 'href="/api/docs"'):
        assert link in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "style=" not in html
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        assert (await client.get(asset)).status_code == 200


@pytest.mark.spec("WEB-1")
async def test_overview_shows_recent_events_and_health(client: httpx.AsyncClient) -> None:
    await client.patch(
        "/api/settings",
        json={"control_plane_domain": "web.example.com"},
        headers={"X-Request-ID": "w1"},
    )
    html = (await client.get("/")).text
    assert "settings.changed" in html
    assert "local:loopback" in html
    assert 'id="health-status">ok<' in html
