"""`/api/events` paging and filters, and the live-follow service under the SSE route."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from pressluft.contexts.operations.feed import follow_events
from pressluft.events.log import (
    INDEXED_ACTOR_TERM,
    INDEXED_TYPE_TERM,
    UNINDEXED_TYPES,
    WORKER_ACTOR_PREFIX,
    actor_filter,
    read_last_rows,
    type_filter,
)
from pressluft.runtime import Runtime
from tests.support.jobs import until_ended


async def _patch(client: httpx.AsyncClient, n: int) -> None:
    for i in range(n):
        reply = await client.patch(
            "/api/settings", json={"control_plane_domain": f"p{i}.example.com"}
        )
        assert reply.status_code == 200


@pytest.mark.spec("EVT-12")
async def test_paging_walks_the_log_in_order(client: httpx.AsyncClient) -> None:
    await _patch(client, 6)  # 7 events with the fixture's token.created
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        page = (await client.get("/api/events", params={"after": after, "limit": 3})).json()
        seen += [e["seq"] for e in page["items"]]
        after = page["next_after"]
        pages += 1
        if not page["has_more"]:
            break
    assert seen == list(range(1, 8))
    assert pages == 3
    empty = (await client.get("/api/events", params={"after": 7})).json()
    assert empty == {"items": [], "next_after": 7, "has_more": False}


@pytest.mark.spec("EVT-12")
async def test_filters_by_stream_and_type(client: httpx.AsyncClient) -> None:
    await _patch(client, 3)
    by_type = (await client.get("/api/events", params={"type": "settings.changed"})).json()
    assert len(by_type["items"]) == 3
    tokens = (await client.get("/api/events", params={"type": "token.created"})).json()
    assert len(tokens["items"]) == 1
    assert (await client.get("/api/events", params={"type": "node.created"})).json()["items"] == []
    by_stream = (await client.get("/api/events", params={"stream": "settings", "after": 2})).json()
    assert [e["stream_version"] for e in by_stream["items"]] == [2, 3]
    assert (await client.get("/api/events", params={"stream": "site:x"})).json()["items"] == []


@pytest.mark.spec("EVT-12")
@pytest.mark.parametrize("limit", [0, 1001, -5])
async def test_limit_out_of_range_is_400(client: httpx.AsyncClient, limit: int) -> None:
    reply = await client.get("/api/events", params={"limit": limit})
    assert reply.status_code == 400
    assert reply.json()["details"]["errors"][0]["field"] == "limit"


@pytest.mark.spec("EVT-13")
async def test_follow_delivers_backlog_then_live_events_then_keepalives(
    client: httpx.AsyncClient,
) -> None:
    runtime: Runtime = client.app_runtime  # type: ignore[attr-defined]
    await _patch(client, 2)
    stopping = asyncio.Event()
    received: list[int | None] = []

    async def consume() -> None:
        async for item in follow_events(
            runtime.db,
            runtime.notifier,
            stopping,
            after=1,
            type_="settings.changed",
            keepalive=0.05,
        ):
            received.append(None if item is None else item.seq)
            if received.count(None) >= 1 and 3 in received:
                stopping.set()

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    await _patch(client, 1)  # seq 3, delivered live through the commit notification
    await asyncio.wait_for(consumer, timeout=5)
    assert received[:2] == [2, 3]
    assert None in received


@pytest.mark.spec("EVT-13")
async def test_follow_skips_filtered_events_without_spinning(client: httpx.AsyncClient) -> None:
    runtime: Runtime = client.app_runtime  # type: ignore[attr-defined]
    await _patch(client, 3)
    stopping = asyncio.Event()
    items: list[object] = []

    async def consume() -> None:
        async for item in follow_events(
            runtime.db, runtime.notifier, stopping, stream="elsewhere", keepalive=0.05
        ):
            items.append(item)
            if len(items) >= 2:
                stopping.set()

    await asyncio.wait_for(consume(), timeout=5)
    assert items == [None, None]  # only keep-alives: nothing matched, nothing re-read in a loop


@pytest.mark.spec("EVT-13")
async def test_a_consumer_that_goes_away_leaves_no_task_behind(client: httpx.AsyncClient) -> None:
    runtime: Runtime = client.app_runtime  # type: ignore[attr-defined]

    def waiters() -> list[asyncio.Task[object]]:
        return [
            t
            for t in asyncio.all_tasks()
            if "wait_beyond" in t.get_coro().__qualname__  # type: ignore[union-attr]
        ]

    async def consume() -> None:
        async for _ in follow_events(runtime.db, runtime.notifier, runtime.stopping, keepalive=30):
            pass

    consumers = [asyncio.create_task(consume()) for _ in range(20)]
    for _ in range(1000):  # each reads the log once before it waits (a busy machine is slow)
        await asyncio.sleep(0.01)
        if len(waiters()) == 20:
            break
    assert len(waiters()) == 20
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    await asyncio.sleep(0)
    assert waiters() == []


@pytest.mark.spec("EVT-13")
@pytest.mark.parametrize("value", [b"\xb2", b"12a", b"-1", b"9" * 19])
async def test_last_event_id_must_be_ascii_digits(client: httpx.AsyncClient, value: bytes) -> None:
    reply = await client.get("/api/events/stream", headers={"Last-Event-ID": value})
    assert reply.status_code == 400
    assert reply.json()["details"]["errors"][0]["field"] == "Last-Event-ID"


@pytest.mark.spec("EVT-18")
async def test_type_and_actor_filters_are_complete_whether_indexed_or_scanned(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Frequent job events (scanned) among rare ones (indexed): jobs that succeed,
    # one that fails for good (job.failed, indexed); settings changes by the client.
    await _patch(client, 2)
    outcomes = ["succeed"] * 5 + ["fail_fatal"]
    job_ids = []
    for i, outcome in enumerate(outcomes):
        reply = await client.post(
            "/api/diagnostics/jobs",
            json={"job_type": "sleep", "outcome": outcome,
                  "site_id": f"00000000-0000-4000-8000-00000000000{i}"},
        )  # fmt: skip
        job_ids.append(reply.json()["job_id"])
    for job_id in job_ids:
        await until_ended(runtime, job_id)
    await _patch(client, 1)

    everything = (await client.get("/api/events", params={"limit": 1000})).json()["items"]
    types = {e["type"] for e in everything}
    assert types >= set(UNINDEXED_TYPES) and "job.failed" in types and "settings.changed" in types
    for type_ in sorted(types | {"node.created"}):
        expected = [e["seq"] for e in everything if e["type"] == type_]
        page = (await client.get("/api/events", params={"type": type_, "limit": 1000})).json()
        assert [e["seq"] for e in page["items"]] == expected, type_
        last = await runtime.db.read(lambda c, t=type_: read_last_rows(c, 2, type_=t))
        assert [r.seq for r in last] == expected[-2:], type_

    audit = (await client.get("/api/audit", params={"limit": 500})).json()["items"]
    actors = {entry["actor"] for entry in audit}
    assert any(a.startswith(WORKER_ACTOR_PREFIX) for a in actors) and len(actors) >= 2
    for actor in sorted(actors | {"user:nobody"}):
        expected = [entry["seq"] for entry in audit if entry["actor"] == actor]
        page = (await client.get("/api/audit", params={"actor": actor, "limit": 500})).json()
        assert [entry["seq"] for entry in page["items"]] == expected, actor


@pytest.mark.spec("EVT-18")
async def test_rare_types_and_actors_are_found_through_the_partial_indexes(
    runtime: Runtime,
) -> None:
    def plans(conn: sqlite3.Connection) -> dict[str, str]:
        found = {}
        for label, (term, values) in {
            "rare type": type_filter("settings.changed"),
            "frequent type": type_filter("job.claimed"),
            "person": actor_filter("user:00000000-0000-4000-8000-000000000001"),
            "worker": actor_filter(WORKER_ACTOR_PREFIX + "w1"),
        }.items():
            rows = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT seq FROM events WHERE {term} ORDER BY seq DESC LIMIT 5",
                values,
            ).fetchall()
            found[label] = " ".join(str(r[3]) for r in rows)
        return found

    found = await runtime.db.read(plans)
    schema = dict(
        await runtime.db.read(
            lambda c: c.execute(
                "SELECT name, sql FROM sqlite_schema WHERE name IN"
                " ('events_by_type', 'events_by_actor')"
            ).fetchall()
        )
    )
    assert schema["events_by_type"].endswith(f"WHERE {INDEXED_TYPE_TERM}")
    assert schema["events_by_actor"].endswith(f"WHERE {INDEXED_ACTOR_TERM}")
    assert "INDEX events_by_type" in found["rare type"]
    assert "INDEX events_by_actor" in found["person"]
    assert "INDEX" not in found["frequent type"] and "INDEX" not in found["worker"]


@pytest.mark.spec("EVT-20")
def test_event_views_hide_what_only_the_daemon_needs(tmp_path: Path) -> None:
    """Token hashes and lease tokens read "redacted" in the page and the stream, for
    a read token as for an admin; the log keeps them and still verifies."""
    import time

    import msgspec

    from tests.support.daemon import Daemon, run_cli

    hidden = ("token_hash", "lease_token")
    with Daemon(tmp_path, "serve") as daemon:
        admin, reader = daemon.auth(), daemon.auth(("read",))
        with httpx.Client(base_url=daemon.url, timeout=30) as http:
            job = http.post("/api/diagnostics/jobs", json={"job_type": "noop"}, headers=admin)
            assert job.status_code == 202, job.text
            job_id = job.json()["job_id"]
            for _ in range(600):
                if http.get(f"/api/jobs/{job_id}", headers=admin).json()["status"] == "succeeded":
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the noop job did not finish")
            pages = {
                who: http.get("/api/events", params={"limit": 1000}, headers=auth).json()["items"]
                for who, auth in (("reader", reader), ("admin", admin))
            }
        streamed: list[dict[str, Any]] = []
        head = pages["reader"][-1]["seq"]
        with httpx.stream(
            "GET", daemon.url + "/api/events/stream", headers=reader, timeout=30
        ) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    streamed.append(msgspec.json.decode(line[6:]))
                    if streamed[-1]["seq"] == head:
                        break
        stored = run_cli(
            "events",
            "tail",
            "--json",
            "-n",
            "1000",
            "--data-dir",
            str(daemon.data_dir),
            env=daemon.env,
        )
        verified = run_cli("events", "verify", "--data-dir", str(daemon.data_dir), env=daemon.env)
    assert stored.returncode == 0, stored.stderr
    log = [msgspec.json.decode(line) for line in stored.stdout.splitlines()]
    secret_fields = {
        (e["seq"], field): e["data"][field]
        for e in log
        for field in hidden
        if e["data"].get(field) is not None
    }
    types = {e["type"] for e in log if any(seq == e["seq"] for seq, _ in secret_fields)}
    assert {"auth.session_started", "token.created", "job.claimed", "job.succeeded"} <= types
    assert all(value != "redacted" for value in secret_fields.values())
    for view in (pages["reader"], pages["admin"], streamed):
        assert [e["seq"] for e in view] == [e["seq"] for e in log]
        by_seq = {e["seq"]: e for e in view}
        for (seq, field), value in secret_fields.items():
            assert by_seq[seq]["data"][field] == "redacted"
            assert value not in msgspec.json.encode(view).decode()
        # Everything else is as stored, hashes included.
        for e in log:
            shown = by_seq[e["seq"]]
            assert shown["hash"] == e["hash"]
            assert {k: v for k, v in shown["data"].items() if k not in hidden} == {
                k: v for k, v in e["data"].items() if k not in hidden
            }
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "event log intact" in verified.stdout
