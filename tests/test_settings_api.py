"""`/api/settings`: reading, changing, validation, sealed credentials, conditional updates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pressluft.runtime import Runtime

#: RFC 2136 credentials; the TSIG secret is base64 of b"very-secret-value-123".
RFC2136 = {
    "server": "ns1.example.com",
    "tsig_key_name": "pressluft",
    "tsig_secret": "dmVyeS1zZWNyZXQtdmFsdWUtMTIz",
}


async def _events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The settings stream's events (the fixtures' token and user events are elsewhere)."""
    page = (await client.get("/api/events", params={"limit": 1000, "stream": "settings"})).json()
    return page["items"]  # type: ignore[no-any-return]


def _runtime(client: httpx.AsyncClient) -> Runtime:
    return client.app_runtime  # type: ignore[attr-defined,no-any-return]


@pytest.mark.spec("SET-1")
async def test_fresh_settings_are_empty(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/settings")
    assert response.status_code == 200
    assert response.headers["etag"] == '"0"'
    assert response.json() == {
        "control_plane_domain": None,
        "preview_domain": None,
        "dns01_provider": None,
        "dns01_credentials_configured": False,
        "version": 0,
        "updated_at": None,
    }


@pytest.mark.spec("SET-2")
async def test_a_change_appends_one_event_with_only_the_changed_fields(
    client: httpx.AsyncClient,
) -> None:
    response = await client.patch(
        "/api/settings", json={"control_plane_domain": "Panel.Example.COM"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["control_plane_domain"] == "panel.example.com"
    assert body["version"] == 1 and response.headers["etag"] == '"1"'
    assert body["updated_at"] == "2026-01-01T00:00:00.000000Z"  # the frozen clock
    [event] = await _events(client)
    assert event["type"] == "settings.changed" and event["stream"] == "settings"
    assert event["data"] == {"control_plane_domain": "panel.example.com"}
    assert event["meta"]["actor"].startswith("token:")
    again = await client.get("/api/settings")
    assert again.json() == body


@pytest.mark.spec("SET-3")
async def test_a_no_op_change_appends_nothing(client: httpx.AsyncClient) -> None:
    await client.patch("/api/settings", json={"control_plane_domain": "a.example.com"})
    response = await client.patch(
        "/api/settings", json={"control_plane_domain": "A.example.com", "preview_domain": None}
    )
    assert response.status_code == 200 and response.json()["version"] == 1
    assert len(await _events(client)) == 1


@pytest.mark.spec("SET-4")
async def test_a_preview_domain_needs_dns01(client: httpx.AsyncClient) -> None:
    response = await client.patch("/api/settings", json={"preview_domain": "preview.example.com"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["details"]["errors"][0]["field"] == "preview_domain"
    assert "hint" in body["details"]
    assert await _events(client) == []


@pytest.mark.spec("SET-5")
async def test_credentials_are_sealed_and_never_returned(
    client: httpx.AsyncClient, data_dir: Any
) -> None:
    response = await client.patch(
        "/api/settings",
        json={
            "preview_domain": "preview.example.com",
            "dns01_provider": "rfc2136",
            "dns01_credentials": RFC2136,
        },
    )
    assert response.status_code == 200
    assert response.json()["dns01_credentials_configured"] is True
    [event] = await _events(client)
    ref = event["data"]["dns01_credentials_ref"]
    assert ref.startswith("sec_")
    secret = RFC2136["tsig_secret"]
    bodies = [
        response.text,
        (await client.get("/api/settings")).text,
        (await client.get("/api/events")).text,
        (await client.get("/settings")).text,
    ]
    assert all(secret not in b for b in bodies)
    runtime = _runtime(client)
    await runtime.db.checkpoint()
    for path in data_dir.glob("pressluft.db*"):
        assert secret.encode() not in path.read_bytes(), path.name
    opened = await runtime.db.read(lambda c: runtime.vault.open(c, ref))
    assert secret.encode() in opened


@pytest.mark.spec("SET-6")
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        (
            {"dns01_provider": "rfc2136", "dns01_credentials": {"server": "x"}},
            "dns01_credentials",
        ),
        (
            {"dns01_provider": "rfc2136", "dns01_credentials": {**RFC2136, "tsig_secret": "!!"}},
            "dns01_credentials",
        ),
        (
            {"dns01_provider": "cloudflare", "dns01_credentials": {"api_token": "t", "x": "y"}},
            "dns01_credentials",
        ),
        ({"dns01_credentials": {"api_token": "x"}}, "dns01_credentials"),
    ],
)
async def test_credential_rules(
    client: httpx.AsyncClient, patch: dict[str, Any], field: str
) -> None:
    response = await client.patch("/api/settings", json=patch)
    assert response.status_code == 422
    assert response.json()["details"]["errors"][0]["field"] == field
    assert await _events(client) == []


@pytest.mark.spec("SET-6")
async def test_provider_change_needs_credentials_and_clearing_deletes_the_secret(
    client: httpx.AsyncClient,
) -> None:
    await client.patch(
        "/api/settings", json={"dns01_provider": "rfc2136", "dns01_credentials": RFC2136}
    )
    switch = await client.patch("/api/settings", json={"dns01_provider": "cloudflare"})
    assert switch.status_code == 422
    assert "cloudflare" in switch.json()["details"]["hint"]
    [event] = await _events(client)
    ref = event["data"]["dns01_credentials_ref"]
    runtime = _runtime(client)
    count = "SELECT count(*) FROM secrets"
    assert await runtime.db.read(lambda c: c.execute(count).fetchone()[0]) == 1
    cleared = await client.patch("/api/settings", json={"dns01_provider": None})
    assert cleared.status_code == 200
    assert cleared.json()["dns01_credentials_configured"] is False
    last = (await _events(client))[-1]
    assert last["data"] == {"dns01_provider": None, "dns01_credentials_ref": None}
    assert await runtime.db.read(lambda c: c.execute(count).fetchone()[0]) == 0
    assert ref not in (await client.get("/api/settings")).text


@pytest.mark.spec("SET-6")
async def test_identical_credentials_are_not_resealed(client: httpx.AsyncClient) -> None:
    patch = {"dns01_provider": "rfc2136", "dns01_credentials": RFC2136}
    await client.patch("/api/settings", json=patch)
    again = await client.patch("/api/settings", json=patch)
    assert again.status_code == 200 and again.json()["version"] == 1
    assert len(await _events(client)) == 1


@pytest.mark.spec("SET-7")
async def test_if_match_makes_changes_conditional(client: httpx.AsyncClient) -> None:
    first = await client.patch("/api/settings", json={"control_plane_domain": "a.example.com"})
    etag = first.headers["etag"]
    ok = await client.patch(
        "/api/settings", json={"control_plane_domain": "b.example.com"}, headers={"If-Match": etag}
    )
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = await client.patch(
        "/api/settings", json={"control_plane_domain": "c.example.com"}, headers={"If-Match": etag}
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "conflict"
    assert stale.json()["details"]["actual_version"] == 2
    for malformed in ("v2", '"2', "2"):
        bad = await client.patch(
            "/api/settings",
            json={"control_plane_domain": "c.example.com"},
            headers={"If-Match": malformed},
        )
        assert bad.status_code == 400, malformed
    weak = await client.patch(
        "/api/settings",
        json={"control_plane_domain": "c.example.com"},
        headers={"If-Match": 'W/"2"'},
    )
    assert weak.status_code == 409  # RFC 9110: weak tags never match If-Match
    assert (await client.get("/api/settings")).json()["control_plane_domain"] == "b.example.com"
    assert len(await _events(client)) == 2


@pytest.mark.spec("SET-8")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"control_plane_domain": "not a host"}, "control_plane_domain"),
        ({"control_plane_domain": "10.0.0.1"}, "control_plane_domain"),
        ({"control_plane_domain": "localhost"}, "control_plane_domain"),
        ({"dns01_provider": "godaddy"}, "dns01_provider"),
        ({"dns01_credentials": {"Bad-Key": "x"}}, "dns01_credentials"),
    ],
)
async def test_schema_level_rejects(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.patch("/api/settings", json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["code"] == "bad_request"
    if field != "body":
        assert payload["details"]["errors"][0]["field"] == field
    assert await _events(client) == []


@pytest.mark.spec("SET-2")
async def test_settings_change_field_by_field_over_several_requests(
    client: httpx.AsyncClient,
) -> None:
    dns = {"dns01_provider": "cloudflare", "dns01_credentials": {"api_token": "tok"}}
    assert (await client.patch("/api/settings", json=dns)).status_code == 200
    first = await client.patch("/api/settings", json={"preview_domain": "preview.example.com"})
    assert first.status_code == 200, first.text
    again = await client.patch(
        "/api/settings", json={"preview_domain": "p2.example.com", "dns01_provider": "cloudflare"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["preview_domain"] == "p2.example.com"
    assert again.json()["version"] == 3
    cleared = await client.patch("/api/settings", json={"preview_domain": None})
    assert cleared.status_code == 200
    assert cleared.json()["dns01_credentials_configured"] is True


@pytest.mark.spec("SET-6")
async def test_unknown_credential_keys_are_rejected(client: httpx.AsyncClient) -> None:
    reply = await client.patch(
        "/api/settings",
        json={
            "dns01_provider": "cloudflare",
            "dns01_credentials": {"api_token": "t", "extra_key": "x"},
        },
    )
    assert reply.status_code == 422
    assert "extra_key" in reply.json()["message"]
    assert await _events(client) == []


@pytest.mark.spec("SET-4")
async def test_the_control_plane_may_not_live_under_the_preview_wildcard(
    client: httpx.AsyncClient,
) -> None:
    dns = {"dns01_provider": "cloudflare", "dns01_credentials": {"api_token": "tok"}}
    await client.patch("/api/settings", json={**dns, "preview_domain": "preview.example.com"})
    reply = await client.patch(
        "/api/settings", json={"control_plane_domain": "panel.preview.example.com"}
    )
    assert reply.status_code == 422
    assert reply.json()["details"]["errors"][0]["field"] == "control_plane_domain"


@pytest.mark.spec("SET-5")
async def test_credentials_sealed_under_a_lost_key_can_be_replaced(
    client: httpx.AsyncClient,
) -> None:
    from pressluft.vault import Vault

    runtime = _runtime(client)
    patch = {"dns01_provider": "rfc2136", "dns01_credentials": RFC2136}
    await client.patch("/api/settings", json=patch)
    runtime._vault = Vault(b"\x01" * 32)  # as if the key file had been replaced
    reply = await client.patch("/api/settings", json=patch)
    assert reply.status_code == 200, reply.text
    assert reply.json()["version"] == 2  # re-sealed under the current key
