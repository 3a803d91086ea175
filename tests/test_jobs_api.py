"""The jobs API against the contract: list, detail, cancel, retry, logs, diagnostics, idempotency."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from pressluft.clock import FrozenClock
from pressluft.contexts.operations.jobs import follow_log
from pressluft.events import Meta
from pressluft.jobs.context import LocalPort
from pressluft.jobs.queue import JobSpec, enqueue
from pressluft.runtime import Runtime
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, contract_client, make_token
from tests.support.jobs import job, until, until_ended
from tests.support.workers import fn_worker

SITE = "00000000-0000-4000-8000-00000000000a"
NODE = "00000000-0000-4000-8000-000000000001"


async def _post_job(client: httpx.AsyncClient, **body: object) -> str:
    reply = await client.post("/api/diagnostics/jobs", json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["job_id"])


def _event_ids(text: str) -> list[int]:
    return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]


@pytest.mark.spec("JOB-2", "JOB-20", "JOB-29")
async def test_diagnostic_job_is_accepted_and_its_detail_shows_every_attempt(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    job_id = await _post_job(client, job_type="sleep", lines=3, site_id=SITE, node_id=NODE)
    await until_ended(runtime, job_id)
    detail = (await client.get(f"/api/jobs/{job_id}")).json()
    assert detail["status"] == "succeeded"
    assert (detail["site_id"], detail["node_id"]) == (SITE, NODE)
    assert detail["payload"] == {"seconds": 0.0, "lines": 3, "outcome": "succeed"}
    assert [a["outcome"] for a in detail["attempts"]] == ["succeeded"]
    assert detail["lease"] is None
    missing = await client.get(f"/api/jobs/{uuid.uuid4()}")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert (await client.get("/api/jobs/not-a-uuid")).status_code == 404


@pytest.mark.spec("JOB-20")
async def test_a_running_job_shows_its_lease(client: httpx.AsyncClient, runtime: Runtime) -> None:
    job_id = await _post_job(client, job_type="sleep", seconds=600)
    await until(lambda: _running(runtime, job_id))
    detail = (await client.get(f"/api/jobs/{job_id}")).json()
    assert detail["lease"]["locked_by"] == runtime.workers.worker_id
    assert detail["attempts"][0]["outcome"] is None
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).json()["status"] == "cancelled"


async def _running(runtime: Runtime, job_id: str) -> bool:
    return (await job(runtime, job_id)).status == "running"


@pytest.mark.spec("JOB-29")
@pytest.mark.parametrize(
    "body",
    [
        {"job_type": "reboot"},
        {"job_type": "sleep", "seconds": -1},
        {"job_type": "sleep", "seconds": 3601},
        {"job_type": "sleep", "lines": 100_001},
        {"job_type": "sleep", "outcome": "explode"},
        {"job_type": "noop", "site_id": "not-a-uuid"},
        {"job_type": "noop", "max_attempts": 0},
        {"job_type": "noop", "timeout_seconds": 0},
        {"job_type": "noop", "extra": 1},
        {"job_type": "noop", "outcome": "fail_fatal"},  # noop would have ignored it
        {"job_type": "noop", "seconds": 0},
        {},
    ],
)
async def test_bad_diagnostic_requests_are_400_and_enqueue_nothing(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    reply = await client.post("/api/diagnostics/jobs", json=body)
    assert (reply.status_code, reply.json()["code"]) == (400, "bad_request")
    assert (await client.get("/api/jobs")).json()["items"] == []


@pytest.mark.spec("JOB-29")
async def test_noop_names_the_sleep_fields_it_would_ignore(client: httpx.AsyncClient) -> None:
    body = {"job_type": "noop", "seconds": 5, "lines": 3, "outcome": "fail_retryable"}
    reply = await client.post("/api/diagnostics/jobs", json=body)
    assert reply.status_code == 400, reply.text
    message = "only for job_type sleep (noop ends at once and succeeds)"
    assert reply.json()["details"]["errors"] == [
        {"field": name, "message": message, "in": "body"}
        for name in ("seconds", "lines", "outcome")
    ]
    assert (await client.get("/api/jobs")).json()["items"] == []


@pytest.mark.spec("JOB-29", "API-3")
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("seconds", "1e3", "float"),  # was coerced: a 1000-second job ran
        ("lines", "5", "int"),
        ("max_attempts", "2", "int"),
        ("timeout_seconds", "60", "int"),
        ("lines", 5.0, "int"),
    ],
)
async def test_a_number_sent_as_text_is_400_and_enqueues_nothing(
    client: httpx.AsyncClient, runtime: Runtime, field: str, value: object, expected: str
) -> None:
    events = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone())
    reply = await client.post("/api/diagnostics/jobs", json={"job_type": "sleep", field: value})
    assert reply.status_code == 400, reply.text
    got = type(value).__name__
    message = f"Expected `{expected}`, got `{got}`"
    assert reply.json() == {
        "code": "bad_request",
        "message": f"invalid request: {field}: {message}",
        "details": {"errors": [{"field": field, "message": message, "in": "body"}]},
    }
    assert (await client.get("/api/jobs")).json()["items"] == []
    after = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone())
    assert after == events


@pytest.mark.spec("JOB-29")
async def test_diagnostics_and_job_control_are_admin_only(runtime: Runtime) -> None:
    for scope in ("read", "write"):
        token = await make_token(runtime, [scope], name=scope)
        async with contract_client(runtime, {"Authorization": f"Bearer {token}"}) as http:
            reply = await http.post("/api/diagnostics/jobs", json={"job_type": "noop"})
            assert (reply.status_code, reply.json()["code"]) == (403, "forbidden")
            some = f"/api/jobs/{uuid.uuid4()}"
            assert (await http.post(some + "/cancel")).status_code == 403
            assert (await http.post(some + "/retry")).status_code == 403
            assert (await http.get("/api/jobs")).status_code == 200


@pytest.mark.spec("JOB-21")
async def test_list_filters_and_pages_newest_first(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    runtime.workers.slots = 0  # keep everything queued
    ids = [await _post_job(client, job_type="noop", site_id=SITE) for _ in range(3)]
    ids += [await _post_job(client, job_type="sleep", node_id=NODE) for _ in range(2)]
    page = (await client.get("/api/jobs", params={"limit": 2})).json()
    assert [j["id"] for j in page["items"]] == ids[::-1][:2]
    assert page["has_more"]
    rest = (await client.get("/api/jobs", params={"before": page["next_before"]})).json()
    assert [j["id"] for j in rest["items"]] == ids[::-1][2:]
    assert not rest["has_more"] and rest["next_before"] is None
    by_site = (await client.get("/api/jobs", params={"site_id": SITE})).json()["items"]
    assert {j["id"] for j in by_site} == set(ids[:3])
    by_node = (await client.get("/api/jobs", params={"node_id": NODE})).json()["items"]
    assert {j["id"] for j in by_node} == set(ids[3:])
    by_type = (await client.get("/api/jobs", params={"job_type": "sleep"})).json()["items"]
    assert {j["id"] for j in by_type} == set(ids[3:])
    queued = (await client.get("/api/jobs", params={"status": "queued"})).json()["items"]
    assert len(queued) == 5
    none = (await client.get("/api/jobs", params={"status": "failed"})).json()["items"]
    assert none == []
    for bad in (
        {"status": "stuck"},
        {"site_id": "x"},
        {"before": "0"},
        {"before": "null"},
        {"limit": "0"},
        {"job_type": "Bad Type"},
    ):
        reply = await client.get("/api/jobs", params=bad)
        assert (reply.status_code, reply.json()["code"]) == (400, "bad_request"), bad


@pytest.mark.spec("JOB-13", "JOB-15")
async def test_cancel_a_queued_job_then_cancelling_again_is_409(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    runtime.workers.slots = 0
    job_id = await _post_job(client, job_type="noop")
    reply = await client.post(f"/api/jobs/{job_id}/cancel")
    assert reply.status_code == 200
    assert reply.json() == {"success": True, "status": "cancelled", "job_id": job_id}
    again = await client.post(f"/api/jobs/{job_id}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "job_not_cancellable")
    assert again.json()["details"]["status"] == "cancelled"
    missing = await client.post(f"/api/jobs/{uuid.uuid4()}/cancel")
    assert missing.status_code == 404


@pytest.mark.spec("JOB-14")
async def test_cancel_a_running_job_answers_once_it_is_cancelled(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    job_id = await _post_job(client, job_type="sleep", seconds=600, lines=600)
    await until(lambda: _running(runtime, job_id))
    reply = await client.post(f"/api/jobs/{job_id}/cancel")
    assert reply.json()["status"] == "cancelled"
    detail = (await client.get(f"/api/jobs/{job_id}")).json()
    assert detail["status"] == "cancelled"
    assert detail["cancel_requested_at"] is not None


@pytest.mark.spec("JOB-14")
async def test_a_job_that_finishes_before_it_stops_is_answered_with_its_end(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    release = asyncio.Event()

    async def stubborn(ctx: LocalPort) -> None:  # does not look at its cancellation
        await release.wait()

    runtime.jobs.register(fn_worker("stubborn", stubborn))
    job_id = await runtime.db.write(
        lambda tx: enqueue(tx, JobSpec(job_type="stubborn"), Meta(actor="test"))
    )
    await until(lambda: _running(runtime, job_id))
    answer = asyncio.ensure_future(client.post(f"/api/jobs/{job_id}/cancel"))
    await until(lambda: _cancel_requested(runtime, job_id))
    release.set()
    reply = await answer
    assert reply.json() == {"success": True, "status": "succeeded", "job_id": job_id}
    assert (await client.get(f"/api/jobs/{job_id}")).json()["status"] == "succeeded"


async def _cancel_requested(runtime: Runtime, job_id: str) -> bool:
    return (await job(runtime, job_id)).cancel_requested_at is not None


@pytest.mark.spec("JOB-19")
async def test_retry_a_failed_job_as_a_new_job(client: httpx.AsyncClient, runtime: Runtime) -> None:
    job_id = await _post_job(client, job_type="sleep", outcome="fail_fatal")
    await until_ended(runtime, job_id)
    reply = await client.post(f"/api/jobs/{job_id}/retry")
    assert reply.status_code == 202
    new_id = reply.json()["job_id"]
    assert new_id != job_id
    new = (await client.get(f"/api/jobs/{new_id}")).json()
    assert new["retry_of"] == job_id
    await until_ended(runtime, new_id)
    old = (await client.get(f"/api/jobs/{job_id}")).json()
    assert (old["status"], old["retried_by"], new["retried_by"]) == ("failed", new_id, None)
    # The old job's own history names the retry and who asked for it.
    audit = (
        await client.get("/api/audit", params={"resource_type": "job", "resource_id": job_id})
    ).json()
    by_action = {e["action"]: e for e in audit["items"]}
    retried, enqueued = by_action["job.retried"], by_action["job.enqueued"]
    assert retried["result"] == "succeeded"
    assert retried["actor"] == enqueued["actor"]  # the operator's token, like the first request
    assert retried["correlation_id"] != enqueued["correlation_id"]  # a request of its own
    # Retried once: a second retry (a double click, a second operator) names the first.
    racing = await asyncio.gather(*(client.post(f"/api/jobs/{job_id}/retry") for _ in range(5)))
    assert [r.status_code for r in racing] == [409] * 5
    assert racing[0].json()["details"]["retried_by"] == new_id
    again = await client.post(f"/api/jobs/{new_id}/retry")  # the retry can be retried in turn
    assert again.status_code == 202
    ok = await _post_job(client, job_type="noop")
    await until_ended(runtime, ok)
    refused = await client.post(f"/api/jobs/{ok}/retry")
    assert (refused.status_code, refused.json()["code"]) == (409, "conflict")


@pytest.mark.spec("JOB-22")
async def test_log_pages_tail_and_bad_parameters(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    job_id = await _post_job(client, job_type="sleep", lines=20)
    await until_ended(runtime, job_id)
    full = (await client.get(f"/api/jobs/{job_id}/log")).json()
    assert full["job_status"] == "succeeded"
    texts = [line["text"] for line in full["lines"] if line["stream"] == "stdout"]
    assert texts == [f"line {i}/20" for i in range(1, 21)]
    seqs = [line["seq"] for line in full["lines"]]
    assert seqs == list(range(1, len(seqs) + 1))
    page = (await client.get(f"/api/jobs/{job_id}/log", params={"after": 5, "limit": 4})).json()
    assert [line["seq"] for line in page["lines"]] == [6, 7, 8, 9]
    assert page["next_after"] == 9
    tail = (await client.get(f"/api/jobs/{job_id}/log", params={"tail": 3})).json()
    assert [line["seq"] for line in tail["lines"]] == seqs[-3:]
    end = (await client.get(f"/api/jobs/{job_id}/log", params={"after": seqs[-1]})).json()
    assert end["lines"] == [] and end["next_after"] == seqs[-1]
    bad_params: list[dict[str, int]] = [
        {"tail": 0},
        {"tail": 1001},
        {"tail": 3, "after": 1},
        {"tail": 3, "limit": 1},  # was answered with 3 lines, the limit ignored
        {"after": -1},
        {"limit": 0},
    ]
    for bad in bad_params:
        reply = await client.get(f"/api/jobs/{job_id}/log", params=bad)
        assert reply.status_code == 400, bad
    assert (await client.get(f"/api/jobs/{uuid.uuid4()}/log")).status_code == 404
    # Not a job id, however long: not found (a 65-character id was a 400).
    assert (await client.get(f"/api/jobs/{'x' * 100}")).status_code == 404


@pytest.mark.spec("JOB-23")
async def test_log_stream_sends_lines_resumes_and_ends(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    job_id = await _post_job(client, job_type="sleep", lines=5)
    await until_ended(runtime, job_id)
    reply = await client.get(f"/api/jobs/{job_id}/log/stream")
    assert reply.headers["content-type"].startswith("text/event-stream")
    ids = _event_ids(reply.text)
    assert ids == list(range(1, len(ids) + 1))
    assert "event: end" in reply.text
    assert '"status":"succeeded"' in reply.text.split("event: end", 1)[1]
    resumed = await client.get(
        f"/api/jobs/{job_id}/log/stream", headers={"Last-Event-ID": str(ids[-3])}
    )
    assert _event_ids(resumed.text) == ids[-2:]
    bad = await client.get(f"/api/jobs/{job_id}/log/stream", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400
    assert (await client.get(f"/api/jobs/{uuid.uuid4()}/log/stream")).status_code == 404


@pytest.mark.spec("JOB-23")
async def test_following_a_running_job_gets_lines_as_they_come(runtime: Runtime) -> None:
    from tests.support.jobs import submit

    job_id = await submit(runtime, job_type="sleep", seconds=0.5, lines=5)
    seen: list[int] = []
    final: str | None = None
    keepalives = 0
    async for item in follow_log(
        runtime.db, runtime.job_changes, runtime.stopping, job_id, after=0, keepalive=0.05
    ):
        if item is None:
            keepalives += 1
        elif isinstance(item, str):
            final = item
        else:
            seen.append(item.seq)
    assert final == "succeeded"
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 8
    assert keepalives >= 1


@pytest.mark.spec("JOB-25", "JOB-26")
async def test_idempotency_key_replays_the_first_answer_and_refuses_another_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    runtime.workers.slots = 0
    key = {"Idempotency-Key": "create-1"}
    first = await client.post("/api/diagnostics/jobs", json={"job_type": "noop"}, headers=key)
    again = await client.post("/api/diagnostics/jobs", json={"job_type": "noop"}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert len((await client.get("/api/jobs")).json()["items"]) == 1
    other = await client.post("/api/diagnostics/jobs", json={"job_type": "sleep"}, headers=key)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert len((await client.get("/api/jobs")).json()["items"]) == 1
    # Cancel and retry take keys too.
    job_id = first.json()["job_id"]
    k2 = {"Idempotency-Key": "cancel-1"}
    c1 = await client.post(f"/api/jobs/{job_id}/cancel", headers=k2)
    c2 = await client.post(f"/api/jobs/{job_id}/cancel", headers=k2)
    assert c1.json() == c2.json() and c2.status_code == 200
    k3 = {"Idempotency-Key": "retry-1"}
    r1 = await client.post(f"/api/jobs/{job_id}/retry", headers=k3)
    r2 = await client.post(f"/api/jobs/{job_id}/retry", headers=k3)
    assert r1.json() == r2.json() and r2.status_code == 202
    assert len((await client.get("/api/jobs")).json()["items"]) == 2
    for bad in (b"", b"x" * 256, "héllo".encode(), b"a b"):
        reply = await client.post(
            "/api/diagnostics/jobs", json={"job_type": "noop"}, headers={"Idempotency-Key": bad}
        )
        assert reply.status_code == 400, bad


@pytest.mark.spec("JOB-26")
async def test_an_idempotency_key_given_twice_or_where_none_is_taken_is_400(
    client: httpx.AsyncClient, runtime: Runtime, session: httpx.AsyncClient
) -> None:
    """Two keys: which one would count? A key on magic login: each call issues a
    new one-time URL, so the client's retry would not be the safe one it thinks."""
    before = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone())
    twice = await client.post(
        "/api/diagnostics/jobs",
        json={"job_type": "noop"},
        headers=[("Idempotency-Key", "d1"), ("Idempotency-Key", "d2")],
    )
    assert twice.status_code == 400
    assert twice.json()["details"]["errors"][0]["message"] == "given more than once"
    some_env = "00000000-0000-4000-8000-000000000001"
    for path in (f"/api/environments/{some_env}/magic-login", "/api/logout"):
        reply = await client.post(path, headers={"Idempotency-Key": "k"})
        if path == "/api/logout":  # a token is refused first: who asks, then what
            assert reply.status_code == 401
            continue
        assert reply.status_code == 400, reply.text
        assert reply.json()["details"]["errors"] == [
            {"field": "Idempotency-Key", "message": "not taken by this operation", "in": "header"}
        ]
    # A dashboard session's logout and a login: refused with the key, and nothing
    # happens — the session still works, no new session is opened.
    before = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone())
    logout = await session.post("/api/logout", headers={"Idempotency-Key": "k"})
    assert logout.status_code == 400, logout.text
    assert logout.json()["details"]["errors"][0]["field"] == "Idempotency-Key"
    assert (await session.get("/api/me")).status_code == 200
    login = await session.post(
        "/api/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"Idempotency-Key": "k"},
    )
    assert login.status_code == 400, login.text
    assert login.json()["details"]["errors"][0]["field"] == "Idempotency-Key"
    after = await runtime.db.read(lambda c: c.execute("SELECT count(*) FROM events").fetchone())
    assert after == before


