"""Each node's preview wildcard, in-process on real SQLite files: when it is asked
for (the scan, the API), what a failed order leaves, the preview URLs — the jobs stay
queued behind a diagnostic job holding the node (the wildcard really issued and
served: tests/test_preview_node.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from pressluft.clock import FrozenClock, format_ts
from pressluft.contexts.domains.commands import announce_expiring
from pressluft.contexts.domains.events import CertificateIssued
from pressluft.contexts.domains.preview_worker import PreviewCertificate
from pressluft.contexts.domains.previews import queue_due_previews
from pressluft.contexts.nodes.events import NodeDecommissioned
from pressluft.contexts.settings.events import SettingsChanged
from pressluft.contexts.sites.creation import preview_url
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.ids import new_id
from pressluft.runtime import Runtime
from tests.support.nodes import blocked_node, event_and_job_counts, record_node
from tests.test_domains import active_environment

META = Meta(actor="test:previews")
PREVIEW = "preview.example.com"
RFC2136 = {"server": "127.0.0.1", "tsig_key_name": "pressluft", "tsig_secret": "c2VjcmV0"}


async def _set_preview(client: httpx.AsyncClient, domain: str = PREVIEW) -> None:
    reply = await client.patch(
        "/api/settings",
        json={"preview_domain": domain, "dns01_provider": "rfc2136", "dns01_credentials": RFC2136},
    )
    assert reply.status_code == 200, reply.text


async def _previews(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """The preview certificates by node."""
    listed = (await client.get("/api/certificates")).json()
    return {c["node_id"]: c for c in listed if c["kind"] == "preview"}


def _scan(runtime: Runtime) -> Any:
    scan = queue_due_previews(PreviewCertificate)
    return runtime.db.write(lambda tx: scan(tx, META))


@pytest.mark.spec("DOM-50")
async def test_asking_for_a_wildcard_needs_the_settings_and_an_active_node(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await record_node(runtime)
    idle = await record_node(runtime, provisioned=False)
    before = await event_and_job_counts(runtime)
    unset = await client.post(f"/api/nodes/{node_id}/preview-certificate")
    assert unset.status_code == 409, unset.text
    assert unset.json()["code"] == "conflict"
    assert "preview_domain" in unset.json()["details"]["hint"]
    assert await event_and_job_counts(runtime) == before
    await _set_preview(client)
    before = await event_and_job_counts(runtime)
    pending = await client.post(f"/api/nodes/{idle}/preview-certificate")
    assert pending.status_code == 409 and "provision" in pending.json()["details"]["hint"]
    assert pending.json()["code"] == "conflict"
    for missing in (new_id(), "not-an-id"):
        gone = await client.post(f"/api/nodes/{missing}/preview-certificate")
        assert gone.status_code == 404, gone.text
    assert await event_and_job_counts(runtime) == before


@pytest.mark.spec("DOM-51")
async def test_the_scan_asks_for_every_active_nodes_wildcard_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    first = await blocked_node(runtime)
    second = await blocked_node(runtime)
    await record_node(runtime, provisioned=False)  # not active: not asked for
    assert await _scan(runtime) == []  # no preview domain yet
    await _set_preview(client)
    queued = await _scan(runtime)
    assert len(queued) == 2
    previews = await _previews(client)
    assert set(previews) == {first, second}
    assert {c["status"] for c in previews.values()} == {"pending"}
    assert previews[first]["names"] == [f"*.{PREVIEW}"]
    assert await _scan(runtime) == []  # queued already
    asked = await client.post(f"/api/nodes/{first}/preview-certificate")
    assert asked.status_code == 202, asked.text
    assert asked.json()["job_id"] in queued
    jobs = (await client.get("/api/jobs", params={"job_type": "preview_certificate"})).json()
    rows = jobs["items"] if isinstance(jobs, dict) else jobs
    assert {j["node_id"] for j in rows} == {first, second}


@pytest.mark.spec("DOM-52")
async def test_a_failed_order_is_failed_and_asked_for_again_after_an_hour(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await blocked_node(runtime)
    await _set_preview(client)
    [job_id] = await _scan(runtime)
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).is_success
    failed = (await _previews(client))[node_id]
    assert failed["status"] == "failed" and not failed["renewal_failed"]
    assert failed["last_error"]["code"] == "CANCELLED"
    assert await _scan(runtime) == []
    clock.advance(3660)
    assert len(await _scan(runtime)) == 1
    assert (await _previews(client))[node_id]["status"] == "pending"


def _issue(
    runtime: Runtime,
    node_id: str,
    certificate_id: str,
    clock: FrozenClock,
    names: list[str],
    lifetime: timedelta = timedelta(days=89),
) -> Any:
    now = clock.now()
    issued = CertificateIssued(
        certificate_id=certificate_id,
        node_id=node_id,
        kind="preview",
        environment_id=None,
        names=names,
        issuer="Pebble",
        serial="0b",
        not_before=format_ts(now - timedelta(days=1)),
        not_after=format_ts(now + lifetime),
        renew_at=format_ts(now + timedelta(days=59)),
        key_secret_id="sec_key",
        chain_pem="-----BEGIN CERTIFICATE-----\n",
        job_id=new_id(),
    )

    def seed(tx: WriteTx) -> None:
        append(tx, f"certificate:{certificate_id}", None, [issued], META)

    return runtime.db.write(seed)


@pytest.mark.spec("DOM-52", "DOM-53")
async def test_another_preview_domain_or_a_due_renewal_orders_again(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await blocked_node(runtime)
    await _set_preview(client)
    [job_id] = await _scan(runtime)
    certificate_id = (await _previews(client))[node_id]["id"]
    # The job's outcome, recorded as a worker would; then the job ends.
    await _issue(runtime, node_id, certificate_id, clock, [f"*.{PREVIEW}"])
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).is_success
    served = (await _previews(client))[node_id]
    # Issued before the job ended: the hold (`pending`) is gone, nothing to mark.
    assert (served["status"], served["renewal_failed"]) == ("active", False)
    # Up to date and not due: nothing to do.
    assert await _scan(runtime) == []
    await _set_preview(client, "next.example.com")
    [reorder] = await _scan(runtime)
    kept = (await _previews(client))[node_id]
    assert kept["status"] == "active" and kept["names"] == [f"*.{PREVIEW}"]  # still served
    assert (await client.post(f"/api/jobs/{reorder}/cancel")).is_success
    # A failed reorder or renewal leaves the wildcard served, marked; asked again in an hour.
    failed = (await _previews(client))[node_id]
    assert (failed["status"], failed["renewal_failed"]) == ("active", True)
    assert failed["last_error"]["code"] == "CANCELLED"
    assert await _scan(runtime) == []
    clock.advance(3660)
    [retry] = await _scan(runtime)
    assert (await client.post(f"/api/jobs/{retry}/cancel")).is_success
    # Back to the served domain: only the renewal time asks for it again.
    await _set_preview(client)
    clock.advance(3660)
    assert await _scan(runtime) == []
    clock.advance(59 * 86400)  # past renew_at
    assert len(await _scan(runtime)) == 1


@pytest.mark.spec("DOM-54")
async def test_a_decommissioned_nodes_wildcard_is_forgotten(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await record_node(runtime)
    await _issue(runtime, node_id, new_id(), clock, [f"*.{PREVIEW}"])
    assert node_id in await _previews(client)

    def decommission(tx: WriteTx) -> None:
        tx.conn.execute(
            "UPDATE nodes SET key_secret_id = NULL WHERE id = ?", (node_id,)
        )  # the vault's key goes with the command that decommissions; here only the event
        append(tx, f"node:{node_id}", None, [NodeDecommissioned(node_id=node_id)], META)

    await runtime.db.write(decommission)
    assert node_id not in await _previews(client)


@pytest.mark.spec("DOM-55")
async def test_preview_urls_are_https_under_the_preview_domain(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await blocked_node(runtime)
    plain = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": node_id})
    assert plain.status_code == 202, plain.text
    await _set_preview(client)
    reply = await client.post("/api/sites", json={"name": "B", "slug": "b", "node_id": node_id})
    assert reply.status_code == 202, reply.text
    urls = {s["slug"]: s["preview_url"] for s in _items((await client.get("/api/sites")).json())}
    assert urls["a"].startswith("http://") and urls["a"].endswith(".127-0-0-1.sslip.io")
    b_env = reply.json()["environment_id"]
    assert urls["b"] == f"https://{b_env[:8]}.{PREVIEW}"
    # A lab node's stay on *.localhost (browsers resolve it without DNS).
    assert preview_url(b_env, PREVIEW, "127.0.0.1", 8080) == f"http://{b_env[:8]}.localhost:8080"


@pytest.mark.spec("DOM-53")
async def test_a_wildcard_keeps_covering_the_preview_domains_environments_use(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A preview URL never changes: after the preview domain changes, a node whose
    environment has an https URL under the old one orders both wildcards."""
    node_id = await blocked_node(runtime)
    await _set_preview(client)
    await active_environment(runtime, node_id, PREVIEW)
    await _set_preview(client, "next.example.com")
    [job_id] = await _scan(runtime)
    asked = (await _previews(client))[node_id]
    assert asked["names"] == ["*.next.example.com", f"*.{PREVIEW}"]
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).is_success
    # Cleared: the old domain is still renewed while an environment uses it.
    cleared = await client.patch("/api/settings", json={"preview_domain": None})
    assert cleared.status_code == 200
    reply = await client.post(f"/api/nodes/{node_id}/preview-certificate")
    assert reply.status_code == 202, reply.text
    assert (await _previews(client))[node_id]["names"] == [f"*.{PREVIEW}"]


