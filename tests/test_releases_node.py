"""Releases of the live site on its lab node (specs/releases.md): a kept release
activated and checked, a release that fails its checks switched back, pruning to the
newest `releases_keep` (2 on the live daemon), a change killed with the daemon. The
second release comes from a restore of a files backup (restic into the session's S3
server).

The live site is left serving the newest release, as it found it.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.support.live import SITE_TITLE, LiveSite, until
from tests.support.s3 import S3Server

pytestmark = pytest.mark.daemon


def _root(live: LiveSite) -> str:
    return f"/var/www/sites/{live.site_id}/{live.environment_id}"


def _releases(live: LiveSite, **params: str) -> list[dict[str, Any]]:
    with live.api() as api:
        reply = api.get(f"/api/environments/{live.environment_id}/releases", params=params)
        assert reply.status_code == 200, reply.text
        items: list[dict[str, Any]] = reply.json()["items"]
    return items


def _activate(live: LiveSite, release_id: str) -> dict[str, Any]:
    with live.api() as api:
        reply = api.post(f"/api/environments/{live.environment_id}/releases/{release_id}/activate")
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        env = api.get(f"/api/environments/{live.environment_id}").json()
        assert env["status"] in ("deploying", "active")
        job: dict[str, Any] = live.daemon.job_ended(job_id, 600)
    return job


def _on_node(live: LiveSite) -> list[str]:
    rc, out = live.exec("sh", "-c", f"ls -1 {_root(live)}/releases")
    assert rc == 0, out
    return sorted(out.split())


def _link(live: LiveSite) -> str:
    """Where the node's `current` points."""
    rc, out = live.exec("readlink", f"{_root(live)}/current")
    assert rc == 0, out
    return out.strip()


def _name(release: dict[str, Any]) -> str:
    return str(release["path"]).rstrip("/").rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def two_releases(live: LiveSite, s3_server: S3Server) -> list[dict[str, Any]]:
    """At least two kept releases of the live site (a files backup restored makes the
    second): the kept ones, newest first."""
    if len(_releases(live, kept="true")) < 2:
        with live.api() as api:
            s3_server.configure_target(api, "pressluft-live-releases", "releases")
            reply = api.post(
                f"/api/environments/{live.environment_id}/backups", json={"scope": "files"}
            )
            assert reply.status_code == 202, reply.text
            live.job_ok(reply.json()["job_id"], 900)
            slug = api.get(f"/api/environments/{live.environment_id}").json()["slug"]
            restore = api.post(
                f"/api/environments/{live.environment_id}/restore",
                params={"confirm": slug},
                json={"backup_id": reply.json()["backup_id"]},
            )
            assert restore.status_code == 202, restore.text
            live.job_ok(restore.json()["job_id"], 900)
    kept = _releases(live, kept="true")
    assert len(kept) >= 2
    return kept


@pytest.mark.spec("REL-1", "REL-3", "REL-5")
def test_a_kept_release_is_served_again_and_older_ones_are_pruned(
    live: LiveSite, two_releases: list[dict[str, Any]]
) -> None:
    newest, older = two_releases[0], two_releases[1]
    assert newest["current"] and not older["current"]
    marker = f"kept {time.monotonic_ns()}"
    rc, out = live.exec(
        "mariadb", "-N", "-e",
        f"UPDATE wp_{live.environment_id.replace('-', '')[:12]}.wp_options SET option_value ="
        f" '{marker}' WHERE option_name = 'blogdescription'",
    )  # fmt: skip
    assert rc == 0, out  # (the database is named as its environment's user)
    started = time.monotonic()
    job = _activate(live, older["id"])
    assert job["status"] == "succeeded", live.job_log(str(job["id"]))
    print(f"release activated: {time.monotonic() - started:.1f} s")
    listed = _releases(live)
    current = next(r for r in listed if r["current"])
    assert current["id"] == older["id"]
    page = live.get("/")
    assert page.status_code == 200 and SITE_TITLE in page.text
    assert _link(live) == f"releases/{_name(older)}"
    # The database was not touched.
    rc, out = live.exec(
        "mariadb", "-N", "-e",
        f"SELECT option_value FROM wp_{live.environment_id.replace('-', '')[:12]}.wp_options"
        " WHERE option_name = 'blogdescription'",
    )  # fmt: skip
    assert out.strip() == marker
    # keep = 2: the newest two stay (the served one among them), the others went.
    kept = [r for r in listed if r["pruned_at"] is None]
    assert {r["id"] for r in kept} == {newest["id"], older["id"]}
    assert _on_node(live) == sorted(_name(r) for r in kept)
    assert all(r["pruned_at"] for r in listed if r not in kept)
    with live.api() as api:
        refused = api.post(
            f"/api/environments/{live.environment_id}/releases/{older['id']}/activate"
        )
    assert refused.status_code == 409 and refused.json()["code"] == "release_not_kept"
    # And forward again: the newest is served.
    assert _activate(live, newest["id"])["status"] == "succeeded"
    assert next(r for r in _releases(live) if r["current"])["id"] == newest["id"]


