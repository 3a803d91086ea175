"""Backups and restores of the session's live site on its lab node, into a real
S3-compatible server (moto) with real restic (specs/backups.md): a full backup with
its manifest and nothing readable in the bucket; a restore that brings back a
deleted post and a changed option; a restore whose site fails its checks switches
back; a corrupted object is refused before anything changes; a backup restored into
a new environment.

The live site is left serving its own content (restored to what it was before the
test changed it); its release is the restore's.
"""

from __future__ import annotations

import shlex
import shutil
import time
import uuid
from typing import Any

import pytest

from tests.support.live import SITE_TITLE, LiveSite
from tests.support.s3 import S3Server

pytestmark = pytest.mark.daemon

BUCKET = "pressluft-live-backups"


def _env_user(live: LiveSite) -> str:
    return "wp_" + live.environment_id.replace("-", "")[:12]


def _root(live: LiveSite) -> str:
    return f"/var/www/sites/{live.site_id}/{live.environment_id}"


def _php(live: LiveSite, code: str, environment_id: str | None = None) -> str:
    """PHP (CLI) as the environment's user (default: the live site's production) with
    WordPress loaded: what it prints."""
    env_id = environment_id or live.environment_id
    root = f"/var/www/sites/{live.site_id}/{env_id}"
    wp = f"define('WP_USE_THEMES', false); require '{root}/current/wp-load.php'; {code}"
    script = f"cd {root}/current && php -r {shlex.quote(wp)}"
    user = "wp_" + env_id.replace("-", "")[:12]
    rc, out = live.exec("runuser", "-u", user, "--", "sh", "-c", script)
    assert rc == 0, out
    return out.strip()


def _backup(live: LiveSite, scope: str = "full") -> dict[str, Any]:
    with live.api() as api:
        reply = api.post(f"/api/environments/{live.environment_id}/backups", json={"scope": scope})
        assert reply.status_code == 202, reply.text
        accepted = reply.json()
        started = time.monotonic()
        live.job_ok(accepted["job_id"], 900)
        print(f"backup ({scope}): {time.monotonic() - started:.1f} s")
        backup: dict[str, Any] = api.get(f"/api/backups/{accepted['backup_id']}").json()
    return backup


