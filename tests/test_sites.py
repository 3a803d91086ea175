"""Sites through the API and the queue's own commands, on real SQLite files: what
creating a site records, what it refuses, listing, and a creation that ends
without its handler. (A site really built on a node: tests/test_site_node.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.events.types import (
    EnvironmentCreated,
    EnvironmentProvisioned,
    SiteCreated,
)
from pressluft.jobs.queue import Outcome, RescueScope, cancel, claim, finish, rescue
from pressluft.runtime import Runtime
from tests.support.jobs import job, submit, until, until_ended
from tests.support.nodes import record_node, recorded_node_events
from tests.support.queue import ACTOR, QueueDb

META = Meta(actor="test:sites")


async def _node(runtime: Runtime, *, provisioned: bool = True) -> str:
    """A provisioned, ready node (recorded, not real) whose lock a long diagnostic
    job holds: the site_create jobs these tests queue stay queued."""
    node_id = await record_node(runtime, provisioned=provisioned)
    busy = await submit(runtime, job_type="sleep", node_id=node_id, seconds=600)

    async def running() -> bool:
        return (await job(runtime, busy)).status == "running"

    await until(running)
    return node_id


async def _counts(runtime: Runtime) -> tuple[int, int]:
    return await runtime.db.read(
        lambda c: (
            c.execute("SELECT count(*) FROM events").fetchone()[0],
            c.execute("SELECT count(*) FROM jobs").fetchone()[0],
        )
    )


@pytest.mark.spec("SIT-1")
async def test_creating_a_site_records_it_and_queues_its_job(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await _node(runtime)
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
    ready = await _node(runtime)
    unprovisioned = await _node(runtime, provisioned=False)
    taken = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": ready})
    assert taken.status_code == 202
    before = await _counts(runtime)
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
        ({"name": "B", "slug": "b", "node_id": str(uuid.uuid4())}, 422, "validation_failed"),
        ({"name": "B", "slug": "b", "node_id": unprovisioned}, 409, "node_not_ready"),
        ({"name": "B", "slug": "a", "node_id": ready}, 409, "conflict"),
    ]
    for body, status, code in cases:
        reply = await client.post("/api/sites", json=body)
        assert (reply.status_code, reply.json()["code"]) == (status, code), (body, reply.text)
        if code in ("node_not_ready", "conflict"):
            assert reply.json()["details"]["hint"]
    assert await _counts(runtime) == before


@pytest.mark.spec("SIT-6")
async def test_sites_are_listed_filtered_and_paged(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    first, second = await _node(runtime), await _node(runtime)
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


@pytest.mark.spec("NOD-29", "SIT-2")
async def test_a_node_with_sites_is_not_decommissioned_and_a_gone_node_hosts_none(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await _node(runtime)
    site = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": node_id})
    assert site.status_code == 202
    before = await _counts(runtime)
    name = (await client.get(f"/api/nodes/{node_id}")).json()["name"]
    gone = await client.delete(f"/api/nodes/{node_id}", params={"confirm": name})
    assert (gone.status_code, gone.json()["code"]) == (409, "node_has_sites")
    assert gone.json()["details"]["environments"] == 1
    assert await _counts(runtime) == before
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
    node_id = await _node(runtime)
    reply = await client.post("/api/sites", json={"name": "A", "slug": "a", "node_id": node_id})
    env_id = reply.json()["environment_id"]
    before = await _counts(runtime)
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
    before = await _counts(runtime)
    gone = await client.post(f"/api/environments/{env_id}/magic-login")
    assert (gone.status_code, gone.json()["code"]) == (502, "node_unreachable")
    assert gone.json()["details"]["reason"] == "node_unreachable"
    assert await _counts(runtime) == before
    missing = await client.post(f"/api/environments/{uuid.uuid4()}/magic-login")
    assert missing.status_code == 404
