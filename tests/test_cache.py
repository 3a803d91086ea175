"""The cache's commands in process (specs/cache.md): what the toggle and the purge
accept and refuse, the jobs they queue, the flags only the toggle's job changes,
the site page's cache buttons. The node side is tests/test_cache_node.py."""

from __future__ import annotations

import html
import json
import re

import httpx
import msgspec
import pytest

from pressluft.contexts.sites.cache_workers import CacheToggleArgs
from pressluft.contexts.sites.events import EnvironmentCacheChanged
from pressluft.events import Meta, append
from pressluft.runtime import Runtime
from tests.support.nodes import blocked_node, event_and_job_counts
from tests.test_sites import _active_site

META = Meta(actor="test:cache")


async def _job(client: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    return dict((await client.get(f"/api/jobs/{job_id}")).json())


async def _env(client: httpx.AsyncClient, env_id: str) -> dict[str, object]:
    return dict((await client.get(f"/api/environments/{env_id}")).json())


@pytest.mark.spec("CCH-1")
async def test_the_toggle_takes_one_flag_or_more_and_changes_only_those(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, env_id = await _active_site(client, runtime, "acme")
    url = f"/api/environments/{env_id}/cache"
    before = await event_and_job_counts(runtime)
    for body in ({}, {"page_cache": True}, {"fastcgi_cache_enabled": None},
                 {"fastcgi_cache_enabled": "false"}):  # fmt: skip
        reply = await client.patch(url, json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["code"] == "bad_request" and reply.json()["message"], reply.json()
    assert await event_and_job_counts(runtime) == before
    reply = await client.patch(url, json={"fastcgi_cache_enabled": False})
    assert reply.status_code == 202, reply.text
    job = await _job(client, reply.json()["job_id"])
    assert (job["job_type"], job["environment_id"]) == ("env_cache_toggle", env_id)
    assert job["payload"] == {"fastcgi_cache_enabled": False}  # only the flag given
    # The flags change when the job has applied them, not when it is queued.
    env = await _env(client, env_id)
    assert (env["fastcgi_cache_enabled"], env["redis_cache_enabled"]) == (True, True)
    # What the job records when it succeeded: only that flag changes.
    event = EnvironmentCacheChanged(
        environment_id=env_id, job_id=str(job["id"]), fastcgi_cache_enabled=False
    )
    await runtime.db.write(lambda tx: append(tx, f"environment:{env_id}", None, [event], META))
    env = await _env(client, env_id)
    assert (env["fastcgi_cache_enabled"], env["redis_cache_enabled"]) == (False, True)
    # Both flags at once are one job too.
    both = await client.patch(
        url, json={"fastcgi_cache_enabled": True, "redis_cache_enabled": False}
    )
    assert both.status_code == 202, both.text
    payload = (await _job(client, both.json()["job_id"]))["payload"]
    assert payload == {"fastcgi_cache_enabled": True, "redis_cache_enabled": False}
    # The worker decodes what the command queued.
    assert msgspec.convert(payload, CacheToggleArgs) == CacheToggleArgs(
        fastcgi_cache_enabled=True, redis_cache_enabled=False
    )
    purge = await client.post(f"/api/environments/{env_id}/cache/purge")
    assert purge.status_code == 202, purge.text  # reference scenario 36: purge → 202


@pytest.mark.spec("CCH-2")
async def test_only_an_active_environment_takes_a_toggle_or_a_purge(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await blocked_node(runtime)
    reply = await client.post("/api/sites", json={"name": "New", "slug": "new", "node_id": node_id})
    creating = reply.json()["environment_id"]
    before = await event_and_job_counts(runtime)
    for method, path, body in (
        ("PATCH", "cache", {"fastcgi_cache_enabled": False}),
        ("POST", "cache/purge", {}),
    ):
        answer = await client.request(method, f"/api/environments/{creating}/{path}", json=body)
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "environment_not_active"
        assert answer.json()["details"]["status"] == "creating"
        unknown = await client.request(
            method, "/api/environments/00000000-0000-4000-8000-000000000000/" + path, json=body
        )
        assert unknown.status_code == 404, unknown.text
    assert await event_and_job_counts(runtime) == before


@pytest.mark.spec("CCH-3")
async def test_a_purge_takes_everything_or_urls_of_the_environment(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, env_id = await _active_site(client, runtime, "acme")
    preview = str((await _env(client, env_id))["preview_url"]).rstrip("/")
    url = f"/api/environments/{env_id}/cache/purge"
    for body in (None, {}, {"urls": []}):
        reply = await client.post(url, json=body) if body is not None else await client.post(url)
        assert reply.status_code == 202, (body, reply.text)
        job = await _job(client, reply.json()["job_id"])
        assert (job["job_type"], job["payload"]) == ("cache_purge", {"urls": []})
    before = await event_and_job_counts(runtime)
    for bad in (
        "/hello-world/",
        "ftp://x.example/",
        "http://other.example/a",
        "https://",
        "http://[x/",
    ):
        reply = await client.post(url, json={"urls": [f"{preview}/", bad]})
        assert reply.status_code == 400, (bad, reply.text)
        assert reply.json()["code"] == "bad_request"
        assert bad in reply.json()["message"], reply.json()
    assert (await client.post(url, json={"urls": "x"})).status_code == 400
    assert (await client.post(url, json={"urls": [preview] * 101})).status_code == 400
    assert (await client.post(url, json={"purge": True})).status_code == 400
    assert await event_and_job_counts(runtime) == before
    pages = [f"{preview}/hello-world/", f"{preview}/?p=1", f"{preview}/hello-world/"]
    reply = await client.post(url, json={"urls": pages})
    assert reply.status_code == 202, reply.text
    job = await _job(client, reply.json()["job_id"])
    assert job["payload"] == {"urls": pages[:2]}  # each URL once


@pytest.mark.spec("CCH-10")
async def test_the_site_page_has_the_cache_buttons(
    session: httpx.AsyncClient, runtime: Runtime
) -> None:
    site_id, env_id = await _active_site(session, runtime, "acme")
    page = (await session.get(f"/sites/{site_id}")).text
    assert '<section id="section-cache"' in page
    section = (await session.get(f"/sites/{site_id}/sections/cache")).text
    assert f'data-url="/api/environments/{env_id}/cache"' in section
    bodies = [json.loads(html.unescape(b)) for b in re.findall(r"data-body='([^']*)'", section)]
    assert bodies == [{"fastcgi_cache_enabled": False}, {"redis_cache_enabled": False}]
    assert f'data-url="/api/environments/{env_id}/cache/purge"' in section
    assert "Page cache off" in section and "Purge page cache" in section
    # The button's request is the API's (the helper sends data-body as JSON).
    reply = await session.patch(
        f"/api/environments/{env_id}/cache",
        json=bodies[0],
        headers={"Idempotency-Key": "dashboard-cache-1"},
    )
    assert reply.status_code == 202, reply.text
    # A site without an active environment offers no buttons.
    node_id = await blocked_node(runtime)
    other = await session.post("/api/sites", json={"name": "B", "slug": "b", "node_id": node_id})
    section = (await session.get(f"/sites/{other.json()['site_id']}/sections/cache")).text
    assert "data-method" not in section
