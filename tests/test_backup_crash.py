"""The daemon killed (SIGKILL) during a backup and during a restore of the session's
live site, then started again on the same data dir and port (specs/backups.md
BAK-25, BAK-46), and a pre-restore backup that fails (BAK-45): no backup shows
completed without all its objects, the environment serves, nothing is stuck.

The site gets ~100 MB of random uploads first (incompressible, not deduplicated),
so a backup, a restore's verification and its staging stream long enough to be
killed in the middle; they are removed again when the module ends. The kills aim
at log lines and land once restic streams: the files stream of a backup in flight
(after `stored db.sql`), a restore's staging in flight (after `staged db.sql`), its
pre-restore backup in flight; one lands right after a restore's switch. A files
stream cut between two archive members (which tar takes for a whole archive) is
driven on the node with the script itself. `backup_cleanup` has no endpoint: it is
queued with the queue's own command while the daemon is stopped (as the CLI writes).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pressluft.clock import SystemClock
from pressluft.contexts.backups.workers import SCRIPT, BackupCleanup
from pressluft.contexts.sites.loaders import env_names
from pressluft.datadir import DataDirLock
from pressluft.db import WriteTx, open_sync, write_now
from pressluft.events import Meta
from pressluft.features import PROJECTORS
from pressluft.jobs.workers import NoArgs, enqueue_job
from pressluft.runners import restic
from tests.support.live import SITE_TITLE, LiveSite, until
from tests.support.s3 import S3Server
from tests.test_backup_node import BUCKET as NODE_BUCKET
from tests.test_backup_node import _env_user, _environment, _php, _restore, _root

pytestmark = pytest.mark.daemon

#: The bucket of tests/test_backup_node.py, not one of our own: a site's repository
#: URL is fixed when its first backup creates it (`backup_repositories`), so whichever
#: module backs the live site up first decides the bucket for the whole session, and
#: the other module's checks of its bucket's objects would find none.
BUCKET = NODE_BUCKET
#: Random uploads that make every stream long enough to be killed in the middle.
BULK_DIR = "pressluft-crash-bulk"
BULK_FILES, BULK_MIB = 20, 5


# -- the target, the bulk, the repository ------------------------------------------


def _configure(live: LiveSite, s3: S3Server, key: tuple[str, str]) -> None:
    with live.api() as api:
        reply = api.put(
            "/api/backup-target",
            json={
                "endpoint": s3.endpoint,
                "region": s3.region,
                "bucket": BUCKET,
                "prefix": "pressluft",
                "access_key_id": key[0],
                "secret_access_key": key[1],
            },
        )
        assert reply.status_code == 200, reply.text


@pytest.fixture(scope="module")
def target(live: LiveSite, s3_server: S3Server) -> S3Server:
    s3_server.create_bucket(BUCKET)  # or kept, made by tests/test_backup_node.py
    _configure(live, s3_server, (s3_server.access_key_id, s3_server.secret_access_key))
    return s3_server


@pytest.fixture(scope="module")
def bulky(live: LiveSite, target: S3Server) -> Iterator[None]:
    """~100 MB of random uploads in the live environment (as its user), removed after."""
    bulk = f"{_root(live)}/shared/uploads/{BULK_DIR}"
    fill = (
        f"mkdir -p {bulk} && for i in $(seq 1 {BULK_FILES}); do"
        f" head -c {BULK_MIB}M /dev/urandom > {bulk}/blob-$i.bin; done"
    )
    rc, out = live.exec("runuser", "-u", _env_user(live), "--", "sh", "-c", fill)
    assert rc == 0, out
    try:
        yield
    finally:
        live.exec("rm", "-rf", bulk)


def _repository(live: LiveSite, s3: S3Server, cache: Path) -> restic.Repository:
    """The site's repository as the daemon opens it (its URL and its password from the
    daemon's database and vault)."""
    with live.db() as db:
        url, secret_id = db.execute(
            "SELECT url, secret_id FROM backup_repositories WHERE site_id = ?", (live.site_id,)
        ).fetchone()
        password = live.vault().open(db, secret_id).decode()
    return restic.Repository(url=url, password=password, target=s3.target(BUCKET),
                             cache_dir=cache)  # fmt: skip


def _snapshots(repo: restic.Repository) -> list[restic.Snapshot]:
    return asyncio.run(restic.snapshots(repo))


