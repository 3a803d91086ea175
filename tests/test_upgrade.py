"""Upgrades: a data dir written by an earlier Pressluft is read by this one.

The earlier Pressluft is a fixed commit, `OLD_COMMIT` (7c80f13, "Metrics: a leaf
again…"): the last commit whose schema differs from today's — it stops at
migration 0015, so its data needs a migration (0016, job holds) and the events it
wrote must still project into today's tables. A fixed commit rather than `HEAD~1`:
most commits change no schema, so the previous one would test nothing new, and a
fixed one keeps the test's meaning stable. Move it forward when a release is cut
(or to the last commit before a new migration), never to a commit that edited an
applied migration. It needs the repository's history (CI runs on a full clone).

The old package is built from `git archive` of that commit, installed with
`pip install --no-deps --target` and run by this interpreter with PYTHONPATH set to
it (today's dependencies; no second install), from a directory outside the checkout.
It writes through its API — an admin and two tokens, settings, an SSH node (its
address answers nothing, so its first check fails: a node, jobs and a failure on
record, cancelled while it waits to retry) — and stops; then this code starts on the same data dir.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.support.daemon import Daemon, free_port
from tests.support.packaging import build_wheel, clean_env, export_commit, install_target

pytestmark = pytest.mark.daemon

OLD_COMMIT = "7c80f13cce2b3888790374f63007bd878723cfff"
OLD_SCHEMA = 15


class Old(NamedTuple):
    target: Path  # PYTHONPATH for the old package
    scratch: Path


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Old:
    root = tmp_path_factory.mktemp("upgrade")
    source = export_commit(OLD_COMMIT, root / "src")
    target = install_target(build_wheel(source, root / "dist"), root / "old")
    scratch = root / "scratch"
    scratch.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import pressluft; print(pressluft.__file__)"],
        cwd=scratch, env=clean_env(PYTHONPATH=str(target)), capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(target), where  # the old package, not this checkout
    return Old(target, scratch)


def _get(daemon: Daemon, path: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else daemon.auth()
    reply = httpx.get(daemon.url + path, headers=headers, timeout=30)
    assert reply.status_code == 200, (path, reply.status_code, reply.text)
    return reply.json()


def _settled(daemon: Daemon, node_id: str) -> list[dict[str, Any]]:
    """The node's jobs once its first check has failed an attempt (no SSH server
    answers) and is cancelled instead of waiting out its retries' backoff."""
    deadline = time.monotonic() + 120
    jobs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        jobs = _get(daemon, f"/api/jobs?node_id={node_id}")["items"]
        if jobs and all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
            return jobs
        for job in jobs:
            if job["status"] == "queued" and job["attempt_count"] >= 1:
                cancel = httpx.post(
                    f"{daemon.url}/api/jobs/{job['id']}/cancel", headers=daemon.auth(), timeout=30
                )
                assert cancel.status_code in (200, 202), cancel.text
        time.sleep(0.5)
    raise AssertionError(f"the node's jobs did not settle: {jobs}")


def _job_keys(jobs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("id", "job_type", "status", "error_code", "node_id", "created_at")
    return [tuple(job.get(k) for k in keys) for job in jobs]


@pytest.mark.spec("PKG-3")
def test_data_written_by_the_old_package_is_read_by_this_one(old: Old) -> None:
    data = old.scratch / "data"
    old_env = clean_env(PRESSLUFT_DATA_DIR=str(data), PYTHONPATH=str(old.target))
    before = Daemon(old.scratch / "old", mode="serve", command=(sys.executable, "-m", "pressluft"))
    before.env = old_env
    with before:
        admin, reader = before.token(), before.token(("read",))
        settings = {
            "control_plane_domain": "panel.example.com",
            "preview_domain": "preview.example.com",
            "dns01_provider": "cloudflare",
            "dns01_credentials": {"api_token": "a-test-token"},  # sealed in the vault
        }
        changed = httpx.patch(
            before.url + "/api/settings", json=settings, headers=before.auth(), timeout=30
        )
        assert changed.status_code == 200, changed.text
        body = {"provider": "ssh", "name": "old-box", "host": "127.0.0.1",
                "ssh_port": free_port()}  # fmt: skip
        node = httpx.post(before.url + "/api/nodes", json=body, headers=before.auth(), timeout=30)
        assert node.status_code == 202, node.text
        node_id = node.json()["node_id"]
        old_jobs = _settled(before, node_id)
        old_node = _get(before, f"/api/nodes/{node_id}")
        old_settings = _get(before, "/api/settings")
        old_tokens = _get(before, "/api/tokens")["items"]
        old_me = _get(before, "/api/me", reader)
    assert before.proc is not None and before.proc.returncode == 0, before.output()[-3000:]
    with closing(sqlite3.connect(data / "pressluft.db")) as conn:
        (version,) = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    assert version == OLD_SCHEMA  # the old package's schema: this code must migrate it

    after = Daemon(old.scratch / "new", mode="serve")  # this checkout's code
    after.env = clean_env(PRESSLUFT_DATA_DIR=str(data))
    with after:
        assert "applied migration 0016_job_holds" in after.output()
        after._tokens[("admin",)] = admin  # the old admin token, as the client kept it
        assert _get(after, "/api/me", reader)["actor"] == old_me["actor"]
        email, password = after.admin_credentials()
        login = httpx.post(
            after.url + "/api/login", json={"email": email, "password": password}, timeout=30
        )
        assert login.status_code == 200, login.text
        assert _get(after, "/api/settings") == old_settings
        new_node = _get(after, f"/api/nodes/{node_id}")
        for key in ("id", "name", "provider", "host", "ssh_port", "status", "public_key",
                    "created_at"):  # fmt: skip
            assert new_node.get(key) == old_node.get(key), (key, old_node, new_node)
        new_jobs = _get(after, f"/api/jobs?node_id={node_id}")["items"]
        assert _job_keys(new_jobs) == _job_keys(old_jobs)
        tokens = _get(after, "/api/tokens")["items"]
        assert [t["id"] for t in tokens] == [t["id"] for t in old_tokens]
    env = clean_env(PRESSLUFT_DATA_DIR=str(data))
    for args, said in ((("events", "verify"), ""), (("replay", "--verify"), "replay verified")):
        done = subprocess.run(
            [sys.executable, "-m", "pressluft", *args], cwd=old.scratch, env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert said in done.stdout, done.stdout