@pytest.mark.spec("JOB-25")
async def test_idempotency_keys_on_settings_and_tokens(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "tok-1"}
    body = {"name": "ci", "scopes": ["read"]}
    first = await client.post("/api/tokens", json=body, headers=key)
    again = await client.post("/api/tokens", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["token"] == again.json()["token"]  # the secret again, to its owner
    tokens = (await client.get("/api/tokens")).json()["items"]
    assert [t["name"] for t in tokens].count("ci") == 1
    patch = {"control_plane_domain": "cp.example.com"}
    s1 = await client.patch("/api/settings", json=patch, headers={"Idempotency-Key": "s-1"})
    s2 = await client.patch("/api/settings", json=patch, headers={"Idempotency-Key": "s-1"})
    assert s1.json() == s2.json()
    events = (await client.get("/api/events", params={"type": "settings.changed"})).json()
    assert len(events["items"]) == 1


@pytest.mark.spec("JOB-33")
async def test_audit_shows_accepted_retrying_and_the_final_result(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    reply = await client.post(
        "/api/diagnostics/jobs",
        json={"job_type": "sleep", "outcome": "fail_retryable", "max_attempts": 2},
        headers={"X-Request-ID": "req-audit-1"},
    )
    job_id = reply.json()["job_id"]
    correlation = reply.headers["x-request-id"]

    async def queued_again() -> bool:
        view = await job(runtime, job_id)
        return view.status == "queued" and view.attempt_count == 1

    await until(queued_again)
    clock.advance(60)
    runtime.workers.wake()
    await until_ended(runtime, job_id)
    audit = (
        await client.get("/api/audit", params={"resource_type": "job", "resource_id": job_id})
    ).json()["items"]
    results = [(e["action"], e["result"]) for e in reversed(audit)]
    assert results[0] == ("job.enqueued", "accepted")
    assert ("job.retry_scheduled", "retrying") in results
    assert results[-1] == ("job.failed", "failed")
    assert {e["correlation_id"] for e in audit} == {correlation}


@pytest.mark.spec("JOB-32")
async def test_metrics_show_jobs_queue_latency_and_durations(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    job_id = await _post_job(client, job_type="noop")
    await until_ended(runtime, job_id)
    runtime.workers.slots = 0
    await asyncio.sleep(0)
    await _post_job(client, job_type="noop")
    reply = await client.get("/metrics")
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.text
    assert 'pressluft_jobs{job_type="noop",status="succeeded"} 1.0' in text
    assert 'pressluft_jobs{job_type="noop",status="queued"} 1.0' in text
    # Zeros stay series: every status of every job type the daemon knows.
    assert 'pressluft_jobs{job_type="noop",status="running"} 0.0' in text
    assert 'pressluft_jobs{job_type="sleep",status="failed"} 0.0' in text
    assert "pressluft_job_queue_depth 1.0" in text
    assert 'pressluft_job_attempts_total{job_type="noop",status="succeeded"} 1.0' in text
    assert "pressluft_job_claim_latency_seconds_count 1.0" in text
    assert 'pressluft_job_duration_seconds_count{job_type="noop"} 1.0' in text
    assert "pressluft_job_rescues_total 0.0" in text
    assert "pressluft_job_lease_rejections_total 0.0" in text
