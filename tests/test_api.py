"""The HTTP layer: envelopes for bad input, internal errors, correlation ids, headers, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from pressluft.api.contract import contract_bytes, load_contract
from pressluft.api.middleware import SECURITY_HEADERS, request_context_middleware
from pressluft.app import create_app
from pressluft.errors import ServiceUnavailable
from pressluft.jobs import worker as worker_module
from pressluft.metrics import Metrics
from pressluft.runtime import Runtime
from pressluft.supervisor import Service


def _runtime(client: httpx.AsyncClient) -> Runtime:
    return client.app_runtime  # type: ignore[attr-defined,no-any-return]


async def _event_count(client: httpx.AsyncClient) -> int:
    return int((await client.get("/api/metrics")).json()["events_total"])


@pytest.mark.spec("API-3")
@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "PATCH",
            "/api/settings",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/api/settings",
            {"json": {"control_plane_domain": "a.example.com", "colour": "red"}},
            400,
            "bad_request",
        ),
        ("PATCH", "/api/settings", {"json": {"control_plane_domain": 42}}, 400, "bad_request"),
        ("PATCH", "/api/settings", {"json": ["control_plane_domain"]}, 400, "bad_request"),
        (
            "PATCH",
            "/api/settings",
            {"content": b"", "headers": {"content-type": "application/json"}},
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/api/settings",
            {
                "content": b"control_plane_domain=a.example.com",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
        ),
        (
            "PATCH",
            "/api/settings",
            {"json": {"control_plane_domain": "a" * 2_000_000 + ".com"}},
            413,
            "payload_too_large",
        ),
        ("DELETE", "/api/settings", {}, 405, "method_not_allowed"),
        (
            "PUT",
            "/api/settings",
            {"content": b"x", "headers": {"content-type": "text/plain"}},
            405,
            "method_not_allowed",
        ),
        (  # an optional body, still JSON only
            "POST",
            "/api/nodes/00000000-0000-4000-8000-000000000001/host-key/repin",
            {"content": b"x", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/api/nothing-here",
            {"content": b"x", "headers": {"content-type": "text/plain"}},
            404,
            "not_found",
        ),
        ("POST", "/api/events", {"json": {}}, 405, "method_not_allowed"),
        ("GET", "/api/nothing-here", {}, 404, "not_found"),
        ("GET", "/no/such/page", {}, 404, "not_found"),
        ("GET", "/api/events", {"params": {"limit": "many"}}, 400, "bad_request"),
        ("GET", "/api/events", {"params": {"after": -1}}, 400, "bad_request"),
        ("GET", "/api/events/stream", {"headers": {"Last-Event-ID": "banana"}}, 400, "bad_request"),
    ],
)
async def test_bad_input_gets_the_envelope_and_changes_nothing(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = await _event_count(client)
    response = await client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert set(body) <= {"code", "message", "details"} and body["message"]
    if status == 405:
        assert response.headers["allow"]
        assert method not in response.headers["allow"]
    assert await _event_count(client) == before


@pytest.mark.spec("API-3")
@pytest.mark.parametrize("ident", ["abc", "a" * 36, "a" * 65, "a" * 3000])
async def test_a_path_id_that_is_no_id_is_404_on_every_operation(
    client: httpx.AsyncClient, ident: str
) -> None:
    """Whatever its length, an id that names nothing is 404 — on every operation
    with an id in its path, taken from the contract (over-long ids were 400 for
    nodes, sites and tokens but 404 for jobs)."""
    import re

    import yaml

    before = await _event_count(client)
    contract = yaml.safe_load(contract_bytes())
    checked = 0
    for path, operations in contract["paths"].items():
        if "{" not in path or path.endswith("/stream"):
            continue
        for method in set(operations) & {"get", "post", "put", "patch", "delete"}:
            url = re.sub(r"\{[^}]+\}", ident, path)
            body = None
            if path.endswith("/environments") and method == "post":  # the id is what is wrong
                body = {
                    "name": "Staging",
                    "slug": "staging",
                    "type": "staging",
                    "source_environment_id": "00000000-0000-4000-8000-000000000001",
                }
            elif path.endswith("/cache") and method == "patch":
                body = {"fastcgi_cache_enabled": True}
            elif path.endswith("/domains") and method == "post":
                body = {"hostname": "shop.example.com"}
            elif path.endswith("/backups") and method == "post":
                body = {"scope": "db"}
            elif path.endswith("/restore") and method == "post":
                body = {"backup_id": "00000000-0000-4000-8000-000000000001"}
            elif path.endswith("/backup-schedule") and method == "put":
                body = {"every_hours": 24}
            elif path.endswith("/backup-target") and method == "put":  # 404 before the probe
                body = {"endpoint": "http://127.0.0.1:9", "bucket": "bucket",
                        "access_key_id": "k", "secret_access_key": "s"}  # fmt: skip
            params = {"object": "db.sql"} if path.endswith("/download") else None
            response = await client.request(method.upper(), url, json=body, params=params)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["code"] == "not_found"
            assert len(response.json()["message"]) <= 500  # the id is quoted, not all of it
            checked += 1
    assert checked >= 20
    assert await _event_count(client) == before


@pytest.mark.spec("API-3")
async def test_a_body_sent_to_an_operation_that_takes_none_is_400(
    client: httpx.AsyncClient,
) -> None:
    """`{"reason": …}` on a cancel was dropped without a word; every operation
    whose contract declares no body now refuses one (and takes the request
    without it)."""
    import re

    import yaml

    before = await _event_count(client)
    contract = yaml.safe_load(contract_bytes())
    some_id = "00000000-0000-4000-8000-000000000001"
    refused = []
    for path, operations in contract["paths"].items():
        for method in sorted(set(operations) & {"post", "put", "patch", "delete"}):
            if "requestBody" in operations[method] or path == "/api/logout":
                continue  # logout: a token is refused first (who asks, then what)
            url = re.sub(r"\{[^}]+\}", some_id, path)
            response = await client.request(method.upper(), url, json={"reason": "because"})
            assert response.status_code == 400, (method, path, response.text)
            assert response.json()["details"]["errors"] == [
                {"field": "body", "message": "not taken here", "in": "body"}
            ]
            refused.append(path)
            if "{" in path:  # without the body it gets through: there is no such thing
                without = await client.request(method.upper(), url)
                assert without.status_code == 404, (method, path, without.text)
    assert "/api/jobs/{job_id}/cancel" in refused and len(refused) >= 10

    # A chunked body of unknown length counts only if it has bytes (some clients
    # send an empty one).
    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    cancel = f"/api/jobs/{some_id}/cancel"
    json_type = {"content-type": "application/json"}
    empty = await client.post(cancel, content=chunks(), headers=json_type)
    assert (empty.request.headers["transfer-encoding"], empty.status_code) == ("chunked", 404)
    some = await client.post(cancel, content=chunks(b"{", b"}"), headers=json_type)
    assert some.status_code == 400
    # A large one is the same 400, not a 413 the operation does not declare (it was
    # read whole against the body size limit).
    limit = client.app_runtime.config.max_body_bytes  # type: ignore[attr-defined]
    large = await client.post(cancel, content=chunks(*[b" " * 65536] * (limit // 65536 + 2)))
    assert (large.request.headers["transfer-encoding"], large.status_code) == ("chunked", 400)
    assert large.json()["details"]["errors"][0]["field"] == "body"
    # Nor is a body of another type a 415 here: the operation takes none at all.
    text = await client.post(cancel, content=b"stop", headers={"content-type": "text/plain"})
    assert text.status_code == 400 and text.json()["details"]["errors"][0]["field"] == "body"
    assert await _event_count(client) == before


@pytest.mark.spec("API-3")
@pytest.mark.parametrize(
    ("method", "target", "raw", "key"),
    [
        (
            "POST",
            "/api/diagnostics/jobs",
            b'{"job_type": "sleep", "seconds": 1, "seconds": 600}',
            "seconds",
        ),
        ("POST", "/api/diagnostics/jobs", b'{"job_type": "noop", "job_type": "sleep"}', "job_type"),
        (  # nested: named by its path
            "PATCH",
            "/api/settings",
            b'{"dns01_credentials": {"api_token": "a", "api_token": "b"}}',
            "dns01_credentials.api_token",
        ),
    ],
)
async def test_a_key_given_twice_in_a_body_is_400_naming_it(
    client: httpx.AsyncClient, method: str, target: str, raw: bytes, key: str
) -> None:
    """Which of the two counts is the parser's guess (msgspec took the last)."""
    before = await _event_count(client)
    response = await client.request(
        method, target, content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["details"]["errors"] == [
        {"field": key, "message": "key given more than once", "in": "body"}
    ]
    assert await _event_count(client) == before


@pytest.mark.spec("API-3")
@pytest.mark.parametrize("raw", [b"{not json", b'{"job_type": "noop"', b'{"job_type": "noop"} x'])
async def test_a_body_that_is_not_json_is_400_whatever_the_fault(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    before = await _event_count(client)
    response = await client.post(
        "/api/diagnostics/jobs", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": "bad_request",
        "message": "the request body is not valid JSON",
    }
    assert await _event_count(client) == before


@pytest.mark.spec("API-3")
@pytest.mark.parametrize(
    ("method", "target", "name", "message"),
    [
        (
            "GET",
            "/api/jobs?type=noop",
            "type",
            "not a parameter of this operation (did you mean job_type? it takes before, "
            "job_type, limit, node_id, site_id, status)",
        ),
        ("GET", "/api/jobs?limit=5&limit=6", "limit", "given more than once"),
        ("GET", "/api/jobs?limit=1.0", "limit", "expected an integer, written in digits"),
        ("GET", "/api/events?after=", "after", "expected an integer, written in digits"),
        (
            "GET",
            "/api/settings?verbose=1",
            "verbose",
            "not a parameter of this operation, which takes none",
        ),
        (
            "POST",
            "/api/diagnostics/jobs?dry_run=1",
            "dry_run",
            "not a parameter of this operation, which takes none",
        ),
    ],
)
async def test_a_query_parameter_not_as_declared_is_400_naming_it(
    client: httpx.AsyncClient, method: str, target: str, name: str, message: str
) -> None:
    before = await _event_count(client)
    response = await client.request(method, target, json={"job_type": "noop"})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": "bad_request",
        "message": f"invalid request: {name}: {message}",
        "details": {"errors": [{"field": name, "message": message, "in": "query"}]},
    }
    assert await _event_count(client) == before


@pytest.mark.spec("API-3")
async def test_an_error_quotes_no_text_longer_than_500_characters(
    client: httpx.AsyncClient,
) -> None:
    name = "x" * 3000
    response = await client.get("/api/jobs", params={name: "1"})
    assert response.status_code == 400, response.text[:200]
    body = response.json()
    [error] = body["details"]["errors"]
    assert error["field"] == "x" * 499 + "…" and body["message"].endswith("…")
    assert len(response.text) < 2000


@pytest.mark.spec("API-3")
async def test_the_health_probe_ignores_a_cache_buster(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health", params={"_": "1732270000"})
    assert response.status_code == 200, response.text


@pytest.mark.spec("API-4")
async def test_an_internal_error_names_only_the_correlation_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = _runtime(client)
    raw = sqlite3.connect(runtime.config.database_path)
    raw.execute("ALTER TABLE settings RENAME TO settings_gone")
    raw.commit()
    raw.close()
    response = await client.get("/api/settings", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json() == {
        "code": "internal_error",
        "message": "internal error; the log has details under this correlation id",
        "details": {"correlation_id": "boom-1"},
    }
    assert "settings" not in response.text
    logged = [r for r in caplog.records if getattr(r, "correlation_id", None) == "boom-1"]
    assert any(r.exc_info for r in logged), "the cause was not logged under the correlation id"


@pytest.mark.spec("API-6")
async def test_the_contract_is_served_and_documented(
    client: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    document = await client.get("/api/openapi.yaml")
    assert document.status_code == 200
    assert document.content == contract_bytes()
    # The same document as JSON, for tools that read only JSON; public like the YAML.
    as_json = await anon.get("/api/openapi.json")
    assert as_json.status_code == 200
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == load_contract()
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    for operation_id in (
        "getHealth",
        "getSettings",
        "updateSettings",
        "listEvents",
        "streamEvents",
    ):
        assert f'id="{operation_id}"' in docs.text


@pytest.mark.spec("API-8")
async def test_correlation_ids_are_echoed_and_recorded(client: httpx.AsyncClient) -> None:
    sent = await client.patch(
        "/api/settings",
        json={"control_plane_domain": "a.example.com"},
        headers={"X-Request-ID": "req-42"},
    )
    assert sent.headers["x-request-id"] == "req-42"
    generated = await client.patch("/api/settings", json={"control_plane_domain": "b.example.com"})
    minted = generated.headers["x-request-id"]
    assert len(minted) == 32
    hostile = await client.get("/api/settings", headers={"X-Request-ID": "x" * 200})
    assert hostile.headers["x-request-id"] != "x" * 200
    items = (await client.get("/api/events", params={"stream": "settings"})).json()["items"]
    assert [e["meta"]["correlation_id"] for e in items] == ["req-42", minted]


@pytest.mark.spec("API-9")
@pytest.mark.parametrize(
    "path", ["/api/health", "/", "/api/nothing", "/static/app.css", "/metrics"]
)
async def test_security_headers_on_every_response(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    for name, value in SECURITY_HEADERS:
        assert response.headers[name.decode()] == value.decode()


@pytest.mark.spec("DMN-10")
async def test_health_reports_every_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "disk", "services", "ansible", "playbooks"}


@pytest.mark.spec("DMN-10")
async def test_health_is_503_when_a_required_check_fails(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pressluft.contexts.operations.health.find_ansible_playbook", lambda: None)
    response = await client.get("/api/health")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["details"]["checks"]["ansible"]["status"] == "fail"
    assert body["details"]["checks"]["database"]["status"] == "ok"


@pytest.mark.spec("DMN-12")
async def test_a_crashed_service_is_restarted_and_reported(client: httpx.AsyncClient) -> None:
    runtime = _runtime(client)
    runtime.supervisor._initial_backoff = 0.05
    runs = 0
    release = asyncio.Event()

    async def flaky(stopping: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            await release.wait()
            raise RuntimeError("worker fell over")
        await stopping.wait()

    runtime.supervisor.start(Service("flaky", flaky))
    await asyncio.sleep(0)
    assert (await client.get("/api/health")).status_code == 200
    release.set()
    await asyncio.sleep(0.01)
    down = await client.get("/api/health")
    assert down.status_code == 503
    assert "flaky" in down.json()["details"]["checks"]["services"]["detail"]
    for _ in range(100):
        await asyncio.sleep(0.02)
        if runtime.supervisor.states["flaky"].running:
            break
    state = runtime.supervisor.states["flaky"]
    assert state.running and state.restarts == 1
    assert state.last_error == "RuntimeError: worker fell over"
    assert (await client.get("/api/health")).status_code == 200


@pytest.mark.spec("DMN-12", "JOB-39")
async def test_the_workers_restarted_after_a_crash_run_jobs_again(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = _runtime(client)
    runtime.supervisor._initial_backoff = 0.05
    real_claim = worker_module.claim
    crashes = 0

    def claim_once_broken(*args: object, **kwargs: object) -> object:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError("claim fell over")
        return real_claim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(worker_module, "claim", claim_once_broken)
    runtime.workers.wake()
    for _ in range(200):
        await asyncio.sleep(0.02)
        state = runtime.supervisor.states["workers"]
        if state.restarts and state.running:
            break
    assert runtime.supervisor.states["workers"].restarts == 1
    assert (
        'pressluft_service_restarts_total{service="workers"} 1.0'
        in (await client.get("/metrics")).text
    )
    # The restarted pool runs what is enqueued now (it used to claim jobs into
    # `running` and start nothing: its stop flag survived the crash).
    reply = await client.post("/api/diagnostics/jobs", json={"job_type": "noop"})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    status = ""
    for _ in range(500):
        status = (await client.get(f"/api/jobs/{job_id}")).json()["status"]
        if status == "succeeded":
            break
        await asyncio.sleep(0.02)
    assert status == "succeeded"


@pytest.mark.spec("DMN-12")
async def test_a_service_that_keeps_crashing_is_reported_as_crash_looping(
    client: httpx.AsyncClient,
) -> None:
    runtime = _runtime(client)
    runtime.supervisor._initial_backoff = 0.01
    runtime.supervisor._max_backoff = 0.01
    runs = 0

    async def falls_over_thrice(stopping: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs <= 3:
            raise RuntimeError(f"fell over {runs}")
        await stopping.wait()

    runtime.supervisor.start(Service("wobbly", falls_over_thrice))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if runs > 3 and runtime.supervisor.states["wobbly"].running:
            break
    down = await client.get("/api/health")
    assert down.status_code == 503
    detail = down.json()["details"]["checks"]["services"]["detail"]
    assert "crash-looping: wobbly (3 restarts)" in detail
    assert int(down.headers["Retry-After"]) >= 1


@pytest.mark.spec("DMN-12")
async def test_a_service_stopped_by_an_unwritable_database_is_no_crash_loop(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = _runtime(client)
    runtime.supervisor._initial_backoff = 0.01
    runtime.supervisor._max_backoff = 0.01
    runs = 0

    async def meets_a_full_disk_thrice(stopping: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:  # as the sqlite3 module raises it (not translated)
            full = sqlite3.OperationalError("database or disk is full")
            full.sqlite_errorcode = 13  # SQLITE_FULL
            raise full
        if runs <= 3:
            raise ServiceUnavailable("the database could not confirm the change")
        await stopping.wait()

    caplog.set_level(logging.WARNING, logger="pressluft.services")
    runtime.supervisor.start(Service("sweeper-like", meets_a_full_disk_thrice))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if runs > 3 and runtime.supervisor.states["sweeper-like"].running:
            break
    state = runtime.supervisor.states["sweeper-like"]
    assert state.running and state.restarts == 3
    assert (await client.get("/api/health")).status_code == 200  # the disk is back
    ours = [r for r in caplog.records if getattr(r, "service", None) == "sweeper-like"]
    assert ours and not any(r.exc_info for r in ours)


@pytest.mark.spec("DMN-11")
async def test_prometheus_and_json_metrics(client: httpx.AsyncClient) -> None:
    await asyncio.gather(
        *(
            client.patch("/api/settings", json={"control_plane_domain": f"h{i}.example.com"})
            for i in range(8)
        )
    )
    text = (await client.get("/metrics")).text
    assert (
        'pressluft_http_requests_total{method="PATCH",route="/api/settings",status="200"} 8.0'
        in text
    )
    assert (
        'pressluft_http_request_duration_seconds_bucket{le="0.005",method="PATCH",route="/api/settings"}'
        in text
    )
    assert 'pressluft_events_appended_total{type="settings.changed"}' in text
    assert "pressluft_group_commit_batch_size_count" in text
    assert "pressluft_event_log_head_seq" in text
    counters = (await client.get("/api/metrics")).json()
    assert counters["events_total"] >= 1
    assert msgspec.json.decode(msgspec.json.encode(counters)) == counters


# -- a client gone does not hide a server failure --------------------------------------


async def _counted(app: Any, metrics: Metrics) -> tuple[str, list[str]]:
    """Run `POST /api/login` through the request-context middleware around `app`, the
    client sending 9 of 100 bytes and hanging up; the status counted, the answer's
    status lines."""
    wrapped = request_context_middleware(metrics)(app)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "method": "POST",
        "path": "/api/login",
        "raw_path": b"/api/login",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"email":', "more_body": True}
    ]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(str(message["status"]))

    with contextlib.suppress(RuntimeError):
        await wrapped(scope, receive, send)
    counted = [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith('pressluft_http_requests_total{method="POST"')
    ]
    assert len(counted) == 1, counted
    return counted[0].split('status="')[1].split('"')[0], sent


async def _read_to_the_end(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@pytest.mark.spec("API-12")
async def test_a_server_failure_counts_as_one_though_the_client_left(runtime: Runtime) -> None:
    """499 is for the client-gone answer (or none); a 500 the server answered, or an
    exception out of the app, stays a 500 in the metrics (and the access line)."""

    async def answers_500(scope: Any, receive: Any, send: Any) -> None:
        await _read_to_the_end(receive)
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def raises(scope: Any, receive: Any, send: Any) -> None:
        await _read_to_the_end(receive)
        raise RuntimeError("the database fell over")

    async def answers_nothing(scope: Any, receive: Any, send: Any) -> None:
        await _read_to_the_end(receive)

    assert await _counted(answers_500, Metrics()) == ("500", ["500"])
    assert await _counted(raises, Metrics()) == ("500", [])
    assert await _counted(answers_nothing, Metrics()) == ("499", [])
    # The real app's answer to a body cut short: the client's doing.
    assert await _counted(create_app(runtime), Metrics()) == ("499", ["400"])