def _restore(live: LiveSite, backup_id: str, **body: str) -> str:
    with live.api() as api:
        slug = api.get(f"/api/environments/{live.environment_id}").json()["slug"]
        refused = api.post(
            f"/api/environments/{live.environment_id}/restore", json={"backup_id": backup_id}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "confirmation_required"
        reply = api.post(
            f"/api/environments/{live.environment_id}/restore",
            params={"confirm": slug},
            json={"backup_id": backup_id, **body},
        )
        assert reply.status_code == 202, reply.text
        job_id: str = reply.json()["job_id"]
    return job_id


def _environment(live: LiveSite) -> dict[str, Any]:
    with live.api() as api:
        env: dict[str, Any] = api.get(f"/api/environments/{live.environment_id}").json()
    return env


@pytest.fixture(scope="module")
def target(live: LiveSite, s3_server: S3Server) -> S3Server:
    s3_server.create_bucket(BUCKET)
    with live.api() as api:
        reply = api.put(
            "/api/backup-target",
            json={
                "endpoint": s3_server.endpoint,
                "region": s3_server.region,
                "bucket": BUCKET,
                "prefix": "pressluft",
                "access_key_id": s3_server.access_key_id,
                "secret_access_key": s3_server.secret_access_key,
            },
        )
        assert reply.status_code == 200, reply.text
        assert "secret_access_key" not in reply.json()
    return s3_server


@pytest.mark.spec("BAK-22", "BAK-23", "BAK-24", "BAK-41", "BAK-42")
def test_a_restore_brings_back_a_deleted_post_and_a_changed_option(
    live: LiveSite, target: S3Server
) -> None:
    marker = f"Backup marker {uuid.uuid4().hex[:8]}"
    post_id = int(
        _php(
            live,
            "echo wp_insert_post(['post_title' => "
            f"{marker!r}, 'post_status' => 'publish', 'post_content' => 'kept']);",
        )
    )
    _php(live, "update_option('blogdescription', 'before the backup');")
    backup = _backup(live)
    assert backup["status"] == "completed", backup
    manifest = backup["manifest"]
    names = [o["name"] for o in manifest["objects"]]
    assert names == ["db.sql", "files.tar"]
    assert all(len(o["sha256"]) == 64 and o["bytes"] > 0 for o in manifest["objects"])
    posts = int(_php(live, 'global $wpdb; echo $wpdb->get_var("SELECT COUNT(*) FROM wp_posts");'))
    assert manifest["tables"]["wp_posts"] == posts
    assert manifest["files"]["count"] > 1000  # WordPress core and the uploads
    assert manifest["wordpress_version"]
    assert backup["checksum"] and backup["size_bytes"] == sum(
        o["bytes"] for o in manifest["objects"]
    )
    # The bucket holds nothing readable: no SQL, no PHP, not the post.
    stored = target.objects(BUCKET, f"pressluft/sites/{live.site_id}/")
    assert stored
    for key, body in stored.items():
        for plain in (b"CREATE TABLE", b"<?php", marker.encode(), b"wp_options"):
            assert plain not in body, (key, plain)

    # The post deleted, the option changed, then the backup restored.
    _php(live, f"wp_delete_post({post_id}, true);")
    _php(live, "update_option('blogdescription', 'changed after');")
    before_release = _environment(live)["current_release_id"]
    job_id = _restore(live, backup["id"])
    restoring = _environment(live)
    assert restoring["status"] in ("restoring", "active")
    started = time.monotonic()
    live.job_ok(job_id, 900)
    print(f"restore (full): {time.monotonic() - started:.1f} s")
    assert _php(live, f"echo get_post_status({post_id});") == "publish"
    assert _php(live, "echo get_option('blogdescription');") == "before the backup"
    page = live.get("/")
    assert page.status_code == 200 and SITE_TITLE in page.text
    env = _environment(live)
    assert env["status"] == "active" and env["current_release_id"] != before_release
    log = live.job_log(job_id)
    assert "verified db.sql" in log and "pre-restore backup" in log
    with live.api() as api:
        listed = api.get(f"/api/environments/{live.environment_id}/backups").json()["items"]
    pre = [b for b in listed if b["reason"] == "pre_restore"]
    assert pre and pre[0]["status"] == "completed" and pre[0]["job_id"] == job_id
    # Leave the live site as it was: the post gone again.
    _php(live, f"wp_delete_post({post_id}, true);")


@pytest.mark.spec("BAK-44")
def test_a_restored_site_that_fails_its_checks_is_switched_back(
    live: LiveSite, target: S3Server
) -> None:
    broken = f"{_root(live)}/current/wp-content/mu-plugins/zz-broken.php"
    rc, out = live.exec(
        "runuser", "-u", _env_user(live), "--", "sh", "-c",
        f"printf '%s' '<?php throw new Error(\"broken on purpose\");' > {broken}",
    )  # fmt: skip
    assert rc == 0, out
    assert live.get("/").status_code == 500
    backup = _backup(live, "files")
    live.exec("rm", "-f", broken)
    assert live.get("/").status_code == 200
    before = _environment(live)["current_release_id"]
    job_id = _restore(live, backup["id"])
    job = live.daemon.job_ended(job_id, 900)
    assert job["status"] == "failed" and job["error_code"] == "RESTORE_FAILED", job
    assert "switched back" in live.job_log(job_id)
    env = _environment(live)
    assert env["status"] == "active" and env["current_release_id"] == before
    page = live.get("/")
    assert page.status_code == 200 and SITE_TITLE in page.text
    rc, _ = live.exec("test", "-e", broken)
    assert rc != 0


def _node_inventory(live: LiveSite) -> dict[str, str]:
    """What a throwaway environment would leave: the site's directories, databases,
    server blocks, PHP pools, Linux users and cron entries on the node."""
    checks = {
        "dirs": f"ls -1 /var/www/sites/{live.site_id}",
        "databases": "mariadb -N -e 'SHOW DATABASES'",
        "vhosts": "ls -1 /etc/nginx/sites-enabled",
        "pools": "ls -1 /etc/php/*/fpm/pool.d",
        "users": "cut -d: -f1 /etc/passwd",
        "cron": "ls -1 /etc/cron.d",
    }
    found = {}
    for name, command in checks.items():
        rc, out = live.exec("sh", "-c", command)
        assert rc == 0, out
        found[name] = "\n".join(sorted(out.split()))
    return found


@pytest.mark.spec("BAK-66")
def test_a_restore_drill_proves_a_backup_and_leaves_nothing_behind(
    live: LiveSite, target: S3Server
) -> None:
    backup = _backup(live)
    before = _node_inventory(live)
    with live.api() as api:
        reply = api.post(f"/api/backups/{backup['id']}/verify")
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
        started = time.monotonic()
        live.job_ok(job_id, 1200)
        print(f"restore drill: {time.monotonic() - started:.1f} s")
        proven = api.get(f"/api/backups/{backup['id']}").json()
    assert proven["verified_at"] is not None and proven["restore_seconds"] > 0
    assert proven["verify_error"] is None
    log = live.job_log(job_id)
    assert "manifest matched" in log and "removing the throwaway environment" in log
    assert _node_inventory(live) == before
    env = _environment(live)
    assert env["status"] == "active"
    page = live.get("/")
    assert page.status_code == 200 and SITE_TITLE in page.text


@pytest.mark.spec("BAK-49")
def test_a_backup_restored_into_a_new_environment_serves_it_and_production_is_untouched(
    live: LiveSite, target: S3Server
) -> None:
    marker = f"Inspect marker {uuid.uuid4().hex[:8]}"
    post_id = int(
        _php(
            live,
            "echo wp_insert_post(['post_title' => "
            f"{marker!r}, 'post_status' => 'publish', 'post_content' => 'kept']);",
        )
    )
    backup = _backup(live)
    _php(live, f"wp_delete_post({post_id}, true);")
    before = _node_inventory(live)
    with live.api() as api:
        reply = api.post(
            f"/api/sites/{live.site_id}/environments",
            json={
                "name": "Inspect the backup",
                "slug": f"inspect-{uuid.uuid4().hex[:6]}",
                "type": "clone",
                "source_backup_id": backup["id"],
            },
        )
        assert reply.status_code == 202, reply.text
        env_id, job_id = reply.json()["environment_id"], reply.json()["job_id"]
        assert api.get(f"/api/jobs/{job_id}").json()["job_type"] == "env_create_from_backup"
        started = time.monotonic()
        live.job_ok(job_id, 1200)
        print(f"restore into a new environment: {time.monotonic() - started:.1f} s")
        env = api.get(f"/api/environments/{env_id}").json()
    try:
        assert env["status"] == "active", env
        assert env["source_backup_id"] == backup["id"]
        assert env["source_environment_id"] == live.environment_id
        # The backup's content, under the new environment's own URL and password.
        assert _php(live, f"echo get_post_status({post_id});", env_id) == "publish"
        assert _php(live, "echo get_option('siteurl');", env_id) == env["preview_url"].rstrip("/")
        admin = _php(
            live,
            f"$u = get_user_by('login', {env['admin_user']!r});"
            " echo $u ? $u->user_pass : 'missing';",
            env_id,
        )
        source_hash = _php(
            live, f"$u = get_user_by('login', {env['admin_user']!r}); echo $u->user_pass;"
        )
        assert admin not in ("missing", source_hash)
        page = live.get("/", host=env["preview_url"].split("//", 1)[1].rstrip("/"))
        assert page.status_code == 200 and SITE_TITLE in page.text
        with live.db() as conn:
            release = conn.execute(
                "SELECT source_type, source_ref, path FROM releases WHERE id = ?",
                (env["current_release_id"],),
            ).fetchone()
        assert release[:2] == ("backup", backup["id"])
        rc, out = live.exec("ls", "-1", f"/var/www/sites/{live.site_id}/{env_id}/releases")
        assert rc == 0 and out.split() == [release[2].rsplit("/", 1)[-1]]  # the copy's went
        log = live.job_log(job_id)
        assert "verified db.sql" in log and "the copy serves the backup" in log
        # Production serves what it served: the post stays deleted there.
        assert _php(live, f"echo get_post_status({post_id}) ?: 'gone';") == "gone"
        assert _environment(live)["status"] == "active"
    finally:
        live.delete_environments(env_id)
    assert _node_inventory(live) == before


@pytest.mark.spec("BAK-43")
def test_a_changed_byte_in_the_bucket_refuses_the_restore_before_anything_changes(
    live: LiveSite, target: S3Server
) -> None:
    prefix = f"pressluft/sites/{live.site_id}/data/"
    known = set(target.objects(BUCKET, prefix))
    _php(live, f"update_option('pressluft_corrupt_probe', {uuid.uuid4().hex!r});")
    backup = _backup(live, "db")
    added = sorted(set(target.objects(BUCKET, prefix)) - known)
    assert added, "the backup stored no new data object"
    client = target.client()
    originals = {}
    for key in added:
        originals[key] = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        body = bytearray(originals[key])
        body[len(body) // 2] ^= 0x01
        client.put_object(Bucket=BUCKET, Key=key, Body=bytes(body))
    try:
        _php(live, "update_option('pressluft_corrupt_probe', 'after');")
        before = _environment(live)["current_release_id"]
        job_id = _restore(live, backup["id"])
        job = live.daemon.job_ended(job_id, 900)
        assert job["status"] == "failed" and job["error_code"] == "BACKUP_CORRUPT", job
        assert _php(live, "echo get_option('pressluft_corrupt_probe');") == "after"
        env = _environment(live)
        assert env["status"] == "active" and env["current_release_id"] == before
        assert live.get("/").status_code == 200
    finally:
        # The repository is the site's for the whole session: later backups would
        # deduplicate against the damaged blobs.
        for key, body in originals.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        # restic keeps the tree packs it read in the daemon's cache: the damaged ones go.
        shutil.rmtree(live.daemon.data_dir / "cache" / "restic", ignore_errors=True)
        _php(live, "delete_option('pressluft_corrupt_probe');")
