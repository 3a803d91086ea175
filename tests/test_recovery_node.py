"""Disaster recovery of the control plane itself (specs/backups.md BAK-81, 82): the
session's live daemon exports its recovery kit and backs itself up into the S3 server;
a second, fresh control plane restored from the kit and the bucket lists the same
nodes and sites and runs a job on the live site's node.

The second daemon runs only for the few seconds the test needs it (two control planes
managing one node is what a restore after a disaster avoids: the first one is gone).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import Daemon, run_cli
from tests.support.live import LiveSite
from tests.support.s3 import S3Server

pytestmark = pytest.mark.daemon

BUCKET = "pressluft-live-recovery"


def _cli_env(live: LiveSite) -> dict[str, str]:
    return {k: v for k, v in live.daemon.env.items() if not k.startswith("PRESSLUFT_DATA_DIR")}


@pytest.mark.spec("BAK-81", "BAK-82")
def test_a_fresh_control_plane_restored_from_the_kit_runs_the_same_nodes_and_sites(
    live: LiveSite, s3_server: S3Server, tmp_path: Path
) -> None:
    s3_server.create_bucket(BUCKET)
    with live.api() as api:
        reply = api.put(
            "/api/backup-target",
            json={
                "endpoint": s3_server.endpoint,
                "region": s3_server.region,
                "bucket": BUCKET,
                "prefix": "dr",
                "access_key_id": s3_server.access_key_id,
                "secret_access_key": s3_server.secret_access_key,
            },
        )
        assert reply.status_code == 200, reply.text
        refused = api.post("/api/control-plane/backups")
        assert refused.status_code == 409  # no kit yet
    kit = tmp_path / "kit.json"
    exported = run_cli(
        "recovery-kit", "export", "--out", str(kit), "--data-dir", str(live.daemon.data_dir),
        env=_cli_env(live),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "OFFLINE" in exported.stderr and kit.stat().st_mode & 0o077 == 0
    key = json.loads(kit.read_text())["recovery_key"]
    with live.api() as api:
        accepted = api.post("/api/control-plane/backups")
        assert accepted.status_code == 202, accepted.text
        live.job_ok(accepted.json()["job_id"], 300)
        copies = api.get("/api/control-plane/backups").json()
        nodes = {n["id"]: n["name"] for n in api.get("/api/nodes").json()["items"]}
        sites = {s["id"]: s["slug"] for s in api.get("/api/sites").json()["items"]}
    assert copies["recovery_kit_exported_at"] and copies["items"][0]["events"] > 0
    # Nothing in the bucket is readable without the key: no SQLite header, no SQL.
    for name, body in s3_server.objects(BUCKET, "dr/control-plane/").items():
        assert b"SQLite format 3" not in body and b"CREATE TABLE" not in body, name
    # The recovery key is in no database byte and no log line of the daemon.
    raw = b"".join(p.read_bytes() for p in live.daemon.data_dir.glob("pressluft.db*"))
    assert key.encode() not in raw and key not in live.daemon.output()

    # A new machine: an empty data dir, the kit and the bucket.
    fresh = tmp_path / "restored"
    restored = run_cli(
        "restore-control-plane", "--kit", str(kit), "--data-dir", str(fresh),
        env=_cli_env(live), timeout=300,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "event log intact" in restored.stdout and "replay verified" in restored.stdout
    again = run_cli(
        "restore-control-plane", "--kit", str(kit), "--data-dir", str(fresh),
        env=_cli_env(live), timeout=300,
    )  # fmt: skip
    assert again.returncode != 0 and "empty data dir" in again.stderr
    second = Daemon(tmp_path / "second", mode="dev", args=("--data-dir", str(fresh)),
                    env=_cli_env(live))  # fmt: skip
    with second:
        headers = live.daemon.auth()  # the same accounts and tokens came back
        with httpx.Client(base_url=second.url, headers=headers, timeout=30) as api:
            assert {n["id"]: n["name"] for n in api.get("/api/nodes").json()["items"]} == nodes
            assert {s["id"]: s["slug"] for s in api.get("/api/sites").json()["items"]} == sites
            node_id = live.node["id"]
            check = api.post(f"/api/nodes/{node_id}/check")
            assert check.status_code == 202, check.text
            job = second.job_ended(check.json()["job_id"], 120)
            assert job["status"] == "succeeded", job
