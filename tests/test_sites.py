"""Sites through the API and the queue's own commands, on real SQLite files: what
creating a site records, what it refuses, listing, and a creation that ends
without its handler. (A site really built on a node: tests/test_site_node.py.)"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pressluft.contexts.nodes.views import ContainerView, node_actions
from pressluft.contexts.sites.environments import (
    ResetValidationFailed,
    reset_environment_command,
    reset_site_command,
)
from pressluft.contexts.sites.events import (
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentDeletionRequested,
    EnvironmentProvisioned,
    SiteCreated,
)
from pressluft.contexts.sites.queries import STATUSES, environment_actions, site_actions
from pressluft.contexts.sites.workers import skipped_report
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.jobs.queue import Outcome, RescueScope, cancel, claim, finish, rescue
from pressluft.runtime import Runtime
from tests.support.jobs import submit, until_ended
from tests.support.nodes import (
    blocked_node,
    event_and_job_counts,
    record_node,
    recorded_node_events,
)
from tests.support.queue import ACTOR, QueueDb

META = Meta(actor="test:sites")


@pytest.mark.spec("SIT-1")
async def test_creating_a_site_records_it_and_queues_its_job(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await blocked_node(runtime)
    reply = await client.post(
        "/api/sites", json={"name": "Acme Shop", "slug": "acme", "node_id": node_id}
    )
    assert reply.status_code == 202, reply.text
    accepted = reply.json()
    site = (await client.get(f"/api/sites/{accepted['site_id']}")).json()
    assert (site["status"], site["node_id"], site["primary_environment_id"]) == (
        "creating",
        node_id,
        accepted["environment_id"],
    )
    env_id = accepted["environment_id"]
    assert site["preview_url"] == f"http://{env_id[:8]}.127-0-0-1.sslip.io"
    (production,) = site["environments"]
    assert (production["environment_type"], production["status"]) == ("production", "creating")
    # Each site its own administrator (random unless chosen); the view names it.
    assert re.fullmatch(r"admin-[0-9a-f]{8}", production["admin_user"]), production
    chosen = await client.post(
        "/api/sites",
        json={"name": "Beta", "slug": "beta", "node_id": node_id, "admin_user": "ops@beta"},
    )
    assert chosen.status_code == 202, chosen.text
    beta = (await client.get(f"/api/environments/{chosen.json()['environment_id']}")).json()
    assert beta["admin_user"] == "ops@beta"
    job = (await client.get(f"/api/jobs/{accepted['job_id']}")).json()
    assert job["job_type"] == "site_create"
    assert (job["site_id"], job["environment_id"], job["node_id"]) == (
        accepted["site_id"],
        env_id,
        node_id,
    )
    # The secrets are sealed: the event holds their ids, never the passwords.
    data = await runtime.db.read(
        lambda c: c.execute(
            "SELECT data FROM events WHERE type = 'environment.created'"
        ).fetchone()[0]
    )
    assert '"db_secret_id":"sec_' in data and "password" not in data.replace("_secret_id", "")


@pytest.mark.spec("SIT-2")
async def test_refusals_change_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    ready = await blocked_node(runtime)
    unprovisioned = await blocked_node(runtime, provisioned=False)
    taken = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": ready})
    assert taken.status_code == 202
    before = await event_and_job_counts(runtime)
    cases = [
        ({"name": "B", "slug": "b", "node_id": ready, "color": "red"}, 400, "bad_request"),
        ({"name": "B", "slug": "B_", "node_id": ready}, 400, "bad_request"),
        ({"name": "B", "slug": "b", "node_id": "nope"}, 400, "bad_request"),
        ({"name": "B", "slug": "b", "node_id": ready, "title": "***"}, 400, "bad_request"),
        (
            {"name": "B", "slug": "b", "node_id": ready, "admin_email": "a<b>@x.com"},
            400,
            "bad_request",
        ),
        (
            {"name": "B", "slug": "b", "node_id": ready, "admin_email": "a@" + "x" * 250 + ".com"},
            400,
            "bad_request",
        ),
        ({"name": "B", "slug": "b", "node_id": ready, "admin_user": "a b"}, 400, "bad_request"),
        ({"name": "B", "slug": "b", "node_id": ready, "admin_user": "x" * 61}, 400, "bad_request"),
        ({"name": "B", "slug": "b", "node_id": str(uuid.uuid4())}, 422, "validation_failed"),
        ({"name": "B", "slug": "b", "node_id": unprovisioned}, 409, "node_not_ready"),
        ({"name": "B", "slug": "a", "node_id": ready}, 409, "conflict"),
    ]
    for body, status, code in cases:
        reply = await client.post("/api/sites", json=body)
        assert (reply.status_code, reply.json()["code"]) == (status, code), (body, reply.text)
        if code in ("node_not_ready", "conflict"):
            assert reply.json()["details"]["hint"]
    assert await event_and_job_counts(runtime) == before


@pytest.mark.spec("SIT-6")
async def test_sites_are_listed_filtered_and_paged(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    first, second = await blocked_node(runtime), await blocked_node(runtime)
    made = []
    for slug, node in (("one", first), ("two", second), ("three", first)):
        reply = await client.post("/api/sites", json={"name": slug, "slug": slug, "node_id": node})
        made.append(reply.json())
    page = (await client.get("/api/sites", params={"limit": 2})).json()
    assert [s["slug"] for s in page["items"]] == ["three", "two"] and page["has_more"]
    rest = (
        await client.get("/api/sites", params={"limit": 2, "before": page["next_before"]})
    ).json()
    assert [s["slug"] for s in rest["items"]] == ["one"] and not rest["has_more"]
    on_first = (await client.get("/api/sites", params={"node_id": first})).json()
    assert [s["slug"] for s in on_first["items"]] == ["three", "one"]
    creating = (await client.get("/api/sites", params={"status": "creating"})).json()
    assert len(creating["items"]) == 3
    assert (await client.get("/api/sites", params={"status": "nope"})).status_code == 400
    envs = (await client.get(f"/api/sites/{made[0]['site_id']}/environments")).json()
    assert [e["id"] for e in envs] == [made[0]["environment_id"]]
    env = (await client.get(f"/api/environments/{made[0]['environment_id']}")).json()
    assert env["site_id"] == made[0]["site_id"]
    for path in (
        f"/api/sites/{uuid.uuid4()}",
        f"/api/sites/{uuid.uuid4()}/environments",
        f"/api/environments/{uuid.uuid4()}",
        "/api/sites/not-a-uuid",
    ):
        assert (await client.get(path)).status_code == 404, path


# -- a creation that ends without its handler (the queue's commands, no daemon) -------

SITE = "00000000-0000-4000-8000-0000000000a1"
ENV = "00000000-0000-4000-8000-0000000000e1"
NODE = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def q(tmp_path: Path) -> Iterator[QueueDb]:
    db = QueueDb(tmp_path / "queue.db")

    def seed(tx: WriteTx) -> None:
        append(tx, f"node:{NODE}", NO_STREAM, recorded_node_events(NODE), ACTOR)
        append(
            tx,
            f"site:{SITE}",
            NO_STREAM,
            [SiteCreated(site_id=SITE, name="A", slug="a", primary_environment_id=ENV)],
            ACTOR,
        )
        created = EnvironmentCreated(
            environment_id=ENV,
            site_id=SITE,
            name="Production",
            slug="production",
            environment_type="production",
            node_id=NODE,
            preview_url="http://00000000.127-0-0-1.sslip.io",
            db_secret_id="sec_db",
            admin_secret_id="sec_admin",
        )
        append(tx, f"environment:{ENV}", NO_STREAM, [created], ACTOR)

    db.run(seed)
    try:
        yield db
    finally:
        db.close()


def _statuses(q: QueueDb) -> tuple[str, str]:
    site = q.conn.execute("SELECT status FROM sites WHERE id = ?", (SITE,)).fetchone()[0]
    env = q.conn.execute("SELECT status FROM environments WHERE id = ?", (ENV,)).fetchone()[0]
    return str(site), str(env)


@pytest.mark.spec("SIT-5")
def test_a_creation_whose_worker_is_lost_for_good_fails_the_site(
    q: QueueDb, tmp_path: Path
) -> None:
    q.enqueue("site_create", site_id=SITE, environment_id=ENV, node_id=NODE, max_attempts=2)
    for attempt, expected in ((1, ("creating", "creating")), (2, ("failed", "failed"))):
        claims, _ = q.run(claim(1, f"w{attempt}", 30.0))
        assert len(claims) == 1
        q.run(rescue(RescueScope(all_running=True, reason="daemon_restarted")))
        assert _statuses(q) == expected
    q.assert_consistent(tmp_path)


@pytest.mark.spec("SIT-5")
def test_a_creation_timing_out_or_cancelled_fails_the_site(q: QueueDb, tmp_path: Path) -> None:
    job_id = q.enqueue("site_create", site_id=SITE, environment_id=ENV, node_id=NODE)
    assert q.run(cancel(job_id, ACTOR)) == "cancelled"
    assert _statuses(q) == ("failed", "failed")
    q.assert_consistent(tmp_path)


@pytest.mark.spec("SIT-5")
def test_a_last_attempt_timing_out_fails_the_site(q: QueueDb, tmp_path: Path) -> None:
    q.enqueue("site_create", site_id=SITE, environment_id=ENV, node_id=NODE, max_attempts=1)
    claims, _ = q.run(claim(1, "w1", 30.0))
    timeout = Outcome("failed", "ANSIBLE_TIMEOUT", "ran past 1800 s", retryable=True)
    assert q.run(finish(claims[0], timeout, "w1")) == "failed"
    assert _statuses(q) == ("failed", "failed")
    q.assert_consistent(tmp_path)


STAGING = "00000000-0000-4000-8000-000000000031"


def _active(q: QueueDb) -> None:
    provisioned = EnvironmentProvisioned(
        environment_id=ENV,
        job_id=str(uuid.uuid4()),
        release_id=str(uuid.uuid4()),
        release_path="/var/www/sites/x/y/releases/1",
        source_type="wordpress",
        source_ref="/usr/share/wordpress",
    )
    q.run(lambda tx: append(tx, f"environment:{ENV}", None, [provisioned], ACTOR))


@pytest.mark.spec("SIT-11")
def test_a_clone_whose_worker_is_lost_for_good_fails_only_the_clone(
    q: QueueDb, tmp_path: Path
) -> None:
    _active(q)
    created = EnvironmentCreated(
        environment_id=STAGING,
        site_id=SITE,
        name="Staging",
        slug="staging",
        environment_type="staging",
        node_id=NODE,
        preview_url="http://00000000.127-0-0-1.sslip.io",
        db_secret_id="sec_db2",
        admin_secret_id="sec_admin2",
        source_environment_id=ENV,
    )
    q.run(lambda tx: append(tx, f"environment:{STAGING}", NO_STREAM, [created], ACTOR))
    assert _statuses(q) == ("cloning", "active")
    q.enqueue("env_create", site_id=SITE, environment_id=STAGING, node_id=NODE, max_attempts=1)
    claims, _ = q.run(claim(1, "w1", 30.0))
    assert len(claims) == 1
    q.run(rescue(RescueScope(all_running=True, reason="daemon_restarted")))
    staging = q.conn.execute("SELECT status FROM environments WHERE id = ?", (STAGING,))
    assert staging.fetchone()[0] == "failed"
    assert _statuses(q) == ("active", "active")
    q.assert_consistent(tmp_path)


@pytest.mark.spec("SIT-14")
def test_a_deletion_that_ran_and_failed_cannot_be_reset(q: QueueDb, tmp_path: Path) -> None:
    _active(q)
    job_id = q.enqueue("site_delete", site_id=SITE, environment_id=ENV, node_id=NODE)
    requested = EnvironmentDeletionRequested(environment_id=ENV, job_id=job_id)
    q.run(lambda tx: append(tx, f"environment:{ENV}", None, [requested], ACTOR))
    assert _statuses(q) == ("deleting", "deleting")
    claims, _ = q.run(claim(1, "w1", 30.0))
    fatal = Outcome("failed", "ANSIBLE_HOST_FAILED", "a task failed", retryable=False)
    assert q.run(finish(claims[0], fatal, "w1")) == "failed"
    assert _statuses(q) == ("failed", "failed")
    for command in (reset_site_command(SITE, ACTOR), reset_environment_command(ENV, ACTOR)):
        with pytest.raises(ResetValidationFailed) as refused:
            q.run(command)
        assert refused.value.details == {
            "reason": "its deletion failed part-way",
            "hint": "delete it again",
        }
    q.assert_consistent(tmp_path)


@pytest.mark.spec("NOD-29", "SIT-2")
async def test_a_node_with_sites_is_not_decommissioned_and_a_gone_node_hosts_none(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await blocked_node(runtime)
    site = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": node_id})
    assert site.status_code == 202
    before = await event_and_job_counts(runtime)
    name = (await client.get(f"/api/nodes/{node_id}")).json()["name"]
    gone = await client.delete(f"/api/nodes/{node_id}", params={"confirm": name})
    assert (gone.status_code, gone.json()["code"]) == (409, "node_has_sites")
    assert gone.json()["details"]["environments"] == 1
    assert await event_and_job_counts(runtime) == before
    # A decommissioned node is no node to create a site on (422).
    other = await record_node(runtime)
    other_name = (await client.get(f"/api/nodes/{other}")).json()["name"]
    queued = await client.delete(f"/api/nodes/{other}", params={"confirm": other_name})
    await until_ended(runtime, queued.json()["job_id"])
    reply = await client.post("/api/sites", json={"name": "B", "slug": "b", "node_id": other})
    assert (reply.status_code, reply.json()["code"]) == (422, "validation_failed")


@pytest.mark.spec("SIT-8")
async def test_magic_login_refusals_record_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await blocked_node(runtime)
    reply = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": node_id})
    env_id = reply.json()["environment_id"]
    before = await event_and_job_counts(runtime)
    creating = await client.post(f"/api/environments/{env_id}/magic-login")
    assert (creating.status_code, creating.json()["code"]) == (409, "environment_not_active")
    assert creating.json()["details"]["status"] == "creating"
    # Active (as its job would record it), but its node does not answer.
    provisioned = EnvironmentProvisioned(
        environment_id=env_id,
        job_id=reply.json()["job_id"],
        release_id=str(uuid.uuid4()),
        release_path="/var/www/sites/x/y/releases/1",
        source_type="wordpress",
        source_ref="/usr/share/wordpress",
    )
    await runtime.db.write(
        lambda tx: append(tx, f"environment:{env_id}", None, [provisioned], META)
    )
    before = await event_and_job_counts(runtime)
    gone = await client.post(f"/api/environments/{env_id}/magic-login")
    assert (gone.status_code, gone.json()["code"]) == (502, "node_unreachable")
    assert gone.json()["details"]["reason"] == "node_unreachable"
    assert await event_and_job_counts(runtime) == before
    missing = await client.post(f"/api/environments/{uuid.uuid4()}/magic-login")
    assert missing.status_code == 404


# -- environments, deletion, reset (the API and the projector; real runs:
#    tests/test_site_node.py) ------------------------------------------------------


async def _active_site(client: httpx.AsyncClient, runtime: Runtime, slug: str) -> tuple[str, str]:
    """A site whose production environment is recorded active (as its job would
    record it); the site_create job itself is cancelled, so no job is in flight."""
    node_id = await blocked_node(runtime)
    reply = await client.post("/api/sites", json={"name": slug, "slug": slug, "node_id": node_id})
    accepted = reply.json()
    env_id = accepted["environment_id"]
    provisioned = EnvironmentProvisioned(
        environment_id=env_id,
        job_id=accepted["job_id"],
        release_id=str(uuid.uuid4()),
        release_path=f"/var/www/sites/{accepted['site_id']}/{env_id}/releases/1",
        source_type="wordpress",
        source_ref="/usr/share/wordpress",
    )
    await runtime.db.write(
        lambda tx: append(tx, f"environment:{env_id}", None, [provisioned], META)
    )
    assert (await client.post(f"/api/jobs/{accepted['job_id']}/cancel")).status_code == 200
    return accepted["site_id"], env_id


async def _status(client: httpx.AsyncClient, path: str) -> str:
    return str((await client.get(path)).json()["status"])


@pytest.mark.spec("SIT-10", "SIT-11")
async def test_creating_an_environment_records_a_clone_and_refuses_what_cannot_be(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    site_id, production = await _active_site(client, runtime, "acme")
    url = f"/api/sites/{site_id}/environments"
    body = {
        "name": "Staging",
        "slug": "staging",
        "type": "staging",
        "source_environment_id": production,
    }
    before = await event_and_job_counts(runtime)
    for bad, status, code in [
        ({**body, "type": "production"}, 400, "bad_request"),
        ({**body, "type": "bogus"}, 400, "bad_request"),
        ({**body, "promotion_preset": "keep-all"}, 400, "bad_request"),
        ({**body, "slug": "production"}, 400, "bad_request"),
        ({**body, "slug": "Not A Slug"}, 400, "bad_request"),
        ({**body, "color": "red"}, 400, "bad_request"),
        ({**body, "source_environment_id": "nope"}, 400, "bad_request"),
        ({**body, "source_environment_id": str(uuid.uuid4())}, 422, "validation_failed"),
    ]:
        reply = await client.post(url, json=bad)
        assert (reply.status_code, reply.json()["code"]) == (status, code), (bad, reply.text)
    unknown = await client.post(f"/api/sites/{uuid.uuid4()}/environments", json=body)
    assert unknown.status_code == 404
    assert await event_and_job_counts(runtime) == before

    # SIT-10: accepted — cloning, on the source's node, its own preview URL, env_create.
    reply = await client.post(url, json={**body, "promotion_preset": "commerce-protect"})
    assert reply.status_code == 202, reply.text
    staging_id, job_id = reply.json()["environment_id"], reply.json()["job_id"]
    staging = (await client.get(f"/api/environments/{staging_id}")).json()
    source = (await client.get(f"/api/environments/{production}")).json()
    assert (staging["status"], staging["environment_type"]) == ("cloning", "staging")
    assert staging["source_environment_id"] == production
    assert staging["node_id"] == source["node_id"]
    assert staging["promotion_preset"] == "commerce-protect"
    assert staging["admin_user"] == source["admin_user"]  # the copied database's
    assert staging["preview_url"] == f"http://{staging_id[:8]}.127-0-0-1.sslip.io"
    assert await _status(client, f"/api/sites/{site_id}") == "cloning"
    job_view = (await client.get(f"/api/jobs/{job_id}")).json()
    assert job_view["job_type"] == "env_create"
    assert (job_view["site_id"], job_view["environment_id"], job_view["node_id"]) == (
        site_id,
        staging_id,
        source["node_id"],
    )
    # A mutation in flight (reference 20): 409 conflict, nothing recorded.
    before = await event_and_job_counts(runtime)
    busy = await client.post(url, json={**body, "slug": "other"})
    assert (busy.status_code, busy.json()["code"]) == (409, "conflict")
    assert busy.json()["details"]["status"] == "cloning"
    assert await event_and_job_counts(runtime) == before

    # SIT-11: the clone's job ends without its handler — it is failed, its site active.
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).status_code == 200
    assert await _status(client, f"/api/environments/{staging_id}") == "failed"
    assert await _status(client, f"/api/sites/{site_id}") == "active"
    before = await event_and_job_counts(runtime)
    taken = await client.post(url, json=body)
    assert (taken.status_code, taken.json()["code"]) == (409, "conflict")
    assert taken.json()["details"]["environment_id"] == staging_id
    failed_source = await client.post(
        url, json={**body, "slug": "copy", "source_environment_id": staging_id}
    )
    assert (failed_source.status_code, failed_source.json()["code"]) == (
        409,
        "environment_not_active",
    )
    assert await event_and_job_counts(runtime) == before


@pytest.mark.spec("SIT-13")
async def test_deleting_needs_confirmation_and_goes_production_last(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    site_id, production = await _active_site(client, runtime, "acme")
    reply = await client.post(
        f"/api/sites/{site_id}/environments",
        json={"name": "S", "slug": "staging", "type": "clone", "source_environment_id": production},
    )
    staging_id = reply.json()["environment_id"]
    before = await event_and_job_counts(runtime)
    cloning = await client.delete(f"/api/environments/{staging_id}", params={"confirm": "staging"})
    assert (cloning.status_code, cloning.json()["code"]) == (409, "conflict")
    assert (await client.post(f"/api/jobs/{reply.json()['job_id']}/cancel")).status_code == 200
    before = await event_and_job_counts(runtime)
    cases = [
        (f"/api/environments/{staging_id}", None, 400, "confirmation_required"),
        (f"/api/environments/{staging_id}", "Staging", 400, "confirmation_required"),
        (f"/api/environments/{production}", "production", 409, "conflict"),
        (f"/api/sites/{site_id}", None, 400, "confirmation_required"),
        (f"/api/sites/{site_id}", "acme", 409, "site_has_environments"),
        (f"/api/environments/{uuid.uuid4()}", "x", 404, "not_found"),
        (f"/api/sites/{uuid.uuid4()}", "x", 404, "not_found"),
    ]
    for path, confirm, status, code in cases:
        params = {} if confirm is None else {"confirm": confirm}
        answer = await client.delete(path, params=params)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (path, answer.text)
        if code != "not_found":
            assert answer.json()["details"]["hint"]
    assert await event_and_job_counts(runtime) == before

    # A failed staging environment can be deleted; the production one then goes with its site.
    gone = await client.delete(f"/api/environments/{staging_id}", params={"confirm": "staging"})
    assert gone.status_code == 202, gone.text
    job_view = (await client.get(f"/api/jobs/{gone.json()['job_id']}")).json()
    assert (job_view["job_type"], job_view["environment_id"]) == ("env_delete", staging_id)
    assert await _status(client, f"/api/environments/{staging_id}") == "deleting"
    assert await _status(client, f"/api/sites/{site_id}") == "active"
    again = await client.delete(f"/api/environments/{staging_id}", params={"confirm": "staging"})
    assert (again.status_code, again.json()["code"]) == (409, "conflict")
    still = await client.delete(f"/api/sites/{site_id}", params={"confirm": "acme"})
    assert (still.status_code, still.json()["code"]) == (409, "site_has_environments")
    # (deleted as its job would record it: tests/test_site_node.py runs the real one)
    deleted = EnvironmentDeleted(environment_id=staging_id, job_id=gone.json()["job_id"])
    await runtime.db.write(
        lambda tx: append(tx, f"environment:{staging_id}", None, [deleted], META)
    )
    assert (await client.post(f"/api/jobs/{gone.json()['job_id']}/cancel")).status_code == 200
    site_gone = await client.delete(f"/api/sites/{site_id}", params={"confirm": "acme"})
    assert site_gone.status_code == 202, site_gone.text
    job_view = (await client.get(f"/api/jobs/{site_gone.json()['job_id']}")).json()
    assert (job_view["job_type"], job_view["environment_id"]) == ("site_delete", production)
    assert await _status(client, f"/api/sites/{site_id}") == "deleting"
    assert await _status(client, f"/api/environments/{production}") == "deleting"
    row = await runtime.db.read(
        lambda c: c.execute(
            "SELECT status, deleted_at, db_secret_id FROM environments WHERE id = ?",
            (staging_id,),
        ).fetchone()
    )
    assert row[0] == "deleted" and row[1] and row[2] is None


@pytest.mark.spec("SIT-14")
async def test_reset_brings_back_only_what_can_serve(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    site_id, production = await _active_site(client, runtime, "acme")
    before = await event_and_job_counts(runtime)
    for path in (f"/api/sites/{site_id}/reset", f"/api/environments/{production}/reset"):
        reply = await client.post(path)
        assert (reply.status_code, reply.json()["code"]) == (409, "resource_not_failed")
        assert reply.json()["details"]["status"] == "active"
    assert await event_and_job_counts(runtime) == before

    async def fail_by_cancelled_deletion() -> None:
        gone = await client.delete(f"/api/sites/{site_id}", params={"confirm": "acme"})
        assert gone.status_code == 202, gone.text
        assert (await client.post(f"/api/jobs/{gone.json()['job_id']}/cancel")).status_code == 200
        assert await _status(client, f"/api/sites/{site_id}") == "failed"
        assert await _status(client, f"/api/environments/{production}") == "failed"

    # A deletion cancelled before it ran removed nothing: the production environment
    # can be reset, and its site follows.
    await fail_by_cancelled_deletion()
    reply = await client.post(f"/api/environments/{production}/reset")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"success": True, "status": "active"}
    assert await _status(client, f"/api/sites/{site_id}") == "active"
    await fail_by_cancelled_deletion()
    keyed = {"Idempotency-Key": "reset-after-lost-answer"}
    reply = await client.post(f"/api/sites/{site_id}/reset", headers=keyed)
    assert (reply.status_code, reply.json()) == (200, {"success": True, "status": "active"})
    assert await _status(client, f"/api/environments/{production}") == "active"
    # The answer was lost and the client retries with its key: the same 200 again,
    # not 409 resource_not_failed, and nothing reset twice (counted below).
    again = await client.post(f"/api/sites/{site_id}/reset", headers=keyed)
    assert (again.status_code, again.json()) == (200, reply.json())
    assert again.headers["idempotent-replayed"] == "true"
    resets = await runtime.db.read(
        lambda c: c.execute(
            "SELECT type, actor FROM events WHERE type IN ('site.reset', 'environment.reset')"
        ).fetchall()
    )
    assert sorted(t for t, _ in resets) == ["environment.reset", "environment.reset", "site.reset"]

    # A job of the site in flight: refused (a queued diagnostic job of the site; its
    # node's lock is held, so it stays queued) until it ends.
    await fail_by_cancelled_deletion()
    node_id = (await client.get(f"/api/sites/{site_id}")).json()["node_id"]
    queued = await submit(runtime, job_type="noop", site_id=site_id, node_id=node_id)
    before = await event_and_job_counts(runtime)
    reply = await client.post(f"/api/sites/{site_id}/reset")
    assert (reply.status_code, reply.json()["code"]) == (409, "reset_validation_failed")
    assert queued in reply.json()["details"]["reason"]
    assert await event_and_job_counts(runtime) == before
    assert (await client.post(f"/api/jobs/{queued}/cancel")).status_code == 200
    assert (await client.post(f"/api/sites/{site_id}/reset")).status_code == 200

    # A clone that never got built cannot serve: reset_validation_failed with a hint.
    reply = await client.post(
        f"/api/sites/{site_id}/environments",
        json={"name": "S", "slug": "s", "type": "staging", "source_environment_id": production},
    )
    staging_id, job_id = reply.json()["environment_id"], reply.json()["job_id"]
    building = await client.post(f"/api/environments/{staging_id}/reset")
    assert building.json()["code"] == "resource_not_failed"
    assert (await client.post(f"/api/jobs/{job_id}/cancel")).status_code == 200
    before = await event_and_job_counts(runtime)
    never = await client.post(f"/api/environments/{staging_id}/reset")
    assert (never.status_code, never.json()["code"]) == (409, "reset_validation_failed")
    assert "never built" in never.json()["details"]["reason"]
    assert "delete it" in never.json()["details"]["hint"]
    assert await event_and_job_counts(runtime) == before


@pytest.mark.spec("SIT-9")
def test_the_cells_a_clone_could_not_rewrite_are_listed_once() -> None:
    cell = {"table": "wp_options", "column": "option_value", "key": {"option_id": "7"}}
    passes = [  # what the clone's three search-replace passes reported
        {"cells_skipped": 1, "skipped_tables": ["wp_log"], "skipped_cells": [
            {**cell, "reason": "custom serialization (C:)"}]},
        {"cells_skipped": 1, "skipped_tables": ["wp_log"], "skipped_cells": [
            {**cell, "reason": "custom serialization (C:)"}]},
        {"cells_skipped": 0, "skipped_tables": ["wp_log"], "skipped_cells": []},
    ]  # fmt: skip
    assert skipped_report(passes) == [
        "search-replace skipped table wp_log: it has no primary key (its rows keep the"
        " source's URLs)",
        "search-replace left 1 cell(s) unchanged: serialized data it cannot rewrite without"
        " loss (they keep the source's URLs; fix them by hand)",
        "  skipped: wp_options.option_value where option_id=7: custom serialization (C:)",
    ]
    assert skipped_report([{"cells_skipped": 0, "skipped_tables": [], "skipped_cells": []}]) == []
    assert skipped_report(None) == []


# -- what may be done now: the views' actions ----------------------------------------


async def _actions(client: httpx.AsyncClient, path: str) -> list[str]:
    return list((await client.get(path)).json()["actions"])


@pytest.mark.spec("SIT-15", "SIT-16")
async def test_views_say_what_may_be_done_now(client: httpx.AsyncClient, runtime: Runtime) -> None:
    site_id, production = await _active_site(client, runtime, "acme")
    assert await _actions(client, f"/api/environments/{production}") == [
        "magic_login",
        "clone",
        "cache_toggle",
        "cache_purge",
    ]
    assert await _actions(client, f"/api/sites/{site_id}") == ["create_environment", "delete"]
    # A staging copy in flight: it offers nothing, its site (cloning) nothing, and
    # production no new copy while the site changes.
    reply = await client.post(
        f"/api/sites/{site_id}/environments",
        json={
            "name": "S",
            "slug": "staging",
            "type": "staging",
            "source_environment_id": production,
        },
    )
    staging = reply.json()["environment_id"]
    assert await _actions(client, f"/api/environments/{staging}") == []
    assert await _actions(client, f"/api/sites/{site_id}") == []
    assert await _actions(client, f"/api/environments/{production}") == [
        "magic_login",
        "cache_toggle",
        "cache_purge",
    ]
    # The copy failed (its job cancelled): delete or reset it; the site is active
    # again but is not deleted while the staging environment lives.
    assert (await client.post(f"/api/jobs/{reply.json()['job_id']}/cancel")).status_code == 200
    assert await _actions(client, f"/api/environments/{staging}") == ["delete", "reset"]
    assert await _actions(client, f"/api/sites/{site_id}") == ["create_environment"]
    # Every way to read them says the same.
    listed = (await client.get("/api/sites")).json()["items"][0]
    assert listed["actions"] == ["create_environment"]
    envs = (await client.get(f"/api/sites/{site_id}/environments")).json()
    assert {e["id"]: e["actions"] for e in envs} == {
        production: ["magic_login", "clone", "cache_toggle", "cache_purge"],
        staging: ["delete", "reset"],
    }
    assert {e["id"]: e["actions"] for e in listed["environments"]} == {
        e["id"]: e["actions"] for e in envs
    }


@pytest.mark.spec("SIT-15", "SIT-16")
def test_the_action_rules_by_status() -> None:
    for status in STATUSES:
        production = environment_actions("production", status, "active")
        assert "delete" not in production  # only with its site
        staging = environment_actions("staging", status, "active")
        assert ("delete" in staging) == (status in ("active", "failed")), status
        assert ("reset" in staging) == (status == "failed"), status
        assert ("magic_login" in staging) == (status == "active"), status
        assert ("clone" in staging) == (status == "active"), status
        assert ("clone" in environment_actions("staging", "active", status)) == (status == "active")
        assert ("reset" in site_actions(status, [])) == (status == "failed"), status
        assert ("delete" in site_actions(status, [])) == (status in ("active", "failed")), status
        assert "create_environment" not in site_actions(status, [])  # nothing to copy


@pytest.mark.spec("SIT-17")
async def test_nodes_say_what_may_be_done_now(client: httpx.AsyncClient, runtime: Runtime) -> None:
    ready = await record_node(runtime)
    assert await _actions(client, f"/api/nodes/{ready}") == [
        "check",
        "repin",
        "provision",
        "decommission",
    ]
    listed = (await client.get("/api/nodes")).json()["items"]
    assert [n["actions"] for n in listed if n["id"] == ready] == [
        ["check", "repin", "provision", "decommission"]
    ]
    running = ContainerView(id="c1", state="running", exit_code=None)
    stopped = ContainerView(id="c1", state="exited", exit_code=137)
    fingerprint = "SHA256:" + "A" * 43
    assert node_actions("pending", "ssh", False, None, None) == ["check", "repin", "decommission"]
    assert node_actions("active", "docker", True, fingerprint, running) == [
        "check",
        "repin",
        "provision",
        "stop",
        "decommission",
    ]
    assert node_actions("unreachable", "docker", False, fingerprint, stopped) == [
        "check",
        "repin",
        "start",
        "decommission",
    ]
    assert node_actions("pending", "docker", False, None, None) == [
        "check",
        "repin",
        "decommission",
    ]
    assert node_actions("decommissioned", "docker", False, fingerprint, stopped) == []