@pytest.mark.spec("REL-4")
def test_a_release_that_fails_its_checks_is_switched_back(
    live: LiveSite, two_releases: list[dict[str, Any]]
) -> None:
    served = next(r for r in _releases(live, kept="true") if r["current"])
    other = next(r for r in _releases(live, kept="true") if not r["current"])
    broken = f"{_root(live)}/releases/{_name(other)}/wp-content/mu-plugins/zz-broken.php"
    rc, out = live.exec(
        "sh", "-c",
        f"mkdir -p $(dirname {broken}) && printf '<?php\\nundefined_function_x();\\n' > {broken}",
    )  # fmt: skip
    assert rc == 0, out
    try:
        job = _activate(live, other["id"])
        assert job["status"] == "failed" and job["error_code"] == "RELEASE_UNHEALTHY", job
        log = live.job_log(str(job["id"]))
        assert f"switched back to {_name(served)}" in log
        assert next(r for r in _releases(live) if r["current"])["id"] == served["id"]
        with live.api() as api:
            env = api.get(f"/api/environments/{live.environment_id}").json()
        assert env["status"] == "active" and env["current_release_id"] == served["id"]
        assert _link(live) == f"releases/{_name(served)}"
        page = live.get("/")
        assert page.status_code == 200 and SITE_TITLE in page.text
    finally:
        live.exec("rm", "-f", broken)


def _logged(live: LiveSite, job_id: str, text: str) -> bool:
    with live.api() as api:
        page = api.get(f"/api/jobs/{job_id}/log", params={"limit": 5000})
    assert page.status_code == 200, page.text
    return any(text in line["text"] for line in page.json()["lines"])


@pytest.mark.spec("REL-6")
def test_a_release_change_killed_with_the_daemon_serves_what_is_recorded(
    live: LiveSite, two_releases: list[dict[str, Any]]
) -> None:
    """The kill right after the switch (the release served, not yet checked): the
    second attempt serves the release the control plane records as current. The
    window is the checks' seconds; a kill after the job finished finds it succeeded
    (said, and accepted)."""
    served = next(r for r in _releases(live, kept="true") if r["current"])
    other = next(r for r in _releases(live, kept="true") if not r["current"])
    with live.api() as api:
        reply = api.post(f"/api/environments/{live.environment_id}/releases/{other['id']}/activate")
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    until(lambda: _logged(live, job_id, "switched: serving release"), within=300, every=0.1)
    live.daemon.send(signal.SIGKILL)
    live.daemon.wait()
    live.daemon.start().wait_ready(60)
    job = live.daemon.job_ended(job_id, 300)
    print(f"the release change after the kill: {job['status']} {job['error_code']}")
    with live.api() as api:
        env = api.get(f"/api/environments/{live.environment_id}").json()
    assert env["status"] == "active"
    if job["status"] == "succeeded":  # the kill came after the change had finished
        assert env["current_release_id"] == other["id"]
    else:
        assert job["error_code"] == "RELEASE_INTERRUPTED", (job, live.job_log(job_id)[-2000:])
        assert env["current_release_id"] == served["id"]
    current = next(r for r in _releases(live) if r["current"])
    assert _link(live) == f"releases/{_name(current)}"
    page = live.get("/")
    assert page.status_code == 200 and SITE_TITLE in page.text
    # Leave the newest release served, as the module found it.
    newest = _releases(live, kept="true")[0]
    if not newest["current"]:
        assert _activate(live, newest["id"])["status"] == "succeeded"