def _owner(snapshot: restic.Snapshot) -> str | None:
    return next((t.partition("=")[2] for t in snapshot.tags if t.startswith("backup=")), None)


def _backups(live: LiveSite) -> list[dict[str, Any]]:
    """Every backup of the live environment."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    with live.api() as api:
        while True:
            page = api.get(f"/api/environments/{live.environment_id}/backups", params=params)
            assert page.status_code == 200, page.text
            found += page.json()["items"]
            if page.json()["next_before"] is None:
                return found
            params["before"] = page.json()["next_before"]


def _assert_completed_backups_whole(
    live: LiveSite, repo: restic.Repository, *, only_live: bool = True
) -> None:
    """Every completed backup's objects exist and read back with their SHA-256; with
    `only_live`, every snapshot left belongs to a live (pending, running, completed)
    backup."""
    backups = _backups(live)
    live_ids = {b["id"] for b in backups if b["status"] in ("pending", "running", "completed")}
    if only_live:
        for snapshot in _snapshots(repo):
            assert _owner(snapshot) in live_ids, f"snapshot {snapshot.id} of no live backup"
    for backup in backups:
        if backup["status"] != "completed":
            continue
        for obj in backup["manifest"]["objects"]:
            asyncio.run(restic.verify(repo, obj["snapshot_id"], obj["name"], obj["sha256"],
                                      int(obj["bytes"])))  # fmt: skip


# -- the daemon, killed and started again ------------------------------------------


def _restics(url: str) -> dict[int, str]:
    """Processes working on the repository `url` (restic's environment names it): pid →
    the program (`restic`, or `setpriv` just before it becomes restic)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RESTIC_REPOSITORY={url}".encode() in environ:
            found[int(entry.name)] = os.path.basename(argv[0]).decode(errors="replace")
    return found


def _kill_and_restart(
    live: LiveSite,
    repo_url: str,
    while_down: Callable[[], None] | None = None,
    *,
    streaming: bool = True,
) -> float:
    """Once restic streams (when `streaming`), SIGKILL the daemon, check that nothing
    of restic is left (and run `while_down`), start the daemon again; the seconds it
    took until it answered."""
    if streaming:
        until(lambda: "restic" in _restics(repo_url).values(), within=30, every=0.02)
    killed = time.monotonic()
    live.daemon.send(signal.SIGKILL)
    live.daemon.wait()
    # restic dies with the daemon (its parent-death signal): none is left running.
    until(lambda: not _restics(repo_url), within=10, every=0.1)
    if while_down is not None:
        while_down()
    live.daemon.start().wait_ready(60)
    return time.monotonic() - killed


def _lines(live: LiveSite, job_id: str) -> list[dict[str, Any]]:
    """Every line of the job's log (all attempts)."""
    lines: list[dict[str, Any]] = []
    after = 0
    with httpx.Client(base_url=live.daemon.url, headers=live.daemon.auth(), timeout=30) as api:
        while True:
            page = api.get(f"/api/jobs/{job_id}/log", params={"after": after, "limit": 5000})
            assert page.status_code == 200, page.text
            got = page.json()["lines"]
            if not got:
                return lines
            lines += got
            after = page.json()["next_after"]


def _logged(live: LiveSite, job_id: str, attempt: int, text: str) -> bool:
    return any(line["attempt"] == attempt and text in line["text"] for line in _lines(live, job_id))


def _await_line(live: LiveSite, job_id: str, text: str, within: float = 600) -> None:
    """Until the job's first attempt logs `text` (the job still running)."""

    def seen() -> bool:
        if _logged(live, job_id, 1, text):
            return True
        job = httpx.get(f"{live.daemon.url}/api/jobs/{job_id}", headers=live.daemon.auth()).json()
        assert job["status"] in ("queued", "running"), (job, _lines(live, job_id)[-20:])
        return False

    until(seen, within=within, every=0.1)


def _job(live: LiveSite, job_id: str) -> dict[str, Any]:
    reply = httpx.get(f"{live.daemon.url}/api/jobs/{job_id}", headers=live.daemon.auth())
    job: dict[str, Any] = reply.json()
    return job


def _second_attempt_after(live: LiveSite, job_id: str, within: float = 120) -> float:
    """Seconds until the job's second attempt has started (the first rescued)."""
    started = time.monotonic()
    until(lambda: _job(live, job_id)["attempt_count"] >= 2, within=within, every=0.2)
    return time.monotonic() - started


def _settle(live: LiveSite) -> None:
    """The site's queued and running jobs (a scheduled backup or drill) have ended."""
    with live.api() as api:
        live._settle(api, {live.site_id})


def _run_cleanup(live: LiveSite) -> dict[str, object]:
    """A `backup_cleanup` now (there is no endpoint for it): the daemon stopped
    gracefully, the job queued through the queue's own command on its data dir (as
    the CLI writes: the data dir locked), the daemon started again; the job once
    it ended."""
    _settle(live)
    live.daemon.stop()
    data_dir = live.daemon.data_dir
    lock = DataDirLock(data_dir, "tests: queue a backup_cleanup")
    lock.acquire()
    try:
        conn = open_sync(data_dir / "pressluft.db", "writer")
        try:

            def cleanup(tx: WriteTx) -> str:
                return enqueue_job(tx, BackupCleanup, NoArgs(), Meta(actor="test:crash"))

            job_id = write_now(conn, cleanup, SystemClock().now(), PROJECTORS)
        finally:
            conn.close()
    finally:
        lock.release()
    live.daemon.start().wait_ready(60)
    return live.job_ok(job_id, 600)


def _ls(live: LiveSite, path: str) -> set[str]:
    rc, out = live.exec("ls", "-1A", path)
    assert rc == 0, out
    return set(out.split())


def _releases(live: LiveSite) -> set[str]:
    return _ls(live, f"{_root(live)}/releases")


def _node_leftovers(live: LiveSite, releases_before: set[str]) -> list[str]:
    """What a restore stages or replaces, left on the node: `*_rs`/`*_ro`/`*_rf`
    databases, `releases/.*.restore`, `shared/.uploads.*`, and a release not there
    before that is not served."""
    root = _root(live)
    rc, out = live.exec("mariadb", "-N", "-e", "SHOW DATABASES")
    assert rc == 0, out
    left = [d for d in out.split() if d.endswith(("_rs", "_ro", "_rf"))]
    rc, current = live.exec("readlink", f"{root}/current")
    assert rc == 0, current
    served = current.strip().rsplit("/", 1)[-1]
    left += sorted(n for n in _ls(live, f"{root}/shared") if n.startswith(".uploads."))
    releases = _releases(live)
    left += sorted(n for n in releases if n.endswith(".restore"))
    left += sorted(releases - releases_before - {served} - {n for n in left})
    return left


def _node_streams(live: LiveSite) -> list[str]:
    """`pressluft-backup` processes still running on the node."""
    rc, out = live.exec("sh", "-c", "ps -eo pid,args | grep '[p]ressluft-backup' || true")
    assert rc == 0, out
    return [line for line in out.splitlines() if line.strip()]


def _post_backup(live: LiveSite, scope: str = "full") -> dict[str, str]:
    with live.api() as api:
        reply = api.post(f"/api/environments/{live.environment_id}/backups", json={"scope": scope})
    assert reply.status_code == 202, reply.text
    accepted: dict[str, str] = reply.json()
    return accepted


def _backup(live: LiveSite, scope: str = "full") -> dict[str, Any]:
    accepted = _post_backup(live, scope)
    live.job_ok(accepted["job_id"], 900)
    with live.api() as api:
        backup: dict[str, Any] = api.get(f"/api/backups/{accepted['backup_id']}").json()
    assert backup["status"] == "completed", backup
    return backup


def _serves_as_before(live: LiveSite, release: str) -> None:
    env = _environment(live)
    assert env["status"] == "active", env
    assert env["current_release_id"] == release
    page = live.get("/")
    assert page.status_code == 200 and SITE_TITLE in page.text, page.status_code


# -- the tests --------------------------------------------------------------------------


@pytest.mark.spec("BAK-25")
def test_a_backup_killed_with_the_daemon_is_taken_again_never_completed_half(
    live: LiveSite, target: S3Server, bulky: None, tmp_path: Path
) -> None:
    _settle(live)
    accepted = _post_backup(live)
    job_id, backup_id = accepted["job_id"], accepted["backup_id"]
    # The database is stored; the files stream (~100 MB) is in flight.
    _await_line(live, job_id, "stored db.sql")
    repo = _repository(live, target, tmp_path / "restic-cache")
    killed_db: list[str] = []

    def stored_by_the_killed_attempt() -> None:
        killed_db.extend(s.id for s in _snapshots(repo) if _owner(s) == backup_id)

    restarted = _kill_and_restart(live, repo.url, stored_by_the_killed_attempt)
    assert len(killed_db) == 1, killed_db  # db.sql; files.tar was in flight
    assert not _logged(live, job_id, 1, "stored files.tar")
    rescued = _second_attempt_after(live, job_id)
    print(f"restarted in {restarted:.1f} s; second attempt {rescued:.1f} s after that")
    job: dict[str, Any] = dict(live.daemon.job_ended(job_id, 900))
    log = _lines(live, job_id)
    assert [a["outcome"] for a in job["attempts"]][:1] == ["lease_expired"], job
    with live.api() as api:
        backup = api.get(f"/api/backups/{backup_id}").json()
    print(
        f"the killed backup's job: {job['status']} {job['error_code']}; backup {backup['status']}"
    )
    if job["status"] == "succeeded":
        assert backup["status"] == "completed", backup
        assert any(
            line["attempt"] == 2
            and "forgot 1 snapshot(s) of an interrupted attempt" in line["text"]
            for line in log
        ), log
        mine = [s for s in _snapshots(repo) if _owner(s) == backup_id]
        objects = backup["manifest"]["objects"]
        assert sorted(s.id for s in mine) == sorted(o["snapshot_id"] for o in objects)
        assert not set(killed_db) & {s.id for s in mine}
        assert [o["name"] for o in objects] == ["db.sql", "files.tar"]
        assert backup["manifest"]["files"]["bytes"] >= BULK_FILES * BULK_MIB << 20
    else:
        assert job["status"] == "failed", job
        assert backup["status"] == "failed", backup
    # Nothing half-done on the node, nothing running, every completed backup whole.
    until(lambda: not _node_streams(live), within=30)
    _assert_completed_backups_whole(live, repo, only_live=job["status"] == "succeeded")
    # The cleanup leaves no snapshot of no live backup (and prunes the killed packs).
    cleanup = _run_cleanup(live)
    print(f"cleanup: {cleanup['status']}")
    _assert_completed_backups_whole(live, repo)
    assert _environment(live)["status"] == "active"


@pytest.mark.spec("BAK-46")
def test_a_restore_killed_while_it_stages_switches_back_to_what_was_served(
    live: LiveSite, target: S3Server, bulky: None, tmp_path: Path
) -> None:
    _settle(live)
    _php(live, "update_option('pressluft_crash_probe', 'in the backup');")
    backup = _backup(live)
    _php(live, "update_option('pressluft_crash_probe', 'before the restore');")
    before = _environment(live)["current_release_id"]
    releases = _releases(live)
    job_id = _restore(live, backup["id"])
    # The database is staged; the files (~100 MB) are being staged beside what is served.
    _await_line(live, job_id, "staged db.sql", within=900)
    repo = _repository(live, target, tmp_path / "restic-cache")
    at_the_kill: list[str] = []
    restarted = _kill_and_restart(
        live, repo.url, lambda: at_the_kill.extend(_node_leftovers(live, releases))
    )
    print(f"staged on the node at the kill: {at_the_kill}")
    assert any(name.endswith("_rs") for name in at_the_kill), at_the_kill
    assert any(name.endswith(".restore") for name in at_the_kill), at_the_kill
    rescued = _second_attempt_after(live, job_id)
    print(f"restarted in {restarted:.1f} s; second attempt {rescued:.1f} s after that")
    job = live.daemon.job_ended(job_id, 600)
    log = _lines(live, job_id)
    print(f"the killed restore's job: {job['status']} {job['error_code']}")
    if job["status"] == "succeeded":  # the kill came too late: the restore is whole
        assert _php(live, "echo get_option('pressluft_crash_probe');") == "in the backup"
        env = _environment(live)
        assert env["status"] == "active" and env["current_release_id"] != before
    else:
        assert job["error_code"] == "RESTORE_INTERRUPTED", (job, log[-20:])
        assert any(
            line["attempt"] == 2 and line["text"].startswith("switched back") for line in log
        ), log
        _serves_as_before(live, before)
        assert _php(live, "echo get_option('pressluft_crash_probe');") == "before the restore"
    until(lambda: not _node_streams(live), within=30)
    assert _node_leftovers(live, releases) == []
    _assert_completed_backups_whole(live, repo)
    _php(live, "delete_option('pressluft_crash_probe');")


@pytest.mark.spec("BAK-46")
def test_a_restore_killed_after_its_switch_switches_back_to_what_was_served(
    live: LiveSite, target: S3Server, bulky: None, tmp_path: Path
) -> None:
    """The kill right after the switch (the backup served, not yet checked): the second
    attempt puts back the release, the database and the uploads the switch replaced.
    The window is the health checks' seconds; a kill that comes after the restore
    finished finds it succeeded (said, and accepted)."""
    _settle(live)
    _php(live, "update_option('pressluft_crash_probe', 'in the backup');")
    backup = _backup(live)
    _php(live, "update_option('pressluft_crash_probe', 'before the restore');")
    # An upload the backup does not hold: back after the switch back, gone after a restore.
    after = f"{_root(live)}/shared/uploads/pressluft-crash-after.txt"
    rc, out = live.exec("runuser", "-u", _env_user(live), "--", "sh", "-c", f"echo x > {after}")
    assert rc == 0, out
    before = _environment(live)["current_release_id"]
    releases = _releases(live)
    job_id = _restore(live, backup["id"])
    _await_line(live, job_id, "switched: the backup is served", within=900)
    repo = _repository(live, target, tmp_path / "restic-cache")
    at_the_kill: list[str] = []
    restarted = _kill_and_restart(
        live,
        repo.url,
        lambda: at_the_kill.extend(_node_leftovers(live, releases)),
        streaming=False,
    )
    print(f"replaced on the node at the kill: {at_the_kill}")
    job = live.daemon.job_ended(job_id, 600)
    log = _lines(live, job_id)
    print(f"restarted in {restarted:.1f} s; the restore's job: {job['status']} {job['error_code']}")
    if job["status"] == "succeeded":  # the kill came after the restore had finished
        assert _php(live, "echo get_option('pressluft_crash_probe');") == "in the backup"
        env = _environment(live)
        assert env["status"] == "active" and env["current_release_id"] != before
        assert live.exec("test", "-e", after)[0] != 0
    else:
        assert any(name.endswith("_ro") for name in at_the_kill), at_the_kill
        assert job["error_code"] == "RESTORE_INTERRUPTED", (job, log[-20:])
        _serves_as_before(live, before)
        assert _php(live, "echo get_option('pressluft_crash_probe');") == "before the restore"
        assert live.exec("test", "-e", after)[0] == 0, "the uploads served before are not back"
    until(lambda: not _node_streams(live), within=30)
    assert _node_leftovers(live, releases) == []
    _assert_completed_backups_whole(live, repo)
    _php(live, "delete_option('pressluft_crash_probe');")
    live.exec("rm", "-f", after)


@pytest.mark.spec("BAK-46")
def test_a_restore_killed_during_its_pre_restore_backup_leaves_nothing_running(
    live: LiveSite, target: S3Server, bulky: None, tmp_path: Path
) -> None:
    _settle(live)
    _php(live, "update_option('pressluft_crash_probe', 'in the backup');")
    backup = _backup(live, "db")
    _php(live, "update_option('pressluft_crash_probe', 'before the restore');")
    before = _environment(live)["current_release_id"]
    releases = _releases(live)
    job_id = _restore(live, backup["id"])
    # Verified; the pre-restore backup stored its database, its files stream in flight.
    _await_line(live, job_id, "stored db.sql", within=900)
    repo = _repository(live, target, tmp_path / "restic-cache")
    restarted = _kill_and_restart(live, repo.url)
    print(f"restarted in {restarted:.1f} s")
    job = live.daemon.job_ended(job_id, 600)
    log = _lines(live, job_id)
    assert job["status"] == "failed" and job["error_code"] == "RESTORE_INTERRUPTED", (job, log)
    _serves_as_before(live, before)
    assert _php(live, "echo get_option('pressluft_crash_probe');") == "before the restore"
    pre = [b for b in _backups(live) if b["reason"] == "pre_restore" and b["job_id"] == job_id]
    assert len(pre) == 1, pre
    assert pre[0]["status"] == "failed", pre[0]
    until(lambda: not _node_streams(live), within=30)
    assert _node_leftovers(live, releases) == []
    _assert_completed_backups_whole(live, repo, only_live=False)
    # The killed pre-restore backup's snapshot goes with the next cleanup.
    _run_cleanup(live)
    _assert_completed_backups_whole(live, repo)
    _php(live, "delete_option('pressluft_crash_probe');")


@pytest.mark.spec("BAK-45")
def test_a_failed_pre_restore_backup_stops_the_restore_before_anything_changes(
    live: LiveSite, target: S3Server, tmp_path: Path
) -> None:
    _settle(live)
    _php(live, "update_option('pressluft_crash_probe', 'in the backup');")
    backup = _backup(live, "db")
    _php(live, "update_option('pressluft_crash_probe', 'before the restore');")
    before = _environment(live)["current_release_id"]
    releases = _releases(live)
    # A key that reads, lists, locks and deletes, but may not write data packs: the
    # restore verifies the backup, and its pre-restore backup cannot store anything.
    no_data = target.key_with_policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::*/data/*"},
    )
    _configure(live, target, no_data)
    try:
        job_id = _restore(live, backup["id"])
        job = live.daemon.job_ended(job_id, 900)
    finally:
        _configure(live, target, (target.access_key_id, target.secret_access_key))
    log = _lines(live, job_id)
    assert job["status"] == "failed", (job, log)
    assert job["error_code"] == "BACKUP_PRE_OPERATION_FAILED", (job, log[-20:])
    texts = [line["text"] for line in log]
    assert any(t.startswith("verified db.sql") for t in texts), texts
    assert not any(t.startswith(("staged", "switched")) for t in texts), texts
    pre = [b for b in _backups(live) if b["reason"] == "pre_restore" and b["job_id"] == job_id]
    assert len(pre) == 1 and pre[0]["status"] == "failed", pre
    _serves_as_before(live, before)
    assert _php(live, "echo get_option('pressluft_crash_probe');") == "before the restore"
    assert _node_leftovers(live, releases) == []
    repo = _repository(live, target, tmp_path / "restic-cache")
    _assert_completed_backups_whole(live, repo)
    _php(live, "delete_option('pressluft_crash_probe');")


@pytest.mark.spec("BAK-46")
def test_a_files_stream_cut_between_two_members_leaves_no_release_after_the_revert(
    live: LiveSite, target: S3Server
) -> None:
    """A restore's files stream cut by the daemon's death can end exactly between two
    members of the archive, where tar (no end-of-archive marker needed) takes it for a
    whole one and `stage-files` succeeds: what it staged must still be gone after the
    second attempt's `revert`. Driven on the node with the script itself (installed by
    a backup), the cut made with `head -c`."""
    _settle(live)
    _backup(live, "db")  # the script as this control plane ships it, on the node
    root, user = _root(live), _env_user(live)
    db_name = env_names(live.environment_id, live.site_id)["db_name"]
    archive = "/tmp/pressluft-crash.tar"
    rc, out = live.exec(
        "sh", "-c", f"{SCRIPT} tar-files {root} > {archive} && tar -tvR -f {archive} | sed -n 200p"
    )
    assert rc == 0 and out.startswith("block "), out
    cut = int(out.split()[1].rstrip(":")) * 512  # where the 200th member's header begins
    served = _environment(live)["current_release_id"]
    releases = _releases(live)
    rc, current = live.exec("readlink", f"{root}/current")
    assert rc == 0, current
    rid = "20000101T000000Z-restore"
    try:
        stage = f"head -c {cut} {archive} | {SCRIPT} stage-files {root} {user} {rid}"
        rc, out = live.exec("sh", "-c", stage)
        assert rc == 0, out  # tar cannot tell
        rc, out = live.exec(SCRIPT, "revert", root, db_name, current.strip().rsplit("/", 1)[-1])
        assert rc == 0, out
        assert _node_leftovers(live, releases) == []
        rc, _ = live.exec("test", "-e", f"{root}/releases/{rid}")
        assert rc != 0, f"the cut stream is left as release {rid}"
    finally:
        live.exec("rm", "-rf", archive, f"{root}/releases/{rid}", f"{root}/shared/.uploads.{rid}")
    _serves_as_before(live, served)
