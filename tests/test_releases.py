"""Releases in-process on real SQLite files (specs/releases.md): the list, the
activation's refusals and its hold, which releases pruning removes and the
projection's guard (releases activated on a node: tests/test_releases_node.py)."""

from __future__ import annotations

import httpx
import pytest

from pressluft.contexts.releases.loaders import EnvironmentReleases, RecordedRelease
from pressluft.contexts.releases.workers import releases_to_prune
from pressluft.contexts.sites.events import (
    EnvironmentReleasesPruned,
    EnvironmentRestored,
    EnvironmentRestoreRequested,
)
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.projection import GuardFailed
from pressluft.ids import new_id
from pressluft.runtime import Runtime
from tests.support.nodes import blocked_node, event_and_job_counts
from tests.test_domains import active_environment

META = Meta(actor="test:releases")


async def second_release(runtime: Runtime, env_id: str) -> str:
    """A restore's release recorded as the backups capability records it: its id."""
    release_id = new_id()

    def seed(tx: WriteTx) -> None:
        backup_id, job_id = new_id(), new_id()
        append(tx, f"environment:{env_id}", None, [
            EnvironmentRestoreRequested(environment_id=env_id, job_id=job_id, backup_id=backup_id),
            EnvironmentRestored(environment_id=env_id, job_id=job_id, backup_id=backup_id,
                                release_id=release_id, release_path=f"/x/releases/{release_id}"),
        ], META)  # fmt: skip

    await runtime.db.write(seed)
    return release_id


@pytest.mark.spec("REL-1")
async def test_an_environments_releases_are_listed_newest_first_with_the_served_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    first = (await client.get(f"/api/environments/{env_id}")).json()["current_release_id"]
    second = await second_release(runtime, env_id)
    url = f"/api/environments/{env_id}/releases"
    page = (await client.get(url)).json()
    assert [r["id"] for r in page["items"]] == [second, first] and not page["has_more"]
    assert [r["current"] for r in page["items"]] == [True, False]
    assert page["items"][0]["source_type"] == "backup"
    assert all(r["pruned_at"] is None for r in page["items"])
    one = (await client.get(url, params={"limit": 1})).json()
    assert one["has_more"] and one["next_before"] == second
    rest = (await client.get(url, params={"before": second})).json()
    assert [r["id"] for r in rest["items"]] == [first]

    def prune(tx: WriteTx) -> None:
        event = EnvironmentReleasesPruned(environment_id=env_id, job_id=new_id(),
                                          release_ids=[first])  # fmt: skip
        append(tx, f"environment:{env_id}", None, [event], META)

    await runtime.db.write(prune)
    kept = (await client.get(url, params={"kept": "true"})).json()
    assert [r["id"] for r in kept["items"]] == [second]
    everything = (await client.get(url)).json()["items"]
    assert everything[1]["pruned_at"] is not None
    assert (await client.get(url, params={"kept": "yes"})).status_code == 400
    assert (await client.get(f"/api/environments/{new_id()}/releases")).status_code == 404


@pytest.mark.spec("REL-2")
async def test_activating_refuses_what_cannot_be_served_and_holds_the_environment(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    other_env = await active_environment(runtime, node_id)
    first = (await client.get(f"/api/environments/{env_id}")).json()["current_release_id"]
    theirs = (await client.get(f"/api/environments/{other_env}")).json()["current_release_id"]
    second = await second_release(runtime, env_id)
    url = f"/api/environments/{env_id}/releases/{{}}/activate"
    before = await event_and_job_counts(runtime)
    for release_id, status, code in [
        (theirs, 404, "not_found"),
        (new_id(), 404, "not_found"),
        (second, 409, "release_not_kept"),  # the one served
    ]:
        reply = await client.post(url.format(release_id))
        assert reply.status_code == status and reply.json()["code"] == code, reply.text
    assert await event_and_job_counts(runtime) == before
    accepted = await client.post(url.format(first))
    assert accepted.status_code == 202, accepted.text
    env = (await client.get(f"/api/environments/{env_id}")).json()
    assert env["status"] == "deploying"
    job = (await client.get(f"/api/jobs/{accepted.json()['job_id']}")).json()
    assert job["job_type"] == "release_activate" and job["node_id"] == node_id
    again = await client.post(url.format(first))
    assert again.status_code == 409 and again.json()["code"] == "environment_not_active"
    # The job cancelled before it ran: the environment it held is failed (JOB-48).
    await client.post(f"/api/jobs/{accepted.json()['job_id']}/cancel")
    assert (await client.get(f"/api/environments/{env_id}")).json()["status"] == "failed"


def _recorded(current: str, *names: str, pruned: tuple[str, ...] = ()) -> EnvironmentReleases:
    return EnvironmentReleases(
        current_release_id=current,
        releases=[
            RecordedRelease(
                release_id=n, name=n, created_at=f"2026-12-0{i}T00:00:00Z", pruned=n in pruned
            )
            for i, n in enumerate(names, 1)
        ],
    )


@pytest.mark.spec("REL-5")
async def test_pruning_keeps_the_newest_and_the_served_release(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Newest first: e, d, c, b, a.
    assert releases_to_prune(_recorded("e", "e", "d", "c", "b", "a"), 2) == ["c", "b", "a"]
    assert releases_to_prune(_recorded("a", "e", "d", "c", "b", "a"), 2) == ["c", "b"]
    assert releases_to_prune(_recorded("d", "e", "d", "c", pruned=("c",)), 2) == []
    assert releases_to_prune(_recorded("e", "e", "d"), 5) == []
    # The projection refuses to mark the served release pruned.
    env_id = await active_environment(runtime, await blocked_node(runtime))
    served = (await client.get(f"/api/environments/{env_id}")).json()["current_release_id"]

    def prune(tx: WriteTx) -> None:
        event = EnvironmentReleasesPruned(environment_id=env_id, job_id=new_id(),
                                          release_ids=[served])  # fmt: skip
        append(tx, f"environment:{env_id}", None, [event], META)

    with pytest.raises(GuardFailed):
        await runtime.db.write(prune)


@pytest.mark.spec("REL-7")
async def test_the_site_page_lists_releases_and_offers_activate(
    session: httpx.AsyncClient, runtime: Runtime
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    first = (await session.get(f"/api/environments/{env_id}")).json()["current_release_id"]
    second = await second_release(runtime, env_id)
    site_id = (await session.get(f"/api/environments/{env_id}")).json()["site_id"]
    page = (await session.get(f"/sites/{site_id}")).text
    assert (
        '<section id="section-releases"' in page
        and "not yet" not in page.split('id="section-releases"', 1)[1].split("</section>", 1)[0]
    )
    section = (await session.get(f"/sites/{site_id}/sections/releases")).text
    assert f'data-release-id="{second}" class="current"' in section and "served" in section
    assert f'data-url="/api/environments/{env_id}/releases/{first}/activate"' in section
    assert f"/releases/{second}/activate" not in section
