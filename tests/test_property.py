"""Property: random command sequences keep the log, the chain and the projections consistent.

Each example runs a fresh daemon runtime (real SQLite file) and sends a random
sequence of PATCH /api/settings requests — valid, invalid (bad JSON shapes,
bad hostnames, rule violations) and concurrent groups that carry the same,
possibly stale, `If-Match`. Afterwards: the chain verifies, a replay into a
scratch database equals the live tables, and every acknowledged change is in
the log at the version its response reported.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pressluft.app import create_asgi
from pressluft.clock import FrozenClock
from pressluft.config import resolve
from pressluft.db.connection import open_sync
from pressluft.events import verify_chain
from pressluft.features import verify_replay
from pressluft.runtime import Runtime
from tests.conftest import make_token

HOSTS = ["a.example.com", "b.example.org", "Mixed.Case.Example.NET", "x.y.z.example.io"]
BAD_HOSTS = ["not a host", "10.0.0.1", "-bad.example.com", "localhost", ""]
CREDENTIALS = {
    "rfc2136": {"server": "ns1.example.com", "tsig_key_name": "k", "tsig_secret": "czNjcmV0"},
    "cloudflare": {"api_token": "tok"},
}

hostname = st.sampled_from(HOSTS) | st.sampled_from(BAD_HOSTS) | st.none()
# A certbot plugin name without an adapter (refused like any unknown provider).
provider = st.sampled_from([*CREDENTIALS, "godaddy", "hetzner"]) | st.none()
credentials = st.sampled_from(list(CREDENTIALS.values())) | st.just({"wrong_key": "x"}) | st.none()
patch_body = st.fixed_dictionaries(
    {},
    optional={
        "control_plane_domain": hostname,
        "preview_domain": hostname,
        "dns01_provider": provider,
        "dns01_credentials": credentials,
        "unexpected": st.integers(),
    },
)
single = st.tuples(st.just("single"), patch_body, st.booleans())
group = st.tuples(st.just("group"), st.lists(patch_body, min_size=2, max_size=6), st.booleans())
commands = st.lists(single | group, min_size=1, max_size=12)


async def _scenario(data_dir: Path, plan: list[tuple[Any, ...]]) -> None:
    config, _ = resolve("serve", {"data_dir": str(data_dir)}, environ={})
    runtime = Runtime(config, FrozenClock())
    await runtime.start()
    acknowledged: list[tuple[int, dict[str, Any]]] = []
    transport = httpx.ASGITransport(app=create_asgi(runtime))
    try:
        token = await make_token(runtime, ["admin"])
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers
        ) as http:

            async def send(body: dict[str, Any], if_match: str | None) -> None:
                headers = {"If-Match": if_match} if if_match else {}
                before = (await http.get("/api/settings")).json()["version"]
                reply = await http.patch("/api/settings", json=body, headers=headers)
                assert reply.status_code in (200, 400, 409, 422), reply.text
                if reply.status_code == 200:
                    after = reply.json()["version"]
                    if after != before:
                        acknowledged.append((after, body))
                else:
                    assert set(reply.json()) <= {"code", "message", "details"}

            for kind, payload, conditional in plan:
                etag = (await http.get("/api/settings")).headers["etag"] if conditional else None
                if kind == "single":
                    await send(payload, etag)
                else:
                    # Concurrent requests sharing one (soon stale) If-Match.
                    await asyncio.gather(*(send(body, etag) for body in payload))
            page = (
                await http.get("/api/events", params={"limit": 1000, "stream": "settings"})
            ).json()
            total = (await http.get("/api/metrics")).json()["events_total"]
    finally:
        await runtime.stop()

    by_version = {e["stream_version"]: e for e in page["items"]}
    assert len(by_version) == len(page["items"])
    for version, body in acknowledged:
        event = by_version.get(version)
        assert event is not None, f"acknowledged change at version {version} missing"
        for field in ("control_plane_domain", "preview_domain", "dns01_provider"):
            if field in event["data"] and field in body and isinstance(body[field], str):
                assert event["data"][field] == body[field].lower()
    conn = open_sync(config.database_path, "reader")
    try:
        conn.execute("BEGIN")
        assert verify_chain(conn).ok
        conn.execute("COMMIT")
        replay = verify_replay(conn, "2026-01-01T00:00:00.000000Z")
        assert replay.ok, replay.differences
        assert replay.events == total
    finally:
        conn.close()
    assert not any("sec_" in msgspec.json.encode(body).decode() for _, body in acknowledged)


@pytest.mark.spec("EVT-14")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=commands)
def test_random_command_sequences_stay_consistent(plan: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory(prefix="pressluft-prop-") as tmp:
        asyncio.run(_scenario(Path(tmp) / "data", plan))