@pytest.mark.spec("DOM-50")
async def test_a_provider_without_an_adapter_asks_for_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Settings recorded before the providers were narrowed (a certbot plugin name)
    order nothing, and a preview domain needs a provider with an adapter."""
    node_id = await blocked_node(runtime)

    def legacy(tx: WriteTx) -> None:
        ref = runtime.vault.seal(tx.conn, "dns01_credentials", b'{"token":"t"}', tx.now_ts)
        changed = SettingsChanged(
            dns01_provider="digitalocean", dns01_credentials_ref=ref, preview_domain=PREVIEW
        )
        append(tx, "settings", None, [changed], META)

    await runtime.db.write(legacy)
    assert await _scan(runtime) == []
    refused = await client.post(f"/api/nodes/{node_id}/preview-certificate")
    assert refused.status_code == 409, refused.text
    again = await client.patch("/api/settings", json={"preview_domain": "other.example.com"})
    assert again.status_code == 422, again.text
    assert again.json()["details"]["errors"][0]["field"] == "dns01_provider"


def _items(page: Any) -> list[dict[str, Any]]:
    return list(page["items"] if isinstance(page, dict) else page)


@pytest.mark.spec("DOM-57")
async def test_the_certificates_page_lists_the_wildcards_with_their_actions(
    client: httpx.AsyncClient, session: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await blocked_node(runtime)
    await _set_preview(client)
    [job_id] = await _scan(runtime)
    certificate_id = (await _previews(client))[node_id]["id"]
    await _issue(runtime, node_id, certificate_id, clock, [f"*.{PREVIEW}"])
    page = await session.get("/certificates")
    assert page.status_code == 200
    html = page.text
    assert f'data-certificate-id="{certificate_id}"' in html
    assert f"*.{PREVIEW}" in html and "preview" in html
    assert f'data-url="/api/nodes/{node_id}/preview-certificate"' in html
    assert "Reissue now" in html
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).is_success


@pytest.mark.spec("DOM-58")
async def test_an_expiring_certificate_is_an_event_once_per_expiry(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await record_node(runtime)
    soon, later = new_id(), new_id()
    await _issue(runtime, node_id, soon, clock, [f"*.{PREVIEW}"], timedelta(days=10))
    other = await record_node(runtime)
    await _issue(runtime, other, later, clock, [f"*.{PREVIEW}"], timedelta(days=60))
    announce = announce_expiring()
    assert await runtime.db.write(lambda tx: announce(tx, META)) == [soon]
    assert await runtime.db.write(lambda tx: announce(tx, META)) == []  # once per expiry
    feed = (await client.get("/api/events", params={"type": "certificate.expiry_noticed"})).json()
    events = [e for e in _items(feed) if e["type"] == "certificate.expiry_noticed"]
    assert [e["data"]["certificate_id"] for e in events] == [soon]
    assert events[0]["data"]["names"] == [f"*.{PREVIEW}"]
    # A new certificate with another expiry, close again: announced again.
    await _issue(runtime, node_id, soon, clock, [f"*.{PREVIEW}"], timedelta(days=9))
    assert await runtime.db.write(lambda tx: announce(tx, META)) == [soon]
