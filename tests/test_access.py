"""Access: login sessions, rate limits, API tokens and scopes, CSRF, the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pressluft.clock import FrozenClock
from pressluft.contexts.access.sessions import expire_sessions
from pressluft.contexts.access.tokens import TokenCreateRequest, create_token_command
from pressluft.errors import Forbidden
from pressluft.events import Meta
from pressluft.runtime import Runtime
from tests.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ORIGIN,
    contract_client,
    make_token,
    make_user,
)

LOGIN = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}


def _runtime(client: httpx.AsyncClient) -> Runtime:
    return client.app_runtime  # type: ignore[attr-defined,no-any-return]


async def _events(client: httpx.AsyncClient, type_: str) -> list[dict[str, Any]]:
    return (await client.get("/api/events", params={"type": type_, "limit": 1000})).json()["items"]  # type: ignore[no-any-return]


@pytest.mark.spec("AUTH-1")
async def test_login_sets_a_hardened_session_cookie(
    runtime: Runtime, anon: httpx.AsyncClient
) -> None:
    await make_user(runtime)
    reply = await anon.post("/api/login", json=LOGIN)
    assert reply.status_code == 200
    body = reply.json()
    assert body["success"] is True
    assert body["user"]["email"] == ADMIN_EMAIL
    assert body["expires_at"] == "2026-01-02T00:00:00.000000Z"  # frozen clock + 24 h
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith("session_token=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain HTTP here; Secure over TLS (test_daemon)
    me = await anon.get("/api/me")
    assert me.status_code == 200
    assert me.json()["kind"] == "session"
    assert me.json()["scopes"] == ["read", "write", "admin"]


@pytest.mark.spec("AUTH-2")
@pytest.mark.parametrize(
    "credentials",
    [
        {"email": ADMIN_EMAIL, "password": "wrong password!"},
        {"email": "nobody@example.com", "password": "Nope-Unknown-9"},
    ],
)
async def test_bad_credentials_are_refused_and_audited(
    runtime: Runtime,
    anon: httpx.AsyncClient,
    client: httpx.AsyncClient,
    credentials: dict[str, str],
) -> None:
    await make_user(runtime)
    reply = await anon.post("/api/login", json=credentials)
    assert reply.status_code == 401
    assert reply.json()["code"] == "unauthorized"
    assert "set-cookie" not in reply.headers
    [failed] = await _events(client, "auth.login_failed")
    assert failed["data"]["email"] == credentials["email"]
    assert credentials["password"] not in str(failed)
    audit = (await client.get("/api/audit", params={"limit": 1})).json()["items"][0]
    assert audit["action"] == "auth.login_failed"
    assert audit["result"] == "failed"


@pytest.mark.spec("AUTH-3")
@pytest.mark.parametrize(
    "body",
    [
        {"email": ADMIN_EMAIL},
        {"email": "not-an-email", "password": "x"},
        {"email": ADMIN_EMAIL, "password": "x", "remember": True},
        {"email": ADMIN_EMAIL, "password": ""},
    ],
)
async def test_malformed_login_is_400(anon: httpx.AsyncClient, body: dict[str, Any]) -> None:
    reply = await anon.post("/api/login", json=body)
    assert reply.status_code == 400
    assert reply.json()["code"] == "bad_request"


@pytest.mark.spec("AUTH-4", "AUTH-8")
async def test_expired_sessions_are_refused_and_swept_once(
    runtime: Runtime, anon: httpx.AsyncClient, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    await make_user(runtime)
    assert (await anon.post("/api/login", json=LOGIN)).status_code == 200
    clock.advance(runtime.config.session_ttl_seconds + 1)
    refused = await anon.get("/api/settings")
    assert refused.status_code == 401
    assert "log in again" in refused.json()["message"]
    assert await expire_sessions(runtime.db) == 1
    assert await expire_sessions(runtime.db) == 0
    [expired] = await _events(client, "auth.session_expired")
    assert expired["meta"]["actor"] == "system:session-sweeper"


@pytest.mark.spec("AUTH-5", "AUTH-4")
async def test_logout_ends_the_session_and_clears_the_cookie(
    runtime: Runtime, session: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    token = session.cookies["session_token"]
    reply = await session.post("/api/logout")
    assert reply.status_code == 200
    assert reply.json() == {"success": True}
    assert (
        'session_token=""' in reply.headers["set-cookie"]
        or "Max-Age=0" in reply.headers["set-cookie"]
    )
    [revoked] = await _events(client, "auth.session_revoked")
    assert revoked["data"]["reason"] == "logout"
    async with contract_client(runtime, {"Cookie": f"session_token={token}"}) as replay:
        assert (await replay.get("/api/me")).status_code == 401


@pytest.mark.spec("AUTH-6")
async def test_logging_in_again_rotates_the_session(
    session: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    old = session.cookies["session_token"]
    again = await session.post("/api/login", json=LOGIN)
    assert again.status_code == 200
    assert session.cookies["session_token"] != old
    [rotated] = await _events(client, "auth.session_revoked")
    assert rotated["data"]["reason"] == "rotated"
    assert len(await _events(client, "auth.session_started")) == 2


@pytest.mark.spec("AUTH-7")
async def test_the_eleventh_attempt_from_an_address_is_rate_limited(runtime: Runtime) -> None:
    await make_user(runtime)
    bad = {"email": ADMIN_EMAIL, "password": "guess guess guess"}
    async with contract_client(runtime, address="10.9.8.7") as attacker:
        for _ in range(10):
            assert (await attacker.post("/api/login", json=bad)).status_code == 401
        limited = await attacker.post("/api/login", json=LOGIN)
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1
    async with contract_client(runtime, address="10.1.1.1") as owner:
        assert (await owner.post("/api/login", json=LOGIN)).status_code == 200


@pytest.mark.spec("AUTH-9", "TOK-4")
async def test_introspection_for_tokens_and_sessions(
    client: httpx.AsyncClient, session: httpx.AsyncClient
) -> None:
    me = (await client.get("/api/me")).json()
    assert me["kind"] == "token"
    assert me["actor"].startswith("token:")
    assert me["token"]["name"] == "test-admin"
    assert me["user"] is None
    current = await client.get("/api/tokens/current")
    assert current.status_code == 200
    assert current.json()["scopes"] == ["admin"]
    assert current.json()["status"] == "active"
    assert (await session.get("/api/tokens/current")).status_code == 401  # not a token
    assert (await session.get("/api/me")).json()["user"]["email"] == ADMIN_EMAIL


@pytest.mark.spec("TOK-1")
async def test_a_token_secret_is_returned_once_and_stored_hashed(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/tokens", json={"name": "deploy", "scopes": ["write", "read"]})
    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("plt_")
    assert body["name"] == "deploy"
    assert body["scopes"] == ["read", "write"]
    assert secret.startswith(body["prefix"])
    listing = await client.get("/api/tokens")
    assert secret not in listing.text
    assert {t["name"] for t in listing.json()["items"]} == {"deploy", "test-admin"}
    runtime = _runtime(client)
    stored = await runtime.db.read(
        lambda c: c.execute("SELECT token_hash FROM api_tokens").fetchall()
    )
    assert all(secret not in row[0] for row in stored)
    [event] = [e for e in await _events(client, "token.created") if e["data"]["name"] == "deploy"]
    assert secret not in str(event)


@pytest.mark.spec("TOK-2")
async def test_scopes_gate_operations(runtime: Runtime) -> None:
    read = await make_token(runtime, ["read"])
    write = await make_token(runtime, ["write"])
    async with contract_client(runtime, {"Authorization": f"Bearer {read}"}) as reader:
        assert (await reader.get("/api/settings")).status_code == 200
        assert (await reader.get("/api/audit")).status_code == 200
        denied = await reader.patch("/api/settings", json={"control_plane_domain": "a.example.com"})
        assert denied.status_code == 403
        assert denied.json()["details"]["required_scope"] == "admin"
        assert (
            await reader.post("/api/tokens", json={"name": "x", "scopes": ["read"]})
        ).status_code == 403
    async with contract_client(runtime, {"Authorization": f"Bearer {write}"}) as writer:
        assert (await writer.get("/api/events")).status_code == 200  # write includes read
        assert (
            await writer.patch("/api/settings", json={"preview_domain": None})
        ).status_code == 403


@pytest.mark.spec("TOK-2")
def test_a_token_never_exceeds_its_creators_scopes() -> None:
    request = TokenCreateRequest(name="escalate", scopes=["admin"])
    with pytest.raises(Forbidden, match="creator lacks: admin"):
        create_token_command(request, ["read", "write"], Meta(actor="test"))


@pytest.mark.spec("TOK-3")
async def test_revoked_tokens_are_refused_and_revoking_is_idempotent(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await make_token(runtime, ["read"], name="doomed")
    token_id = next(
        t["id"] for t in (await client.get("/api/tokens")).json()["items"] if t["name"] == "doomed"
    )
    first = await client.delete(f"/api/tokens/{token_id}")
    assert first.status_code == 200
    assert first.json()["status"] == "revoked"
    again = await client.delete(f"/api/tokens/{token_id}")
    assert again.status_code == 200
    assert len(await _events(client, "token.revoked")) == 1
    async with contract_client(runtime, {"Authorization": f"Bearer {secret}"}) as revoked:
        refused = await revoked.get("/api/settings")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert (
        await client.delete("/api/tokens/00000000-0000-4000-8000-000000000000")
    ).status_code == 404
    assert (await client.delete("/api/tokens/not-a-uuid")).status_code == 404


@pytest.mark.spec("TOK-5", "SEC-11")
async def test_tokens_expire(
    runtime: Runtime, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    created = await client.post(
        "/api/tokens",
        json={"name": "short", "scopes": ["read"], "expires_at": "2026-01-01T00:01:00+00:00"},
    )
    assert created.status_code == 201
    assert created.json()["expires_at"] == "2026-01-01T00:01:00.000000Z"
    secret = created.json()["token"]
    async with contract_client(runtime, {"Authorization": f"Bearer {secret}"}) as short:
        assert (await short.get("/api/me")).status_code == 200
        clock.advance(61)
        assert (await short.get("/api/me")).status_code == 401
    listed = {t["name"]: t["status"] for t in (await client.get("/api/tokens")).json()["items"]}
    assert listed["short"] == "expired"
    assert [
        t["name"]
        for t in (await client.get("/api/tokens", params={"status": "expired"})).json()["items"]
    ] == ["short"]
    past = await client.post(
        "/api/tokens",
        json={"name": "late", "scopes": ["read"], "expires_at": "2025-01-01T00:00:00Z"},
    )
    assert past.status_code == 422


@pytest.mark.spec("SEC-3")
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),
        ({"Origin": "https://evil.example.com"}, 403),
        ({"Origin": "null"}, 403),
        ({"Referer": "https://evil.example.com/page"}, 403),
        ({"Origin": ORIGIN}, 200),
        ({"Referer": ORIGIN + "/settings"}, 200),
    ],
)
async def test_cookie_mutations_need_a_same_origin_request(
    runtime: Runtime, headers: dict[str, str], status: int
) -> None:
    await make_user(runtime)
    async with contract_client(runtime, {"Origin": ORIGIN}) as browser:
        assert (await browser.post("/api/login", json=LOGIN)).status_code == 200
        cookie = browser.cookies["session_token"]
    async with contract_client(runtime, {"Cookie": f"session_token={cookie}", **headers}) as page:
        reply = await page.patch("/api/settings", json={"control_plane_domain": "csrf.example.com"})
        assert reply.status_code == status, reply.text
        changed = (await page.get("/api/settings")).json()["control_plane_domain"]
        assert (changed == "csrf.example.com") == (status == 200)


@pytest.mark.spec("SEC-3")
async def test_bearer_requests_need_no_origin(client: httpx.AsyncClient) -> None:
    reply = await client.patch("/api/settings", json={"control_plane_domain": "bearer.example.com"})
    assert reply.status_code == 200


@pytest.mark.spec("AUD-1")
async def test_every_event_has_an_audit_entry_with_actor_and_correlation(
    session: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    await session.patch(
        "/api/settings",
        json={"control_plane_domain": "audited.example.com"},
        headers={"X-Request-ID": "aud-1"},
    )
    events = (await client.get("/api/events", params={"limit": 1000})).json()["items"]
    audit = (await client.get("/api/audit", params={"limit": 500})).json()["items"]
    assert sorted(e["seq"] for e in audit) == [e["seq"] for e in events]
    by_seq = {e["seq"]: e for e in audit}
    for event in events:
        entry = by_seq[event["seq"]]
        assert entry["action"] == event["type"]
        assert entry["actor"] == event["meta"]["actor"]
        assert entry["correlation_id"] == event["meta"].get("correlation_id")
    settings_entry = next(e for e in audit if e["action"] == "settings.changed")
    assert settings_entry["actor"].startswith("user:")
    assert settings_entry["resource_type"] == "settings"
    assert settings_entry["correlation_id"] == "aud-1"


@pytest.mark.spec("AUD-2")
async def test_audit_filters_and_pages(client: httpx.AsyncClient, clock: FrozenClock) -> None:
    for i in range(5):
        await client.patch("/api/settings", json={"control_plane_domain": f"a{i}.example.com"})
        clock.advance(60)
    page = (await client.get("/api/audit", params={"resource_type": "settings", "limit": 2})).json()
    assert len(page["items"]) == 2
    assert page["has_more"] is True
    seqs = [e["seq"] for e in page["items"]]
    assert seqs == sorted(seqs, reverse=True)
    older = (
        await client.get(
            "/api/audit",
            params={"resource_type": "settings", "limit": 10, "before": page["next_before"]},
        )
    ).json()
    assert len(older["items"]) == 3
    assert older["has_more"] is False
    assert older["next_before"] is None
    window = (
        await client.get(
            "/api/audit",
            params={
                "since": "2026-01-01T00:01:00Z",
                "until": "2026-01-01T00:03:00Z",
                "resource_type": "settings",
            },
        )
    ).json()
    assert len(window["items"]) == 2
    actor = page["items"][0]["actor"]
    assert all(
        e["actor"] == actor
        for e in (await client.get("/api/audit", params={"actor": actor})).json()["items"]
    )
    assert (await client.get("/api/audit", params={"actor": "user:nobody"})).json()["items"] == []
    assert (await client.get("/api/audit", params={"since": "yesterday"})).status_code == 400


@pytest.mark.spec("AUD-2", "TOK-1")
@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/audit", {"before": "null"}, "before"),
        ("/api/audit", {"before": "0"}, "before"),
        ("/api/audit", {"before": "1.5"}, "before"),
        ("/api/tokens", {"status": "null"}, "status"),
        ("/api/tokens", {"status": "ACTIVE"}, "status"),
    ],
)
async def test_optional_query_parameters_are_parsed_strictly(
    client: httpx.AsyncClient, path: str, params: dict[str, str], field: str
) -> None:
    reply = await client.get(path, params=params)
    assert reply.status_code == 400
    assert reply.json()["details"]["errors"][0]["field"] == field


@pytest.mark.spec("AUTH-12")
@pytest.mark.parametrize(
    ("next_param", "expected"),
    [
        ("/settings", "/settings"),
        ("/events?type=settings.changed", "/events?type=settings.changed"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
async def test_the_login_page_only_returns_to_same_site_paths(
    anon: httpx.AsyncClient, next_param: str, expected: str
) -> None:
    page = await anon.get("/login", params={"next": next_param})
    assert page.status_code == 200
    assert f'data-next="{expected}"' in page.text.replace("&amp;", "&")


@pytest.mark.spec("AUTH-13")
async def test_concurrent_guesses_are_counted_before_the_slow_check(runtime: Runtime) -> None:
    import asyncio

    await make_user(runtime)
    limit = runtime.config.login_attempts_per_minute * 5
    statuses: list[int] = []

    async def guess(i: int) -> None:
        async with contract_client(runtime, address=f"10.0.{i // 250}.{i % 250}") as http:
            reply = await http.post(
                "/api/login", json={"email": ADMIN_EMAIL, "password": f"guess {i}"}
            )
            statuses.append(reply.status_code)

    await asyncio.gather(*(guess(i) for i in range(80)))
    assert statuses.count(401) <= limit
    assert statuses.count(429) >= 80 - limit
    assert set(statuses) <= {401, 429}


@pytest.mark.spec("AUTH-13")
def test_ipv6_clients_are_limited_per_64_and_the_limiter_stays_small() -> None:
    from pressluft.contexts.access.ratelimit import SlidingWindow, client_key

    assert (
        client_key("2001:db8:1:2:aaaa::1")
        == client_key("2001:db8:1:2:ffff::9")
        == "2001:db8:1:2::/64"
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert client_key("10.0.0.1") == "10.0.0.1"
    assert client_key(None) == "unknown"
    clock = FrozenClock()
    window = SlidingWindow(3, 60, clock, max_keys=1000, sweep_every=100)
    for i in range(5000):
        window.hit(f"client-{i}")
        clock.advance(0.1)
    assert len(window) <= 1000
    clock.advance(61)
    window.hit("late")
    for _ in range(100):
        window.hit("late")
    assert len(window) == 1  # every stale client was forgotten


@pytest.mark.spec("AUTH-13")
async def test_waiting_password_checks_are_bounded(
    runtime: Runtime, anon: httpx.AsyncClient
) -> None:
    runtime.hasher.pending = runtime.hasher.max_pending  # as if a burst were being checked
    reply = await anon.post("/api/login", json=LOGIN)
    runtime.hasher.pending = 0
    assert reply.status_code == 429
    assert reply.json()["message"] == "too many logins in progress"


@pytest.mark.spec("SEC-6")
async def test_a_loopback_daemon_answers_only_loopback_host_names(runtime: Runtime) -> None:
    from pressluft.app import create_asgi

    transport = httpx.ASGITransport(app=create_asgi(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as raw:
        for host, status in (
            ("rebind.evil.example", 421),
            ("rebind.evil.example:8080", 421),
            ("localhost:8080", 200),
            ("127.0.0.1", 200),
            ("[::1]:8080", 200),
        ):
            reply = await raw.get("/api/health", headers={"Host": host})
            assert reply.status_code == status, host
            if status == 421:
                assert reply.json()["code"] == "misdirected_request"


@pytest.mark.spec("SEC-6")
def test_allowed_hosts_extend_the_policy() -> None:
    from pressluft.api.middleware import host_policy

    proxied = host_policy("127.0.0.1", ("panel.example.com",))
    assert proxied("panel.example.com")
    assert proxied("PANEL.example.com:443")
    assert not proxied("other.example.com")
    assert host_policy("0.0.0.0", ())("anything.example")  # noqa: S104
    assert not host_policy("0.0.0.0", ("panel.example.com",))("other.example")  # noqa: S104


@pytest.mark.spec("SEC-8")
async def test_credential_responses_are_not_cached(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await make_user(runtime)
    async with contract_client(runtime, {"Origin": ORIGIN}) as browser:
        login = await browser.post("/api/login", json=LOGIN)
        assert login.headers["cache-control"] == "no-store"
        assert (await browser.post("/api/logout")).headers["cache-control"] == "no-store"
    created = await client.post("/api/tokens", json={"name": "cached?", "scopes": ["read"]})
    assert created.headers["cache-control"] == "no-store"


@pytest.mark.spec("SEC-2")
async def test_handlers_outside_the_contract_never_slip_through_as_pages(runtime: Runtime) -> None:
    from litestar import get, post

    from pressluft.app import create_app

    @post("/settings/reset", status_code=200)
    async def form_post() -> dict[str, str]:
        return {"mutated": "yes"}

    @get("/api/unlisted")
    async def unlisted() -> dict[str, str]:
        return {"data": "leak"}

    app = create_app(runtime)
    app.register(form_post)
    app.register(unlisted)
    await make_user(runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=ORIGIN, headers={"Origin": ORIGIN}
    ) as raw:
        assert (await raw.post("/api/login", json=LOGIN)).status_code == 200
        assert (await raw.post("/settings/reset")).status_code == 403
        assert (await raw.get("/api/unlisted")).status_code == 403


@pytest.mark.spec("TOK-1", "TOK-5")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "dup", "scopes": ["read", "read"]}, "scopes"),
        ({"name": "many", "scopes": ["read", "write", "admin", "read"]}, "scopes"),
        (
            {"name": "space", "scopes": ["read"], "expires_at": "2030-01-01 00:00:00+00:00"},
            "expires_at",
        ),
        ({"name": "date", "scopes": ["read"], "expires_at": "2030-01-01"}, "expires_at"),
        ({"name": "naive", "scopes": ["read"], "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"name": " ", "scopes": ["read"]}, "name"),
    ],
)
async def test_token_requests_are_validated_like_the_contract_says(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    reply = await client.post("/api/tokens", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["details"]["errors"][0]["field"] == field


def test_rfc3339_parsing_is_strict_and_keeps_precision() -> None:
    from pressluft.clock import format_ts, parse_rfc3339

    assert format_ts(parse_rfc3339("2030-01-01T00:00:00Z")) == "2030-01-01T00:00:00.000000Z"
    assert (
        format_ts(parse_rfc3339("2030-01-01t01:00:00.123456789+01:00"))
        == "2030-01-01T00:00:00.123456Z"
    )
    for bad in ("2030-01-01", "2030-01-01T00:00", "2030-01-01 00:00:00Z", "2030-01-01T00:00:00"):
        with pytest.raises(ValueError, match="RFC 3339"):
            parse_rfc3339(bad)


@pytest.mark.spec("SEC-9")
async def test_who_asks_is_checked_before_what_the_request_looks_like(runtime: Runtime) -> None:
    """A non-JSON body to a mutation: no credentials 401, too small a scope 403
    (token or viewer session), only an authorized caller learns it is 415."""
    form = {"content": b"name=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}
    read = await make_token(runtime, ["read"])
    admin = await make_token(runtime, ["admin"])
    await make_user(runtime, "viewer@example.com", ADMIN_PASSWORD, role="viewer")
    async with contract_client(runtime) as nobody:
        assert (await nobody.post("/api/tokens", **form)).status_code == 401  # type: ignore[arg-type]
        assert (await nobody.patch("/api/settings", **form)).status_code == 401  # type: ignore[arg-type]
    async with contract_client(runtime, {"Authorization": f"Bearer {read}"}) as reader:
        reply = await reader.patch("/api/settings", **form)  # type: ignore[arg-type]
        assert (reply.status_code, reply.json()["code"]) == (403, "forbidden")
    async with contract_client(runtime, {"Origin": ORIGIN}) as viewer:
        login = {"email": "viewer@example.com", "password": ADMIN_PASSWORD}
        assert (await viewer.post("/api/login", json=login)).status_code == 200
        assert (await viewer.patch("/api/settings", **form)).status_code == 403  # type: ignore[arg-type]
    async with contract_client(runtime, {"Authorization": f"Bearer {admin}"}) as allowed:
        reply = await allowed.patch("/api/settings", **form)  # type: ignore[arg-type]
        assert (reply.status_code, reply.json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.spec("SEC-10")
@pytest.mark.parametrize("path", ["/api/settings", "/api/tokens/current", "/api/health"])
async def test_two_authorization_headers_are_refused(runtime: Runtime, path: str) -> None:
    """Which of two `Authorization` headers counts is not obvious: 400 naming it,
    as for two `Idempotency-Key` headers (the first one used to win silently)."""
    admin = await make_token(runtime, ["admin"])
    read = await make_token(runtime, ["read"])
    both = [("Authorization", f"Bearer {read}"), ("Authorization", f"Bearer {admin}")]
    async with contract_client(runtime) as raw:
        for headers in (both, both[::-1]):
            reply = await raw.get(path, headers=headers)
            assert reply.status_code == 400, reply.text
            assert reply.json()["details"]["errors"][0]["field"] == "Authorization"
        assert (await raw.get(path, headers=both[1:])).status_code == 200
        before = (await raw.get("/api/metrics", headers=both[1:])).json()["events_total"]
        reply = await raw.post(
            "/api/tokens", json={"name": "two", "scopes": ["read"]}, headers=both[::-1]
        )
        assert reply.status_code == 400
        assert (await raw.get("/api/metrics", headers=both[1:])).json()["events_total"] == before


@pytest.mark.spec("TOK-6")
@pytest.mark.parametrize(
    "name",
    [
        "abc\u202egpj.exe",  # right-to-left override: shown as "abcexe.jpg"
        "zero\u200bwidth",
        "bom\ufeff",
        "nul\x00byte",
        "line\r\nbreak",
        "tab\there",
        " padded",
        "padded ",
        "---",
        "___",
        "no\u00a0break",
        "soft\u00adhyphen",
    ],
)
async def test_token_names_follow_the_printable_name_rule(
    client: httpx.AsyncClient, name: str
) -> None:
    """The rule for site names, declared in the contract and enforced: 400 naming
    the field, and no event appended."""
    import re

    from pressluft.api.contract import load_contract

    before = (await client.get("/api/metrics")).json()["events_total"]
    reply = await client.post("/api/tokens", json={"name": name, "scopes": ["read"]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["details"]["errors"][0]["field"] == "name"
    assert (await client.get("/api/metrics")).json()["events_total"] == before
    schemas = load_contract()["components"]["schemas"]
    assert schemas["TokenCreate"]["properties"]["name"] == {
        "$ref": "#/components/schemas/PrintableName"
    }
    schema = schemas["PrintableName"]
    assert re.search(schema["pattern"], name) is None
    for good in ("deploy", "Zoë's CI token (2026)", "a b"):
        assert re.search(schema["pattern"], good)
        created = await client.post("/api/tokens", json={"name": good, "scopes": ["read"]})
        assert (created.status_code, created.json()["name"]) == (201, good)


@pytest.mark.spec("SEC-11")
async def test_a_credential_in_use_ends_at_once_when_revoked(
    runtime: Runtime, client: httpx.AsyncClient, session: httpx.AsyncClient
) -> None:
    secret = await make_token(runtime, ["read"], name="busy")
    token_id = next(
        t["id"] for t in (await client.get("/api/tokens")).json()["items"] if t["name"] == "busy"
    )
    async with contract_client(runtime, {"Authorization": f"Bearer {secret}"}) as holder:
        for _ in range(3):  # looked up once, then kept while nothing changes
            assert (await holder.get("/api/me")).status_code == 200
        assert (await client.delete(f"/api/tokens/{token_id}")).status_code == 200
        assert (await holder.get("/api/me")).status_code == 401
    cookie = session.cookies["session_token"]
    async with contract_client(runtime, {"Cookie": f"session_token={cookie}"}) as tab:
        for _ in range(3):
            assert (await tab.get("/api/me")).status_code == 200
        assert (await session.post("/api/logout")).status_code == 200
        assert (await tab.get("/api/me")).status_code == 401
