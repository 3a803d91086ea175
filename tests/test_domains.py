"""Custom domains through the API on real SQLite files: what adding records and
refuses, listing, removal and making primary — the jobs stay queued behind a
diagnostic job holding the node (a domain really served: tests/test_domains_node.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pressluft.clock import FrozenClock, format_ts
from pressluft.config import Config, resolve
from pressluft.contexts.domains.commands import queue_due_renewals
from pressluft.contexts.domains.events import CertificateIssued
from pressluft.contexts.domains.workers import CertificateRenew
from pressluft.contexts.sites.events import (
    EnvironmentCreated,
    EnvironmentDeletionRequested,
    EnvironmentProvisioned,
    SiteCreated,
)
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import new_id
from pressluft.runtime import Runtime
from tests.support.bind import BindServer
from tests.support.jobs import log_lines, until_ended
from tests.support.nodes import blocked_node, event_and_job_counts, record_node

META = Meta(actor="test:domains")


@pytest.fixture
def config(data_dir: Path, bind_dns: BindServer) -> Config:
    """The conftest's, asking the test's DNS server (BIND on loopback) and an ACME
    directory nothing listens on (no test traffic leaves loopback)."""
    host, port = bind_dns.address
    overrides = {
        "data_dir": str(data_dir),
        "cpu_affinity": "off",
        "dns_resolver": f"{host}:{port}",
        "acme_directory": "https://127.0.0.1:9/directory",
    }
    return resolve("serve", overrides, environ={})[0]


async def active_environment(
    runtime: Runtime, node_id: str, preview_domain: str | None = None
) -> str:
    """A site with an active production environment on the node (recorded, not built);
    its preview URL is under `preview_domain` when given."""
    site_id, env_id = new_id(), new_id()

    def seed(tx: WriteTx) -> None:
        append(
            tx,
            f"site:{site_id}",
            NO_STREAM,
            [
                SiteCreated(
                    site_id=site_id,
                    name="Shop",
                    slug=f"s{site_id[:8]}",
                    primary_environment_id=env_id,
                )
            ],
            META,
        )
        created = EnvironmentCreated(
            environment_id=env_id,
            site_id=site_id,
            name="Production",
            slug="production",
            environment_type="production",
            node_id=node_id,
            preview_url=f"https://{env_id[:8]}.{preview_domain}"
            if preview_domain
            else f"http://{env_id[:8]}.127-0-0-1.sslip.io",
            db_secret_id="sec_db",
            admin_secret_id="sec_admin",
        )
        built = EnvironmentProvisioned(
            environment_id=env_id,
            job_id=new_id(),
            release_id=new_id(),
            release_path="/var/www/x",
            source_type="wordpress",
            source_ref="/usr/share/wordpress",
        )
        append(tx, f"environment:{env_id}", NO_STREAM, [created, built], META)

    await runtime.db.write(seed)
    return env_id


@pytest.mark.spec("DOM-30", "DOM-32", "DOM-34", "DOM-39")
async def test_adding_a_domain_records_it_pending_and_queues_its_job(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    reply = await client.post(
        f"/api/environments/{env_id}/domains", json={"hostname": "Shop.Example.COM", "www": True}
    )
    assert reply.status_code == 202, reply.text
    accepted = reply.json()
    assert len(accepted["domain_ids"]) == 2
    listed = (await client.get(f"/api/environments/{env_id}/domains")).json()
    by_name = {d["hostname"]: d for d in listed}
    assert set(by_name) == {"shop.example.com", "www.shop.example.com"}
    for domain in listed:
        assert (domain["status"], domain["tls_status"], domain["is_primary"]) == (
            "pending",
            "pending",
            False,
        )
        assert domain["certificate"] is None and domain["actions"] == []
    assert by_name["www.shop.example.com"]["redirect_to"] == "shop.example.com"
    queued = (await client.get(f"/api/jobs/{accepted['job_id']}")).json()
    assert (queued["job_type"], queued["status"], queued["environment_id"]) == (
        "domain_add",
        "queued",
        env_id,
    )
    one = (await client.get(f"/api/domains/{accepted['domain_ids'][0]}")).json()
    assert one["hostname"] == "shop.example.com"
    # DOM-32: an internationalised name is stored as punycode.
    other = await active_environment(runtime, await blocked_node(runtime))
    idn = await client.post(
        f"/api/environments/{other}/domains", json={"hostname": "Bücher.example"}
    )
    assert idn.status_code == 202, idn.text
    (stored,) = (await client.get(f"/api/environments/{other}/domains")).json()
    assert (stored["hostname"], stored["unicode_hostname"]) == (
        "xn--bcher-kva.example",
        "bücher.example",
    )
    # DOM-39: no certificate yet.
    assert (await client.get("/api/certificates")).json() == []


@pytest.mark.spec("DOM-31", "DOM-33", "DOM-35")
async def test_refused_domains_change_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    other = await active_environment(runtime, node_id)
    taken = await client.post(f"/api/environments/{env_id}/domains", json={"hostname": "a.example"})
    assert taken.status_code == 202
    before = await event_and_job_counts(runtime)
    cases = [
        ({"hostname": "*.example.com"}, 422, "validation_failed"),
        ({"hostname": "10.0.0.1"}, 422, "validation_failed"),
        ({"hostname": "::1"}, 422, "validation_failed"),
        ({"hostname": "shop.example.com:8443"}, 422, "validation_failed"),
        ({"hostname": "https://shop.example.com/"}, 422, "validation_failed"),
        ({"hostname": "localhost"}, 422, "validation_failed"),
        ({"hostname": "bad_label.example"}, 422, "validation_failed"),
        ({"hostname": "x" * 64 + ".example"}, 422, "validation_failed"),
        ({"hostname": ""}, 400, "bad_request"),
        ({"hostname": "b.example", "color": "red"}, 400, "bad_request"),
        ({"hostname": 5}, 400, "bad_request"),
        ({}, 400, "bad_request"),
    ]
    for body, status, code in cases:
        reply = await client.post(f"/api/environments/{other}/domains", json=body)
        assert (reply.status_code, reply.json()["code"]) == (status, code), (body, reply.text)
    # DOM-33: attached already, to this or another environment.
    for target in (other, env_id):
        reply = await client.post(
            f"/api/environments/{target}/domains", json={"hostname": "A.example."}
        )
        assert (reply.status_code, reply.json()["code"]) == (409, "domain_taken"), reply.text
    assert await event_and_job_counts(runtime) == before
    # DOM-31: under the preview domain.
    settings = await client.patch(
        "/api/settings",
        json={
            "preview_domain": "preview.example",
            "dns01_provider": "cloudflare",
            "dns01_credentials": {"api_token": "t"},
        },
    )
    assert settings.status_code == 200, settings.text
    before = await event_and_job_counts(runtime)
    under = await client.post(
        f"/api/environments/{other}/domains", json={"hostname": "x.preview.example"}
    )
    assert (under.status_code, under.json()["code"]) == (422, "validation_failed"), under.text
    # DOM-35: an environment that is not active (its deletion asked for); an unknown one.
    leaving = await active_environment(runtime, node_id)
    gone = EnvironmentDeletionRequested(environment_id=leaving, job_id=new_id())
    await runtime.db.write(lambda tx: append(tx, f"environment:{leaving}", None, [gone], META))
    before = await event_and_job_counts(runtime)
    reply = await client.post(
        f"/api/environments/{leaving}/domains", json={"hostname": "c.example"}
    )
    assert (reply.status_code, reply.json()["code"]) == (409, "environment_not_active"), reply.text
    assert reply.json()["details"]["status"] == "deleting"
    reply = await client.post(
        f"/api/environments/{new_id()}/domains", json={"hostname": "c.example"}
    )
    assert reply.status_code == 404
    assert await event_and_job_counts(runtime) == before


@pytest.mark.spec("DOM-37", "DOM-38", "DOM-43")
async def test_removal_needs_confirmation_and_primary_needs_an_active_domain(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    added = (
        await client.post(f"/api/environments/{env_id}/domains", json={"hostname": "a.example"})
    ).json()
    (domain_id,) = added["domain_ids"]
    before = await event_and_job_counts(runtime)
    primary = await client.post(f"/api/domains/{domain_id}/primary")
    assert (primary.status_code, primary.json()["code"]) == (409, "domain_not_active")
    assert primary.json()["details"]["status"] == "pending"
    unconfirmed = await client.delete(f"/api/domains/{domain_id}")
    assert (unconfirmed.status_code, unconfirmed.json()["code"]) == (400, "confirmation_required")
    assert "?confirm=a.example" in unconfirmed.json()["details"]["hint"]
    # A pending domain's job is still running: no removal beside it.
    busy = await client.delete(f"/api/domains/{domain_id}", params={"confirm": "a.example"})
    assert (busy.status_code, busy.json()["code"]) == (409, "conflict")
    assert await event_and_job_counts(runtime) == before
    # Its job cancelled, the domain is failed; then it may be removed (or retried).
    cancelled = await client.post(f"/api/jobs/{added['job_id']}/cancel")
    assert cancelled.status_code in (200, 202), cancelled.text
    failed = (await client.get(f"/api/domains/{domain_id}")).json()
    assert (failed["status"], failed["last_error"]["code"]) == ("failed", "CANCELLED"), failed
    assert failed["actions"] == ["remove", "retry"]
    removal = await client.delete(f"/api/domains/{domain_id}", params={"confirm": "a.example"})
    assert removal.status_code == 202, removal.text
    removing = (await client.get(f"/api/domains/{domain_id}")).json()
    assert removing["status"] == "removing"
    job_view = (await client.get(f"/api/jobs/{removal.json()['job_id']}")).json()
    assert job_view["job_type"] == "domain_remove"
    assert (await client.get(f"/api/domains/{new_id()}")).status_code == 404
    # DOM-43: renewing what is not an issued certificate.
    unknown = await client.post(f"/api/certificates/{new_id()}/renew")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
    assert (await client.get("/api/domains/nope")).status_code == 404


@pytest.mark.spec("DOM-36")
async def test_dns_pointing_elsewhere_fails_the_job_before_anything_changes(
    client: httpx.AsyncClient, runtime: Runtime, bind_dns: BindServer
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    bind_dns.set("elsewhere.test", "A", ["192.0.2.10"])
    reply = await client.post(
        f"/api/environments/{env_id}/domains", json={"hostname": "elsewhere.test"}
    )
    assert reply.status_code == 202, reply.text
    accepted = reply.json()
    ended = await until_ended(runtime, accepted["job_id"], within=30)
    assert (ended.status, ended.error_code) == ("failed", "DNS_MISMATCH")
    expected = (
        "DNS for elsewhere.test does not point to this server (127.0.0.1); create an A record"
        " and retry"
    )
    (domain,) = (await client.get(f"/api/environments/{env_id}/domains")).json()
    assert (domain["status"], domain["tls_status"]) == ("failed", "failed")
    assert domain["last_error"]["code"] == "DNS_MISMATCH"
    assert expected in domain["last_error"]["message"], domain
    log = "\n".join(t for _, _, t in await log_lines(runtime, accepted["job_id"]))
    assert expected in log
    # Nothing reached the node: the job never asked for its address (no SSH, no playbook).
    assert "profile revision" not in log and "ordering a certificate" not in log
    # No record at all: the same message (there is nothing pointing here).
    missing = await client.post(
        f"/api/environments/{env_id}/domains", json={"hostname": "nothing.test"}
    )
    ended = await until_ended(runtime, missing.json()["job_id"], within=30)
    assert ended.error_code == "DNS_MISMATCH"
    gone = [
        d
        for d in (await client.get(f"/api/environments/{env_id}/domains")).json()
        if d["hostname"] == "nothing.test"
    ]
    assert "nothing.test" in gone[0]["last_error"]["message"]
    # Asked for again once DNS is right, the failed domain is retried (a new job).
    bind_dns.set("elsewhere.test", "A", ["127.0.0.1"])
    again = await client.post(
        f"/api/environments/{env_id}/domains", json={"hostname": "elsewhere.test"}
    )
    assert again.status_code == 202, again.text
    assert again.json()["domain_ids"] == accepted["domain_ids"]


@pytest.mark.spec("DOM-43", "DOM-44")
async def test_the_scan_queues_renewals_that_are_due_once_and_waits_after_a_failure(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    now = clock.now()
    due, later = new_id(), new_id()

    def issued(certificate_id: str, renew_in: timedelta) -> CertificateIssued:
        return CertificateIssued(
            certificate_id=certificate_id,
            node_id=node_id,
            kind="domain",
            environment_id=env_id,
            names=[f"{certificate_id[:8]}.example"],
            issuer="Pebble",
            serial="0a",
            not_before=format_ts(now - timedelta(days=60)),
            not_after=format_ts(now + timedelta(days=10)),
            renew_at=format_ts(now + renew_in),
            key_secret_id="sec_key",
            chain_pem="-----BEGIN CERTIFICATE-----\n",
            job_id=new_id(),
        )

    def seed(tx: WriteTx) -> None:
        for cid, renew_in in ((due, timedelta(minutes=-1)), (later, timedelta(days=1))):
            append(tx, f"certificate:{cid}", NO_STREAM, [issued(cid, renew_in)], META)

    await runtime.db.write(seed)
    scan = queue_due_renewals(CertificateRenew)
    first = await runtime.db.write(lambda tx: scan(tx, META))
    assert len(first) == 1
    assert await runtime.db.write(lambda tx: scan(tx, META)) == []  # queued already
    listed = {c["id"]: c for c in (await client.get("/api/certificates")).json()}
    assert listed[due]["expiring"] and not listed[due]["renewal_failed"]  # 10 days left
    # The renewal fails (here: cancelled): still served, marked, and not tried again
    # within the hour.
    assert (await client.post(f"/api/jobs/{first[0]}/cancel")).is_success
    marked = {c["id"]: c for c in (await client.get("/api/certificates")).json()}[due]
    assert (marked["status"], marked["renewal_failed"]) == ("active", True)
    assert marked["last_error"]["code"] == "CANCELLED"
    assert await runtime.db.write(lambda tx: scan(tx, META)) == []
    clock.advance(3660)
    assert len(await runtime.db.write(lambda tx: scan(tx, META))) == 1
    # Asked for: another certificate of the environment gets its own renewal.
    asked = await client.post(f"/api/certificates/{later}/renew")
    assert asked.status_code == 202, asked.text
    assert asked.json()["job_id"] not in first
    again = await client.post(f"/api/certificates/{later}/renew")  # that one answers
    assert again.json()["job_id"] == asked.json()["job_id"]
