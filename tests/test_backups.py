"""Backups in-process on real SQLite files with a real S3 server (moto) and real
restic: the API's rules for taking and restoring backups, a backup job's end, the
retention cleanup (backups really taken and restored on a node:
tests/test_backup_node.py)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from pressluft.clock import FrozenClock, format_ts
from pressluft.contexts.backups.commands import (
    BackupNotConfigured,
    TargetRequest,
    configure_target_command,
    record_backup_request,
    start_backup_command,
)
from pressluft.contexts.backups.drill_worker import (
    BackupVerify,
    queue_due_drills,
    remove_leftovers,
)
from pressluft.contexts.backups.events import (
    BackupCompleted,
    BackupDrillStarted,
    BackupDrillThrowawayRemoved,
    BackupRepositoryCreated,
    BackupRequested,
    BackupStarted,
    BackupTargetConfigured,
    BackupVerificationFailed,
    BackupVerified,
    ControlPlaneCopyStored,
)
from pressluft.contexts.backups.loaders import BACKUP_JOB, DRILL_LEFTOVERS, EXPIRED_BACKUPS
from pressluft.contexts.backups.recovery import export_kit_command, parse_kit
from pressluft.contexts.backups.schedules import (
    BackupScan,
    announce_copy_overdue,
    announce_drills_overdue,
    announce_overdue,
    queue_due_backups,
)
from pressluft.contexts.backups.workers import BackupCleanup, BackupCreate, Storage, checksum
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.features import PROJECTORS
from pressluft.ids import new_id
from pressluft.jobs.context import LocalPort
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.queue import JobSpec, enqueue
from pressluft.jobs.workers import NoArgs, enqueue_job
from pressluft.runners import restic
from pressluft.runners.s3 import restic_url
from pressluft.runtime import Runtime
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.jobs import log_lines, until, until_ended
from tests.support.nodes import blocked_node, event_and_job_counts, record_node
from tests.support.s3 import S3Server
from tests.support.workers import fn_worker
from tests.test_domains import active_environment

META = Meta(actor="test:backups")


async def _configure(
    client: httpx.AsyncClient,
    s3: S3Server,
    bucket: str,
    *,
    site_id: str | None = None,
    prefix: str = "pl",
    key: tuple[str, str] | None = None,
) -> str:
    """The default target (or the site's own) in `bucket`: its id."""
    s3.create_bucket(bucket)
    key_id, secret = key or (s3.access_key_id, s3.secret_access_key)
    path = "/api/backup-target" if site_id is None else f"/api/sites/{site_id}/backup-target"
    reply = await client.put(
        path,
        json={
            "endpoint": s3.endpoint,
            "region": s3.region,
            "bucket": bucket,
            "prefix": prefix,
            "access_key_id": key_id,
            "secret_access_key": secret,
        },
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id"])


def _bucket() -> str:
    return f"b-{new_id()[:8]}"


async def _site_with_repository(
    client: httpx.AsyncClient,
    runtime: Runtime,
    s3: S3Server,
    password: str,
    cache_dir: Path,
) -> tuple[str, restic.Repository]:
    """An active environment on a recorded node, a configured target and its site's
    repository recorded as the backup job records it (password sealed): the
    environment's id and the repository (not initialised)."""
    env_id = await active_environment(runtime, await record_node(runtime))
    bucket = _bucket()
    target_id = await _configure(client, s3, bucket)
    site_id = await _site_id(runtime, env_id)
    url = restic_url(s3.target(bucket, "pl"), f"sites/{site_id}")

    def repository(tx: WriteTx) -> None:
        secret = runtime.vault.seal(tx.conn, "backup_repository", password.encode(), tx.now_ts)
        event = BackupRepositoryCreated(
            site_id=site_id, url=url, secret_id=secret, target_id=target_id
        )
        append(tx, f"backup_repository:{site_id}", None, [event], META)

    await runtime.db.write(repository)
    repo = restic.Repository(
        url=url, password=password, target=s3.target(bucket, "pl"), cache_dir=cache_dir
    )
    return env_id, repo


async def _site_id(runtime: Runtime, env_id: str) -> str:
    row = await runtime.db.read(
        lambda c: c.execute("SELECT site_id FROM environments WHERE id = ?", (env_id,)).fetchone()
    )
    return str(row[0])


async def completed_backup(
    runtime: Runtime,
    env_id: str,
    *,
    retention_until: str | None = None,
    objects: list[dict[str, Any]] | None = None,
    scope: str = "full",
    storage_path: str | None = None,
) -> str:
    """A backup recorded as its job records it (requested, started, completed): in
    `storage_path`, else in the site's newest repository (a placeholder without one)."""
    row = await runtime.db.read(
        lambda c: c.execute(
            "SELECT e.site_id, e.node_id, (SELECT url FROM backup_repositories r"
            " WHERE r.site_id = e.site_id ORDER BY created_at DESC, rowid DESC LIMIT 1)"
            " FROM environments e WHERE e.id = ?",
            (env_id,),
        ).fetchone()
    )
    storage_path = storage_path or row[2] or "s3:x"
    backup_id = new_id()
    objects = objects or [
        {"name": "db.sql", "snapshot_id": "0" * 64, "sha256": "a" * 64, "bytes": 10}
    ]

    def seed(tx: WriteTx) -> None:
        events = [
            BackupRequested(
                backup_id=backup_id,
                site_id=row[0],
                environment_id=env_id,
                node_id=row[1],
                scope=scope,  # type: ignore[arg-type]
                reason="manual",
                job_id=new_id(),
                retention_until=retention_until or format_ts(tx.now + timedelta(days=30)),
            ),
            BackupStarted(backup_id=backup_id, job_id=new_id(), storage_path=storage_path),
            BackupCompleted(
                backup_id=backup_id,
                job_id=new_id(),
                checksum=checksum(objects),
                size_bytes=sum(o["bytes"] for o in objects),
                added_bytes=0,
                manifest={"objects": objects, "scope": scope},
            ),
        ]
        append(tx, f"backup:{backup_id}", NO_STREAM, events, META)

    await runtime.db.write(seed)
    return backup_id


@pytest.mark.spec("BAK-20", "BAK-21")
async def test_a_backup_needs_a_scope_a_target_and_an_active_environment(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server, clock: FrozenClock
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    before = await event_and_job_counts(runtime)
    unset = await client.post(f"/api/environments/{env_id}/backups", json={"scope": "full"})
    assert unset.status_code == 409 and unset.json()["code"] == "backup_not_configured"
    assert "hint" in unset.json()["details"]
    assert await event_and_job_counts(runtime) == before
    await _configure(client, s3_server, _bucket())
    before = await event_and_job_counts(runtime)
    for bad in ({"scope": "everything"}, {"scope": 1}, {"extra": True}):
        reply = await client.post(f"/api/environments/{env_id}/backups", json=bad)
        assert reply.status_code == 400, (bad, reply.text)
    assert await event_and_job_counts(runtime) == before
    gone = await client.post(f"/api/environments/{new_id()}/backups", json={})
    assert gone.status_code == 404
    accepted = await client.post(f"/api/environments/{env_id}/backups", json={"scope": "db"})
    assert accepted.status_code == 202, accepted.text
    backup = (await client.get(f"/api/backups/{accepted.json()['backup_id']}")).json()
    assert backup["status"] == "pending" and backup["backup_scope"] == "db"
    assert backup["job_id"] == accepted.json()["job_id"]
    assert backup["retention_until"] == format_ts(clock.now() + timedelta(days=30))
    assert backup["reason"] == "manual" and backup["checksum"] is None


@pytest.mark.spec("BAK-22")
async def test_a_backup_job_that_ends_without_completing_leaves_the_backup_failed(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    await _configure(client, s3_server, _bucket())
    accepted = (await client.post(f"/api/environments/{env_id}/backups", json={})).json()
    cancelled = await client.post(f"/api/jobs/{accepted['job_id']}/cancel")
    assert cancelled.status_code == 200
    backup = (await client.get(f"/api/backups/{accepted['backup_id']}")).json()
    assert backup["status"] == "failed" and backup["error_code"] == "CANCELLED"
    assert backup["completed_at"] is None and backup["checksum"] is None


@pytest.mark.spec("BAK-26")
async def test_backups_are_listed_newest_first_in_pages(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    ids = []
    for _ in range(5):
        ids.append(await completed_backup(runtime, env_id))
        clock.advance(1)
    first = (await client.get(f"/api/environments/{env_id}/backups", params={"limit": 2})).json()
    assert [b["id"] for b in first["items"]] == ids[::-1][:2] and first["has_more"]
    rest = (
        await client.get(
            f"/api/environments/{env_id}/backups",
            params={"limit": 10, "before": first["next_before"]},
        )
    ).json()
    assert [b["id"] for b in rest["items"]] == ids[::-1][2:] and not rest["has_more"]
    assert rest["next_before"] is None
    failed = await client.get(f"/api/environments/{env_id}/backups", params={"status": "failed"})
    assert failed.json()["items"] == []
    bad = await client.get(f"/api/environments/{env_id}/backups", params={"status": "lost"})
    assert bad.status_code == 400
    unknown = await client.get(f"/api/environments/{new_id()}/backups")
    assert unknown.status_code == 404


# -- targets: the default and a site's own; a target change strands nothing (B11, B12) --


def _dump(backup_id: str) -> bytes:
    """The `db.sql` a test backup stores (its own bytes: a download proves which)."""
    return f"-- MariaDB dump of {backup_id}\nINSERT INTO wp_posts VALUES (1);\n".encode() * 5000


async def _take(runtime: Runtime, env_id: str, storage: Storage) -> str:
    """A backup of the environment taken as `backup_create` takes one — started in its
    site's repository in the site's target by `Storage.start`, stored by restic,
    recorded completed — with `_dump(id)` for the node's stream (this tier has no
    node): its id."""
    kind = f"test_backup_{new_id()[:8]}"

    async def take(ctx: LocalPort) -> None:
        backup_id = await runtime.db.read(
            lambda c: c.execute("SELECT id FROM backups WHERE job_id = ?", (ctx.job_id,))
            .fetchone()[0]
        )  # fmt: skip
        backup = await ctx.load(BACKUP_JOB, backup_id)
        assert backup is not None
        repo = await storage.start(ctx, backup)
        data = _dump(backup_id)
        s = await restic.backup_stream(repo, _stream(data), "db.sql", [f"backup={backup_id}"])
        objects = [{"name": "db.sql", "snapshot_id": s.snapshot_id, "sha256": s.sha256,
                    "bytes": s.size}]  # fmt: skip
        done = BackupCompleted(backup_id=backup_id, job_id=ctx.job_id, checksum=checksum(objects),
                               size_bytes=s.size, added_bytes=s.added_bytes,
                               manifest={"objects": objects, "scope": "db"})  # fmt: skip
        await ctx.record(f"backup:{backup_id}", [done])

    runtime.jobs.register(fn_worker(kind, take, max_attempts=1))

    def request(tx: WriteTx) -> str:
        job_id = enqueue(tx, JobSpec(job_type=kind, max_attempts=1), META)
        record_backup_request(tx, env_id, "db", "manual", META, job_id, None)
        return job_id

    job_id = await runtime.db.write(request)
    job = await until_ended(runtime, job_id, within=120)
    assert job.status == "succeeded", job
    return await runtime.db.read(
        lambda c: str(c.execute("SELECT id FROM backups WHERE job_id = ?", (job_id,)).fetchone()[0])
    )


async def _storage_path(client: httpx.AsyncClient, backup_id: str) -> str:
    return str((await client.get(f"/api/backups/{backup_id}")).json()["storage_path"])


async def _target_rows(runtime: Runtime) -> dict[str, tuple[Any, ...]]:
    """Every target: id → (site_id, status, bucket, secret_id)."""
    rows = await runtime.db.read(
        lambda c: c.execute(
            "SELECT id, site_id, status, bucket, secret_id FROM backup_targets"
        ).fetchall()
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def _secret_exists(runtime: Runtime, secret_id: str) -> bool:
    row = await runtime.db.read(
        lambda c: c.execute("SELECT 1 FROM secrets WHERE id = ?", (secret_id,)).fetchone()
    )
    return row is not None


async def _events(client: httpx.AsyncClient, type_: str) -> list[dict[str, Any]]:
    reply = await client.get("/api/events", params={"type": type_})
    return list(reply.json()["items"])


def _bucket_only(s3: S3Server, bucket: str) -> tuple[str, str]:
    """A key allowed everything in `bucket` and nothing elsewhere."""
    return s3.key_with_policy({"Effect": "Allow", "Action": "s3:*",
                               "Resource": [f"arn:aws:s3:::{bucket}",
                                            f"arn:aws:s3:::{bucket}/*"]})  # fmt: skip


@pytest.mark.spec("BAK-15", "BAK-18", "BAK-27")
async def test_a_site_can_have_its_own_target_which_overrides_the_default(
    session: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server, tmp_path: Path
) -> None:
    node_id = await blocked_node(runtime)  # the scheduled backup's job stays queued
    env_id = await active_environment(runtime, node_id)
    site_id = await _site_id(runtime, env_id)
    other_env = await active_environment(runtime, node_id)
    other_site = await _site_id(runtime, other_env)
    path = f"/api/sites/{site_id}/backup-target"
    unset = await session.get(path)
    assert unset.status_code == 409 and unset.json()["code"] == "backup_not_configured"
    assert path in unset.json()["details"]["hint"]
    section = (await session.get(f"/sites/{site_id}/sections/backups")).text
    assert path in section and "Back up now" not in section
    # An unknown site is 404 before anything is probed (the endpoint answers nothing);
    # a probe that fails is 422 and records nothing.
    before = await event_and_job_counts(runtime)
    nowhere = {"endpoint": "http://127.0.0.1:9", "bucket": "nothing", "access_key_id": "k",
               "secret_access_key": "s"}  # fmt: skip
    unknown = await session.put(f"/api/sites/{new_id()}/backup-target", json=nowhere)
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert (await session.get(f"/api/sites/{new_id()}/backup-target")).status_code == 404
    assert (await session.delete(f"/api/sites/{new_id()}/backup-target")).status_code == 404
    own_bucket = s3_server.create_bucket(_bucket())
    wrong = {"endpoint": s3_server.endpoint, "region": s3_server.region, "bucket": own_bucket,
             "access_key_id": s3_server.access_key_id, "secret_access_key": "wrong"}  # fmt: skip
    refused = await session.put(path, json=wrong)
    assert (
        refused.status_code == 422 and refused.json()["details"]["reason"] == "TARGET_AUTH_FAILED"
    )
    assert await event_and_job_counts(runtime) == before
    # Its own target, with no default target at all: the site backs up into it.
    own = await _configure(session, s3_server, own_bucket, site_id=site_id)
    shown = (await session.get(path)).json()
    assert shown["id"] == own and shown["scope"] == "site" and shown["site_id"] == site_id
    assert shown["bucket"] == own_bucket and "secret_access_key" not in shown
    assert (await session.get("/api/backup-target")).status_code == 409  # no default
    assert (await session.get(f"/api/sites/{other_site}/backup-target")).status_code == 409
    section = (await session.get(f"/sites/{site_id}/sections/backups")).text
    assert f'data-target-id="{own}"' in section and "this site's own" in section
    assert "Back up now" in section
    [scheduled] = await _scan(runtime)  # the site has a target; the other one none
    scheduled_backup = (await session.get(f"/api/backups/{scheduled}")).json()
    assert scheduled_backup["environment_id"] == env_id
    await session.post(f"/api/jobs/{scheduled_backup['job_id']}/cancel")
    storage = Storage(tmp_path / "restic-cache")
    taken = await _take(runtime, env_id, storage)
    assert (await _storage_path(session, taken)) == restic_url(
        s3_server.target(own_bucket, "pl"), f"sites/{site_id}"
    )
    assert s3_server.objects(own_bucket, f"pl/sites/{site_id}/data/")
    # The default target: the other site's; this one keeps its own.
    default_bucket = _bucket()
    default = await _configure(session, s3_server, default_bucket)
    assert (await session.get("/api/backup-target")).json()["scope"] == "default"
    assert (await session.get(path)).json()["id"] == own
    assert (await session.get(f"/api/sites/{other_site}/backup-target")).json()["id"] == default
    again = await _take(runtime, env_id, storage)
    assert (await _storage_path(session, again)) == (await _storage_path(session, taken))
    assert not s3_server.objects(default_bucket, f"pl/sites/{site_id}/")
    # Back to the default: its own target holds backups, so it is retired, not removed.
    assert (await session.delete(path)).status_code == 204
    assert (await session.get(path)).json() == (await session.get("/api/backup-target")).json()
    assert (await _target_rows(runtime))[own][:2] == (site_id, "retired")
    moved = await _take(runtime, env_id, storage)
    assert (await _storage_path(session, moved)) == restic_url(
        s3_server.target(default_bucket, "pl"), f"sites/{site_id}"
    )
    none = await session.delete(path)
    assert none.status_code == 409 and none.json()["code"] == "backup_not_configured"
    assert "DELETE /api/backup-target" in none.json()["details"]["hint"]
    # A site's own target without a backup in it is removed at once, its key destroyed.
    other_path = f"/api/sites/{other_site}/backup-target"
    short = await _configure(session, s3_server, _bucket(), site_id=other_site)
    secret = (await _target_rows(runtime))[short][3]
    assert (await session.delete(other_path)).status_code == 204
    assert short not in await _target_rows(runtime)
    assert not await _secret_exists(runtime, secret)
    removed = await _events(session, "backup_target.removed")
    assert any(e["data"].get("target_id") == short for e in removed)


@pytest.mark.spec("BAK-16")
async def test_the_same_place_again_is_the_same_target_with_a_new_key(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server, tmp_path: Path
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    bucket = _bucket()
    first_key = s3_server.key_allowed("s3:*")
    target_id = await _configure(client, s3_server, bucket, key=first_key)
    old_secret = (await _target_rows(runtime))[target_id][3]
    taken = await _take(runtime, env_id, Storage(tmp_path / "cache"))
    second_key = s3_server.key_allowed("s3:*")
    assert await _configure(client, s3_server, bucket, key=second_key) == target_id
    rows = await _target_rows(runtime)
    assert list(rows) == [target_id] and rows[target_id][1] == "active"
    assert not await _secret_exists(runtime, old_secret)
    assert (await client.get("/api/backup-target")).json()["access_key_id"] == second_key[0]
    # The old key is revoked: the backup taken with it reads with the new one.
    s3_server.revoke(first_key[0])
    reply = await client.get(f"/api/backups/{taken}/download", params={"object": "db.sql"})
    assert reply.status_code == 200 and reply.content == _dump(taken)
    later = await _take(runtime, env_id, Storage(tmp_path / "cache"))
    assert (await _storage_path(client, later)) == (await _storage_path(client, taken))


@pytest.mark.spec("BAK-17", "BAK-28")
async def test_after_the_default_target_moves_old_backups_restore_and_new_ones_go_to_it(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server, tmp_path: Path
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    site_id = await _site_id(runtime, env_id)
    old_bucket, new_bucket = _bucket(), _bucket()
    s3_server.create_bucket(new_bucket)
    old = await _configure(client, s3_server, old_bucket, key=_bucket_only(s3_server, old_bucket))
    storage = Storage(tmp_path / "cache")
    taken = await _take(runtime, env_id, storage)
    old_path = await _storage_path(client, taken)
    # Each key may use only its own bucket: whatever reads the old backup must use the
    # old target's key.
    new = await _configure(client, s3_server, new_bucket, key=_bucket_only(s3_server, new_bucket))
    assert new != old
    rows = await _target_rows(runtime)
    assert rows[old][1] == "retired" and rows[new][1] == "active"
    assert await _secret_exists(runtime, rows[old][3])
    assert any(
        e["data"]["target_id"] == old for e in await _events(client, "backup_target.retired")
    )
    assert (await client.get("/api/backup-target")).json()["id"] == new
    reply = await client.get(f"/api/backups/{taken}/download", params={"object": "db.sql"})
    assert reply.status_code == 200 and reply.content == _dump(taken)
    # A restore verifies the old backup (with the old key), then its pre-restore backup
    # starts a new repository in the new target; the node (nothing listens) ends it.
    accepted = await client.post(
        f"/api/environments/{env_id}/restore",
        params={"confirm": "production"},
        json={"backup_id": taken},
    )
    assert accepted.status_code == 202, accepted.text
    job = await until_ended(runtime, accepted.json()["job_id"], within=120)
    assert job.status == "failed" and job.error_code == "BACKUP_PRE_OPERATION_FAILED", job
    log = " ".join(line for _, _, line in await log_lines(runtime, job.id))
    assert "verified db.sql" in log
    pre = await runtime.db.read(
        lambda c: c.execute(
            "SELECT storage_path FROM backups WHERE reason = 'pre_restore' AND environment_id = ?",
            (env_id,),
        ).fetchone()[0]
    )
    new_path = restic_url(s3_server.target(new_bucket, "pl"), f"sites/{site_id}")
    assert pre == new_path != old_path
    repositories = await runtime.db.read(
        lambda c: dict(c.execute(
            "SELECT url, target_id FROM backup_repositories WHERE site_id = ?", (site_id,)
        ).fetchall())
    )  # fmt: skip
    assert repositories == {old_path: old, new_path: new}
    later = await _take(runtime, env_id, storage)
    assert (await _storage_path(client, later)) == new_path
    # The two repositories have their own passwords.
    secrets_ = await runtime.db.read(
        lambda c: {r[0] for r in c.execute("SELECT secret_id FROM backup_repositories")}
    )
    assert len(secrets_) == 2
    # Moving back to the old place makes the retired target active again (new key).
    back = await _configure(client, s3_server, old_bucket)
    assert back == old and (await _target_rows(runtime))[old][1] == "active"
    again = await _take(runtime, env_id, storage)
    assert (await _storage_path(client, again)) == old_path


@pytest.mark.spec("BAK-29")
async def test_the_cleanup_expires_backups_in_a_retired_target_then_removes_it(
    client: httpx.AsyncClient,
    runtime: Runtime,
    s3_server: S3Server,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    old_bucket, new_bucket = _bucket(), _bucket()
    s3_server.create_bucket(new_bucket)
    old = await _configure(client, s3_server, old_bucket, key=_bucket_only(s3_server, old_bucket))
    storage = Storage(tmp_path / "cache")
    first = await _take(runtime, env_id, storage)
    old_secret = (await _target_rows(runtime))[old][3]
    await _configure(client, s3_server, new_bucket, key=_bucket_only(s3_server, new_bucket))
    newer = []
    for _ in range(3):  # the first is no longer among the newest three
        clock.advance(60)
        newer.append(await _take(runtime, env_id, storage))

    async def cleanup() -> None:
        job_id = await runtime.db.write(lambda tx: enqueue_job(tx, BackupCleanup, NoArgs(), META))
        job = await until_ended(runtime, job_id, within=180)
        assert job.status == "succeeded", job

    await cleanup()  # nothing past its retention: the retired target stays
    assert (await _target_rows(runtime))[old][1] == "retired"
    assert (await client.get(f"/api/backups/{first}")).json()["status"] == "completed"
    clock.advance(31 * 86400)
    await cleanup()
    assert (await client.get(f"/api/backups/{first}")).json()["status"] == "expired"
    for backup_id in newer:  # the newest three are kept
        assert (await client.get(f"/api/backups/{backup_id}")).json()["status"] == "completed"
    assert old not in await _target_rows(runtime)
    assert not await _secret_exists(runtime, old_secret)
    assert any(
        e["data"].get("target_id") == old for e in await _events(client, "backup_target.removed")
    )
    # Forgotten and pruned in the old bucket, with the old key.
    first_object = s3_server.objects(old_bucket, "pl/sites/")
    assert not [k for k in first_object if "/snapshots/" in k]
    assert [k for k in s3_server.objects(new_bucket, "pl/sites/") if "/snapshots/" in k]


@pytest.mark.spec("BAK-19")
async def test_a_backup_starts_in_its_sites_target_of_the_moment_and_repositories_are_taken_over(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server, tmp_path: Path
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    site_id = await _site_id(runtime, env_id)
    bucket = _bucket()
    default = await _configure(client, s3_server, bucket)
    storage = Storage(tmp_path / "cache")
    taken = await _take(runtime, env_id, storage)
    url = await _storage_path(client, taken)
    # A target that changed since the job read it: nothing is recorded, the job reads
    # the site's target again.
    pending = await runtime.db.write(
        lambda tx: record_backup_request(tx, env_id, "db", "manual", META, new_id(), None)
    )
    before = await event_and_job_counts(runtime)
    stale = start_backup_command(pending.backup_id, pending.job_id, new_id(), url, "pw",
                                 runtime.vault.seal)  # fmt: skip
    assert await runtime.db.write(lambda tx: stale(tx, META)) is None
    assert await event_and_job_counts(runtime) == before
    # The site's own target at the default's place (another key): it takes the site's
    # repository over — same URL, same password — and the old backup reads with its key.
    own_key = _bucket_only(s3_server, bucket)
    own = await _configure(client, s3_server, bucket, site_id=site_id, key=own_key)
    assert own != default
    later = await _take(runtime, env_id, storage)
    assert (await _storage_path(client, later)) == url
    held = await runtime.db.read(
        lambda c: c.execute(
            "SELECT count(*), max(target_id) FROM backup_repositories WHERE site_id = ?",
            (site_id,),
        ).fetchone()
    )
    assert held == (1, own)
    adopted = await _events(client, "backup_repository.adopted")
    assert any(e["data"] == {"site_id": site_id, "url": url, "target_id": own} for e in adopted)
    reply = await client.get(f"/api/backups/{taken}/download", params={"object": "db.sql"})
    assert reply.status_code == 200 and reply.content == _dump(taken)


@pytest.mark.spec("BAK-30")
def test_targets_and_repositories_of_before_per_site_targets_migrate_as_they_replay(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from pressluft.contexts.backups.projector import BACKUPS_PROJECTOR
    from pressluft.db import migrate
    from pressluft.db.connection import open_sync
    from pressluft.db.migrate import load_migrations
    from pressluft.events.projection import Envelope, Projector, ProjectorSet
    from pressluft.features import MIGRATIONS, verify_replay
    from pressluft.vault import Vault

    def old_target(conn: Any, e: BackupTargetConfigured, env: Envelope) -> None:
        conn.execute(  # the projector of before 0024
            "INSERT INTO backup_target (id, endpoint, region, bucket, prefix, access_key_id,"
            " secret_id, verified_at, updated_at, state_version)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " endpoint = excluded.endpoint, region = excluded.region, bucket = excluded.bucket,"
            " prefix = excluded.prefix, access_key_id = excluded.access_key_id,"
            " secret_id = excluded.secret_id, verified_at = excluded.verified_at,"
            " updated_at = excluded.updated_at, state_version = excluded.state_version",
            (e.endpoint, e.region, e.bucket, e.prefix, e.access_key_id, e.secret_id,
             env.recorded_at, env.recorded_at, env.stream_version),
        )  # fmt: skip

    def old_repository(conn: Any, e: BackupRepositoryCreated, env: Envelope) -> None:
        conn.execute(
            "INSERT INTO backup_repositories (site_id, url, secret_id, created_at)"
            " VALUES (?, ?, ?, ?)",
            (e.site_id, e.url, e.secret_id, env.recorded_at),
        )

    backups = {cls: BACKUPS_PROJECTOR.handlers[cls]
               for cls in (BackupRequested, BackupStarted, BackupCompleted)}  # fmt: skip
    before = ProjectorSet((Projector("before", ("backup_target", "backup_repositories",
                                                "backups"),
                                     {BackupTargetConfigured: old_target,
                                      BackupRepositoryCreated: old_repository, **backups}),))  # fmt: skip
    [ours] = [m for m in load_migrations(MIGRATIONS) if m.name == "backup_targets"]
    conn = open_sync(tmp_path / "x.db")
    now = "2026-01-01T00:00:00.000000Z"
    migrate(conn, now, target=ours.version - 1, sources=MIGRATIONS)
    site_id, backup_id, url = new_id(), new_id(), "s3:http://127.0.0.1:9/b-old/pl/sites/x"

    def write(events: list[tuple[str, Any]], projectors: ProjectorSet) -> None:
        conn.execute("BEGIN IMMEDIATE")
        tx = WriteTx(conn, datetime(2026, 1, 1, tzinfo=UTC), projectors=projectors)
        for stream, event in events:
            append(tx, stream, None, [event], META)
        conn.execute("COMMIT")

    place = {"endpoint": "http://127.0.0.1:9", "region": "eu-central-1", "prefix": "pl",
             "access_key_id": "k"}  # fmt: skip
    objects = [{"name": "db.sql", "snapshot_id": "0" * 64, "sha256": "a" * 64, "bytes": 10}]
    write([
        ("backup_target", BackupTargetConfigured(bucket="b-first", secret_id="sec_1", **place)),
        ("backup_target", BackupTargetConfigured(bucket="b-old", secret_id="sec_2", **place)),
        (f"backup_repository:{site_id}",
         BackupRepositoryCreated(site_id=site_id, url=url, secret_id="sec_r")),
        (f"backup:{backup_id}",
         BackupRequested(backup_id=backup_id, site_id=site_id, environment_id=new_id(),
                         node_id=new_id(), scope="db", reason="manual", job_id="j",
                         retention_until="2026-02-01T00:00:00.000000Z")),
        (f"backup:{backup_id}", BackupStarted(backup_id=backup_id, job_id="j", storage_path=url)),
        (f"backup:{backup_id}",
         BackupCompleted(backup_id=backup_id, job_id="j", checksum=checksum(objects),
                         size_bytes=10, added_bytes=10, manifest={"objects": objects})),
    ], before)  # fmt: skip
    migrate(conn, now, sources=MIGRATIONS)
    assert verify_replay(conn, now).ok  # the migration made what the replay makes
    targets = conn.execute("SELECT id, site_id, status, bucket, secret_id FROM backup_targets")
    assert targets.fetchall() == [("legacy", None, "active", "b-old", "sec_2")]
    job = BACKUP_JOB.query(conn, backup_id)
    assert job is not None and (job.repository_url, job.target_id) == (url, "legacy")
    # A new default target elsewhere: the old one holds a backup and is retired.
    request = TargetRequest(endpoint="http://127.0.0.1:9", bucket="b-new", access_key_id="k",
                            secret_access_key="s", prefix="pl")  # fmt: skip
    conn.execute("BEGIN IMMEDIATE")
    tx = WriteTx(conn, datetime(2026, 1, 2, tzinfo=UTC), projectors=PROJECTORS)
    configure_target_command(Vault(b"k" * 32), request, META)(tx)
    conn.execute("COMMIT")
    assert verify_replay(conn, now).ok
    statuses = dict(conn.execute("SELECT bucket, status FROM backup_targets").fetchall())
    assert statuses == {"b-old": "retired", "b-new": "active"}


@pytest.mark.spec("BAK-40")
async def test_a_restore_refuses_another_environments_backup_an_unfinished_one_and_no_confirm(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    other_env = await active_environment(runtime, node_id)
    await _configure(client, s3_server, _bucket())
    mine = await completed_backup(runtime, env_id, scope="db")
    theirs = await completed_backup(runtime, other_env)
    pending = (await client.post(f"/api/environments/{env_id}/backups", json={})).json()
    url = f"/api/environments/{env_id}/restore"
    before = await event_and_job_counts(runtime)
    cases = [
        ({"backup_id": theirs}, "backup_not_restorable", 409),
        ({"backup_id": pending["backup_id"]}, "backup_not_restorable", 409),
        ({"backup_id": mine, "scope": "files"}, "backup_not_restorable", 409),
        ({"backup_id": new_id()}, "not_found", 404),
        ({"backup_id": mine, "scope": "all"}, "bad_request", 400),
    ]
    for body, code, status in cases:
        reply = await client.post(url, params={"confirm": "production"}, json=body)
        assert reply.status_code == status and reply.json()["code"] == code, (body, reply.text)
    unconfirmed = await client.post(url, json={"backup_id": mine})
    assert unconfirmed.status_code == 400
    assert unconfirmed.json()["code"] == "confirmation_required"
    assert "?confirm=production" in unconfirmed.json()["details"]["hint"]
    assert await event_and_job_counts(runtime) == before
    accepted = await client.post(url, params={"confirm": "production"}, json={"backup_id": mine})
    assert accepted.status_code == 202, accepted.text
    env = (await client.get(f"/api/environments/{env_id}")).json()
    assert env["status"] == "restoring"
    again = await client.post(url, params={"confirm": "production"}, json={"backup_id": mine})
    assert again.status_code == 409  # not active while it restores
    # The job cancelled before it ran: the environment it held is failed (JOB-48).
    await client.post(f"/api/jobs/{accepted.json()['job_id']}/cancel")
    assert (await client.get(f"/api/environments/{env_id}")).json()["status"] == "failed"


@pytest.mark.spec("BAK-48")
async def test_a_restore_into_a_new_environment_checks_the_backup_and_records_the_copy(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    other_env = await active_environment(runtime, node_id)
    site_id = (await client.get(f"/api/environments/{env_id}")).json()["site_id"]
    mine = await completed_backup(runtime, env_id)
    theirs = await completed_backup(runtime, other_env)
    url = f"/api/sites/{site_id}/environments"
    body = {"name": "Inspect", "slug": "inspect", "type": "clone"}
    before = await event_and_job_counts(runtime)
    unconfigured = await client.post(url, json={**body, "source_backup_id": mine})
    assert unconfigured.status_code == 409, unconfigured.text
    assert unconfigured.json()["code"] == "backup_not_configured"
    await _configure(client, s3_server, _bucket())
    pending = (await client.post(f"/api/environments/{env_id}/backups", json={})).json()
    before = await event_and_job_counts(runtime)
    cases = [
        ({"source_backup_id": theirs}, "validation_failed", 422),
        ({"source_backup_id": new_id()}, "validation_failed", 422),
        ({"source_backup_id": pending["backup_id"]}, "backup_not_restorable", 409),
        ({"source_backup_id": mine, "source_environment_id": env_id}, "bad_request", 400),
        ({}, "bad_request", 400),
        ({"source_backup_id": "not-an-id"}, "bad_request", 400),
        ({"source_backup_id": mine, "source_environment_id": None}, "bad_request", 400),
    ]
    for extra, code, status in cases:
        reply = await client.post(url, json={**body, **extra})
        assert reply.status_code == status and reply.json()["code"] == code, (extra, reply.text)
    assert await event_and_job_counts(runtime) == before
    accepted = await client.post(url, json={**body, "source_backup_id": mine})
    assert accepted.status_code == 202, accepted.text
    env = (await client.get(f"/api/environments/{accepted.json()['environment_id']}")).json()
    assert env["status"] == "cloning" and env["environment_type"] == "clone"
    assert env["source_backup_id"] == mine and env["source_environment_id"] == env_id
    job = (await client.get(f"/api/jobs/{accepted.json()['job_id']}")).json()
    assert job["job_type"] == "env_create_from_backup" and job["status"] == "queued"
    assert job["environment_id"] == env["id"] and job["node_id"] == node_id
    # While the copy is built, the site takes no other.
    plain = await client.post(url, json={**body, "slug": "plain", "source_environment_id": env_id})
    assert plain.status_code == 409 and plain.json()["code"] == "conflict"
    # The job cancelled before it ran: the environment it held is failed (JOB-48).
    await client.post(f"/api/jobs/{accepted.json()['job_id']}/cancel")
    failed = (await client.get(f"/api/environments/{env['id']}")).json()
    assert failed["status"] == "failed"


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.spec("BAK-60")
async def test_the_cleanup_expires_backups_past_their_retention_and_prunes_their_objects(
    client: httpx.AsyncClient,
    runtime: Runtime,
    s3_server: S3Server,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    password = "correct horse battery staple"
    env_id, repo = await _site_with_repository(client, runtime, s3_server, password, tmp_path)
    assert await restic.ensure_initialized(repo)
    stored = {}
    for name in ("old", "new"):
        data = name.encode() * 200_000 + new_id().encode()
        s = await restic.backup_stream(repo, _stream(data), "db.sql", [f"t={name}"])
        stored[name] = {"name": "db.sql", "snapshot_id": s.snapshot_id, "sha256": s.sha256,
                        "bytes": s.size}  # fmt: skip
    # A snapshot of no live backup (a killed attempt's): the cleanup forgets it too.
    orphan = await restic.backup_stream(
        repo, _stream(b"orphan" * 100_000), "db.sql", [f"backup={new_id()}"]
    )
    past = format_ts(clock.now() - timedelta(days=1))
    old = await completed_backup(runtime, env_id, retention_until=past, objects=[stored["old"]])
    clock.advance(60)
    new = await completed_backup(runtime, env_id, objects=[stored["new"]])
    for _ in range(3):  # newer ones: the old one is not among the newest three
        clock.advance(60)
        await completed_backup(runtime, env_id)
    size_before = await restic.raw_size(repo)

    def cleanup(tx: WriteTx) -> str:
        return enqueue_job(tx, BackupCleanup, NoArgs(), META)

    job_id = await runtime.db.write(cleanup)
    job = await until_ended(runtime, job_id, within=120)
    assert job.status == "succeeded", job
    assert (await client.get(f"/api/backups/{old}")).json()["status"] == "expired"
    assert (await client.get(f"/api/backups/{new}")).json()["status"] == "completed"
    left = {s.id for s in await restic.snapshots(repo)}
    assert left == {stored["new"]["snapshot_id"]}
    assert orphan.snapshot_id not in left
    assert await restic.raw_size(repo) < size_before
    await restic.verify(repo, **{k: stored["new"][k] for k in ("snapshot_id",)},
                        filename="db.sql", sha256=stored["new"]["sha256"],
                        size=stored["new"]["bytes"])  # fmt: skip


def _scan(runtime: Runtime) -> Any:
    command = queue_due_backups(BackupCreate)
    return runtime.db.write(lambda tx: command(tx, META))


def _overdue(runtime: Runtime) -> Any:
    command = announce_overdue()
    return runtime.db.write(lambda tx: command(tx, META))


@pytest.mark.spec("BAK-61", "BAK-62")
async def test_production_is_backed_up_daily_by_default_and_schedules_can_change(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server, clock: FrozenClock
) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    schedule = (await client.get(f"/api/environments/{env_id}/backup-schedule")).json()
    assert schedule == {"environment_id": env_id, "every_hours": 24, "default": True}
    assert await _scan(runtime) == []  # no target: nothing queued
    await _configure(client, s3_server, _bucket())
    first = await _scan(runtime)
    assert len(first) == 1
    backup = (await client.get(f"/api/backups/{first[0]}")).json()
    assert backup["reason"] == "scheduled" and backup["backup_scope"] == "full"
    assert await _scan(runtime) == []  # pending: not twice
    clock.advance(23 * 3600)
    assert await _scan(runtime) == []
    clock.advance(2 * 3600)
    assert len(await _scan(runtime)) == 1  # a day after the last one asked for
    off = await client.put(f"/api/environments/{env_id}/backup-schedule", json={"every_hours": 0})
    assert off.json() == {"environment_id": env_id, "every_hours": 0, "default": False}
    clock.advance(48 * 3600)
    assert await _scan(runtime) == []
    for bad in ({"every_hours": 169}, {"every_hours": -1}, {}, {"every_hours": "daily"}):
        reply = await client.put(f"/api/environments/{env_id}/backup-schedule", json=bad)
        assert reply.status_code == 400, bad
    hourly = await client.put(
        f"/api/environments/{env_id}/backup-schedule", json={"every_hours": 1}
    )
    assert hourly.status_code == 200
    assert len(await _scan(runtime)) == 1


@pytest.mark.spec("BAK-63")
async def test_a_production_environment_without_a_backup_for_26_hours_is_noticed_once(
    client: httpx.AsyncClient, session: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    assert env_id not in await _overdue(runtime)  # new: not yet
    clock.advance(27 * 3600)
    assert env_id in await _overdue(runtime)
    assert env_id not in await _overdue(runtime)  # once
    events = (await client.get("/api/events", params={"type": "backup.overdue_noticed"})).json()
    assert any(e["data"]["environment_id"] == env_id for e in events["items"])
    site_id = (await client.get(f"/api/environments/{env_id}")).json()["site_id"]
    section = f"/sites/{site_id}/sections/backups"
    # A day has passed: the dashboard's session ended; log in again.
    login = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    assert (await session.post("/api/login", json=login)).status_code == 200
    shown = (await session.get(section)).text
    assert f'class="result-error backup-overdue" data-environment-id="{env_id}"' in shown
    await completed_backup(runtime, env_id)
    assert "backup-overdue" not in (await session.get(section)).text  # a backup completed
    assert env_id not in await _overdue(runtime)  # a fresh backup
    clock.advance(27 * 3600)
    assert env_id in await _overdue(runtime)  # silent again


@pytest.mark.spec("BAK-64")
async def test_the_site_page_shows_backups_and_offers_back_up_now_and_restore(
    session: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    site_id = await runtime.db.read(
        lambda c: c.execute("SELECT site_id FROM environments WHERE id = ?", (env_id,)).fetchone()[
            0
        ]
    )
    section = (await session.get(f"/sites/{site_id}/sections/backups")).text
    assert "No backup target is configured" in section and "Back up now" not in section
    await _configure(session, s3_server, _bucket())
    done = await completed_backup(runtime, env_id)
    page = (await session.get(f"/sites/{site_id}")).text
    assert '<section id="section-backups"' in page
    section = (await session.get(f"/sites/{site_id}/sections/backups")).text
    assert f'data-url="/api/environments/{env_id}/backups"' in section and "Back up now" in section
    assert f'data-backup-id="{done}"' in section and "Last proven restore" in section
    assert f'data-url="/api/environments/{env_id}/restore"' in section
    assert 'data-confirm-typed="production"' in section
    assert f'href="/api/backups/{done}/download?object=db.sql"' in section
    bodies = [json.loads(html.unescape(b)) for b in re.findall(r"data-body='([^']*)'", section)]
    assert {"backup_id": done} in bodies and {"scope": "full"} in bodies
    assert f'data-url="/api/sites/{site_id}/environments"' in section
    into_new = next(b for b in bodies if "source_backup_id" in b)
    assert into_new["source_backup_id"] == done and into_new["slug"] == f"backup-{done[:8]}"
    assert into_new["type"] == "clone" and into_new["name"].startswith("Backup of ")


def _drills(runtime: Runtime, every_hours: int = 168) -> Any:
    command = queue_due_drills(every_hours, BackupVerify)
    return runtime.db.write(lambda tx: command(tx, META))


@pytest.mark.spec("BAK-65")
async def test_the_scan_queues_a_restore_drill_of_each_production_environments_latest_backup(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    node_id = await blocked_node(runtime)
    env_id = await active_environment(runtime, node_id)
    assert await _drills(runtime) == []  # no completed backup
    await completed_backup(runtime, env_id)
    clock.advance(60)
    latest = await completed_backup(runtime, env_id)
    queued = await _drills(runtime)
    assert len(queued) == 1
    job = (await client.get(f"/api/jobs/{queued[0]}")).json()
    assert job["job_type"] == "backup_verify" and job["payload"] == {"backup_id": latest}
    assert await _drills(runtime) == []  # queued: not twice
    await client.post(f"/api/jobs/{queued[0]}/cancel")

    def verified(tx: WriteTx) -> None:
        event = BackupVerified(backup_id=latest, job_id=queued[0], restore_seconds=12.5)
        append(tx, f"backup:{latest}", None, [event], META)

    await runtime.db.write(verified)
    shown = (await client.get(f"/api/backups/{latest}")).json()
    assert shown["verified_at"] and shown["restore_seconds"] == 12.5
    clock.advance(3600)
    newer = await completed_backup(runtime, env_id)
    assert await _drills(runtime) == []  # proven within the interval
    clock.advance(168 * 3600)
    again = await _drills(runtime)
    assert len(again) == 1
    job = (await client.get(f"/api/jobs/{again[0]}")).json()
    assert job["payload"] == {"backup_id": newer}
    refused = await client.post(f"/api/backups/{new_id()}/verify")
    assert refused.status_code == 404


@pytest.mark.spec("BAK-80")
async def test_the_recovery_kit_holds_the_key_and_the_target_and_the_key_never_changes(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    def export(tx: WriteTx) -> Any:
        return export_kit_command(runtime.vault, META)(tx)

    with pytest.raises(BackupNotConfigured):
        await runtime.db.write(export)
    refused = await client.post("/api/control-plane/backups")
    assert (
        refused.status_code == 409 and "PUT /api/backup-target" in refused.json()["details"]["hint"]
    )
    bucket = _bucket()
    await _configure(client, s3_server, bucket)
    listed = (await client.get("/api/control-plane/backups")).json()
    assert listed == {"recovery_kit_exported_at": None, "items": []}
    no_kit = await client.post("/api/control-plane/backups")
    assert no_kit.status_code == 409 and "recovery-kit export" in no_kit.json()["details"]["hint"]
    first = await runtime.db.write(export)
    second = await runtime.db.write(export)
    assert first.recovery_key == second.recovery_key and len(first.recovery_key) >= 43
    assert first.target.bucket == bucket and first.target.prefix == "pl"
    assert first.target.secret_access_key == s3_server.secret_access_key
    assert parse_kit(msgspec.json.encode(first)) == first
    with pytest.raises(ValueError, match="not a recovery kit"):
        parse_kit(b'{"format": "something else"}')
    listed = (await client.get("/api/control-plane/backups")).json()
    assert listed["recovery_kit_exported_at"] is not None
    # The key is sealed: not in the database's bytes.
    raw = b"".join(p.read_bytes() for p in runtime.config.data_dir.glob("pressluft.db*"))
    assert first.recovery_key.encode() not in raw


@pytest.mark.spec("BAK-67")
async def test_an_object_of_a_completed_backup_downloads_decrypted(
    client: httpx.AsyncClient,
    runtime: Runtime,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    env_id, repo = await _site_with_repository(client, runtime, s3_server, "pw-download", tmp_path)
    await restic.ensure_initialized(repo)
    dump = b"-- MariaDB dump\nCREATE TABLE `wp_posts` (x int);\n" * 50_000
    stored = await restic.backup_stream(repo, _stream(dump), "db.sql", ["t"])
    obj = {"name": "db.sql", "snapshot_id": stored.snapshot_id, "sha256": stored.sha256,
           "bytes": stored.size}  # fmt: skip
    backup_id = await completed_backup(runtime, env_id, objects=[obj], scope="db")
    reply = await client.get(f"/api/backups/{backup_id}/download", params={"object": "db.sql"})
    assert reply.status_code == 200
    assert reply.content == dump
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.headers["content-disposition"].startswith("attachment; filename=")
    assert reply.headers["content-disposition"].endswith('-db.sql"')
    missing = await client.get(f"/api/backups/{backup_id}/download", params={"object": "files.tar"})
    assert missing.status_code == 409 and missing.json()["code"] == "backup_not_restorable"
    bad = await client.get(f"/api/backups/{backup_id}/download", params={"object": "x"})
    assert bad.status_code == 400
    none = await client.get(f"/api/backups/{backup_id}/download")
    assert none.status_code == 400


@pytest.mark.spec("BAK-68")
async def test_retention_keeps_the_newest_three_and_one_a_month_for_a_year(
    runtime: Runtime, clock: FrozenClock
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    past = format_ts(clock.now() - timedelta(days=1))
    made = []
    # One backup every 10 days for 500 days, all past their retention.
    clock.advance(-500 * 86400)
    for _ in range(50):
        made.append((format_ts(clock.now()), await completed_backup(
            runtime, env_id, retention_until=past)))  # fmt: skip
        clock.advance(10 * 86400)
    now = format_ts(clock.now())
    expired = {e.backup_id for e in await runtime.db.read(lambda c: EXPIRED_BACKUPS.query(c, now))}
    kept = [(at, b) for at, b in made if b not in expired]
    newest = [b for _, b in made[-3:]]
    assert all(b not in expired for b in newest)
    months = {at[:7] for at, _ in kept}
    year, month = int(now[:4]), int(now[5:7])
    window = set()
    for _ in range(12):  # this month and the eleven before
        window.add(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    assert months == {at[:7] for at, _ in made if at[:7] in window}
    per_month: dict[str, list[str]] = {}
    for at, b in made:
        per_month.setdefault(at[:7], []).append(b)
    for month, ids in per_month.items():
        if month in months:
            assert ids[-1] not in expired  # the newest of a kept month
    assert len(expired) == len(made) - len(kept) and len(kept) <= 15
    oldest = min(at for at, _ in kept)
    assert oldest >= format_ts(clock.now() - timedelta(days=366))


@pytest.mark.spec("BAK-47")
async def test_a_restore_that_fails_before_changing_anything_ends_failed_and_active(
    client: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    env_id, _ = await _site_with_repository(
        client, runtime, s3_server, "pw-restore", runtime.config.data_dir / "restic-cache"
    )
    # A completed backup whose snapshot is not in the repository: its verification fails
    # (restic's error is retryable) before anything on the node is touched.
    missing = await completed_backup(runtime, env_id, scope="db")
    reply = await client.post(
        f"/api/environments/{env_id}/restore",
        params={"confirm": "production"},
        json={"backup_id": missing},
    )
    assert reply.status_code == 202, reply.text
    job = await until_ended(runtime, reply.json()["job_id"], within=120)
    assert job.status == "failed" and job.error_code == "RESTORE_FAILED", job
    assert job.attempt_count == 1  # not retried: nothing was left to finish
    env = (await client.get(f"/api/environments/{env_id}")).json()
    assert env["status"] == "active"
    events = (
        await client.get("/api/events", params={"type": "environment.restore_reverted"})
    ).json()
    assert any(e["data"]["environment_id"] == env_id for e in events["items"])


# -- restore drills: the overdue notice, a killed drill's throwaway (B7b) ------------------


def _drill_overdue(runtime: Runtime, drill_hours: int = 168) -> Any:
    command = announce_drills_overdue(drill_hours)
    return runtime.db.write(lambda tx: command(tx, META))


async def _site_of(runtime: Runtime, env_id: str) -> tuple[str, str]:
    """The environment's site and node."""
    row = await runtime.db.read(
        lambda c: c.execute(
            "SELECT site_id, node_id FROM environments WHERE id = ?", (env_id,)
        ).fetchone()
    )
    return str(row[0]), str(row[1])


async def _drill(
    runtime: Runtime, env_id: str, backup_id: str, outcome: str | None, *, removed: bool
) -> tuple[str, str]:
    """A drill of the backup recorded as its job records it: started, its throwaway
    removed or not, then `verified` or `failed` (None: no result yet). Its job id
    (no job row: a drill's outcome comes from its events) and its throwaway's id."""
    site_id, node_id = await _site_of(runtime, env_id)
    job_id, throwaway_id = new_id(), new_id()

    def record(tx: WriteTx) -> None:
        started = BackupDrillStarted(
            job_id=job_id, backup_id=backup_id, site_id=site_id, environment_id=env_id,
            node_id=node_id, throwaway_id=throwaway_id,
        )  # fmt: skip
        append(tx, f"backup_drill:{job_id}", NO_STREAM, [started], META)
        if removed:
            gone = BackupDrillThrowawayRemoved(
                drill_job_id=job_id, job_id=job_id, site_id=site_id, throwaway_id=throwaway_id
            )
            append(tx, f"backup_drill:{job_id}", None, [gone], META)
        if outcome == "verified":
            event: Any = BackupVerified(backup_id=backup_id, job_id=job_id, restore_seconds=3.5)
            append(tx, f"backup:{backup_id}", None, [event], META)
        elif outcome == "failed":
            event = BackupVerificationFailed(
                backup_id=backup_id, job_id=job_id, code="RESTORE_DRILL_FAILED",
                message="table wp_posts: 3 rows restored, 4 in the manifest",
            )  # fmt: skip
            append(tx, f"backup:{backup_id}", None, [event], META)

    await runtime.db.write(record)
    return job_id, throwaway_id


async def _page(session: httpx.AsyncClient, path: str) -> str:
    """A dashboard page, logged in again (the tests move the clock past a session's end)."""
    reply = await session.post(
        "/api/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert reply.status_code == 200, reply.text
    page = await session.get(path)
    assert page.status_code == 200, page.text
    return page.text


async def _run_scan(runtime: Runtime) -> list[str]:
    """A `backup_scan` job run to its end: the lines it logged."""
    job_id = await runtime.db.write(lambda tx: enqueue_job(tx, BackupScan, NoArgs(), META))
    assert (await until_ended(runtime, job_id)).status == "succeeded"
    return [text for _, _, text in await log_lines(runtime, job_id)]


@pytest.mark.spec("BAK-69")
async def test_a_production_environment_without_a_proven_backup_for_two_drill_intervals_is_noticed(
    client: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    clock.advance(400 * 3600)
    assert env_id not in await _drill_overdue(runtime)  # no backup: nothing to prove
    first = await completed_backup(runtime, env_id)
    clock.advance(335 * 3600)
    assert env_id not in await _drill_overdue(runtime)  # twice 168 h: not over yet
    clock.advance(2 * 3600)
    assert env_id in await _drill_overdue(runtime)  # never proven since its first backup
    assert env_id not in await _drill_overdue(runtime)  # once
    feed = (await client.get("/api/events", params={"type": "backup.drill_overdue_noticed"})).json()
    (notice,) = [e["data"] for e in feed["items"] if e["data"]["environment_id"] == env_id]
    assert notice["overdue_hours"] == 336 and notice.get("last_verified_at") is None
    # A drill proves the backup: a new silence begins; drills that keep failing after
    # it do not end that silence, and the notice names the last failure.
    await _drill(runtime, env_id, first, "verified", removed=True)
    assert env_id not in await _drill_overdue(runtime)
    clock.advance(200 * 3600)
    latest = await completed_backup(runtime, env_id)
    await _drill(runtime, env_id, latest, "failed", removed=True)
    assert env_id not in await _drill_overdue(runtime)
    clock.advance(137 * 3600)
    await _drill(runtime, env_id, latest, "failed", removed=True)
    lines = await _run_scan(runtime)
    assert f"environment {env_id}: no backup proven by a restore drill for 336 h" in lines
    feed = (await client.get("/api/events", params={"type": "backup.drill_overdue_noticed"})).json()
    notices = [e["data"] for e in feed["items"] if e["data"]["environment_id"] == env_id]
    assert len(notices) == 2
    again = next(n for n in notices if n.get("last_verified_at"))
    assert again["last_verified_backup_id"] == first
    assert again["last_drill_error"].startswith("failed: RESTORE_DRILL_FAILED: table wp_posts")


@pytest.mark.spec("BAK-70")
async def test_the_site_page_shows_an_overdue_drill_and_the_last_failed_drill(
    session: httpx.AsyncClient, runtime: Runtime, clock: FrozenClock
) -> None:
    env_id = await active_environment(runtime, await blocked_node(runtime))
    site_id, _ = await _site_of(runtime, env_id)
    backup_id = await completed_backup(runtime, env_id)
    failed, _ = await _drill(runtime, env_id, backup_id, "failed", removed=True)
    clock.advance(337 * 3600)
    assert env_id in await _drill_overdue(runtime)
    section = await _page(session, f"/sites/{site_id}/sections/backups")
    assert 'class="backup-last-drill" data-outcome="failed"' in section
    assert "RESTORE_DRILL_FAILED: table wp_posts: 3 rows restored" in section
    assert f'href="/jobs/{failed}"' in section
    assert "drill failed: RESTORE_DRILL_FAILED" in section  # the backup's row
    assert "no backup of Production was proven by a restore drill yet" in section
    # A passing drill clears the row's failure and the notice.
    await _drill(runtime, env_id, backup_id, "verified", removed=True)
    section = await _page(session, f"/sites/{site_id}/sections/backups")
    assert 'data-outcome="verified"' in section and "passed" in section
    assert "Restore drill overdue" not in section and "drill failed" not in section


@pytest.mark.spec("BAK-71", "BAK-72")
async def test_the_next_drill_removes_the_throwaways_of_drills_that_ended_without_removing_them(
    session: httpx.AsyncClient, runtime: Runtime
) -> None:
    env_id = await active_environment(runtime, await record_node(runtime))
    site_id, node_id = await _site_of(runtime, env_id)
    backup_id = await completed_backup(runtime, env_id)
    # Drills that ended cleanly: nothing left.
    await _drill(runtime, env_id, backup_id, "verified", removed=True)
    await _drill(runtime, env_id, backup_id, "failed", removed=True)
    # A drill that failed and could not remove its throwaway, and two killed ones (their
    # jobs end without a result: `interrupted`), and one still running.
    failed_job, failed_left = await _drill(runtime, env_id, backup_id, "failed", removed=False)
    release = asyncio.Event()
    throwaways: dict[str, str] = {}

    async def killed(ctx: LocalPort) -> None:
        throwaways[ctx.job_id] = new_id()
        started = BackupDrillStarted(
            job_id=ctx.job_id, backup_id=backup_id, site_id=site_id, environment_id=env_id,
            node_id=node_id, throwaway_id=throwaways[ctx.job_id],
        )  # fmt: skip
        await ctx.record(f"backup_drill:{ctx.job_id}", [started])
        if ctx.job_type == "test_drill_running":
            await release.wait()
        raise RuntimeError("the daemon died here")

    runtime.jobs.register(fn_worker("test_drill_killed", killed, max_attempts=1))
    runtime.jobs.register(fn_worker("test_drill_running", killed, max_attempts=1))

    def queue(kind: str) -> Any:
        spec = JobSpec(job_type=kind, max_attempts=1)
        return runtime.db.write(lambda tx: enqueue(tx, spec, META))

    killed_jobs = [await queue("test_drill_killed") for _ in range(2)]
    for job_id in killed_jobs:
        assert (await until_ended(runtime, job_id)).status == "failed"
    running = await queue("test_drill_running")
    await until(lambda: _has_drill(runtime, running))

    def drills(c: sqlite3.Connection) -> dict[str, tuple[Any, ...]]:
        rows = c.execute(
            "SELECT job_id, outcome, error, throwaway_removed_at FROM backup_drills"
        ).fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    recorded = await runtime.db.read(drills)
    assert recorded[killed_jobs[0]][0] == "interrupted"
    assert recorded[killed_jobs[0]][1].startswith("HANDLER_ERROR: ")
    assert recorded[failed_job][:1] == ("failed",) and recorded[running][0] is None

    def leftovers() -> Any:
        return runtime.db.read(lambda c: DRILL_LEFTOVERS.query(c, (env_id, node_id)))

    expected = [failed_left, throwaways[killed_jobs[0]], throwaways[killed_jobs[1]]]
    assert [left.throwaway_id for left in await leftovers()] == expected
    assert await runtime.db.read(lambda c: DRILL_LEFTOVERS.query(c, (env_id, new_id()))) == []
    section = (await session.get(f"/sites/{site_id}/sections/backups")).text
    assert "3 throwaway environment(s) of interrupted restore drills" in section

    # The next drill removes them first; one whose removal fails stays for the one after.
    removals: list[str] = []

    async def sweep(ctx: LocalPort) -> None:
        async def remove(throwaway_id: str, site: str) -> None:
            assert site == site_id
            removals.append(throwaway_id)
            if throwaway_id == failed_left and removals.count(failed_left) == 1:
                raise JobFailure("RESTORE_DRILL_FAILED", "site-delete.yml failed")

        ctx.log(f"removed {await remove_leftovers(ctx, env_id, node_id, remove)}")

    runtime.jobs.register(fn_worker("test_drill_sweep", sweep, max_attempts=1))
    first_sweep = await queue("test_drill_sweep")
    assert (await until_ended(runtime, first_sweep)).status == "succeeded"
    assert removals == expected
    assert [left.throwaway_id for left in await leftovers()] == [failed_left]
    lines = [text for _, _, text in await log_lines(runtime, first_sweep)]
    assert "not removed: site-delete.yml failed (the next drill tries again)" in lines
    assert "removed 2" in lines
    feed = (
        await session.get("/api/events", params={"type": "backup.drill_throwaway_removed"})
    ).json()
    by_sweep = [e for e in feed["items"] if e["data"]["job_id"] == first_sweep]
    assert {e["stream"] for e in by_sweep} == {f"backup_drill:{j}" for j in killed_jobs}
    second_sweep = await queue("test_drill_sweep")
    assert (await until_ended(runtime, second_sweep)).status == "succeeded"
    assert removals[-1] == failed_left and await leftovers() == []
    section = (await session.get(f"/sites/{site_id}/sections/backups")).text
    assert "throwaway environment(s)" not in section
    # The running drill's throwaway was left alone; once its job ends, it is a leftover.
    release.set()
    assert (await until_ended(runtime, running)).status == "failed"
    assert [left.throwaway_id for left in await leftovers()] == [throwaways[running]]


async def _has_drill(runtime: Runtime, job_id: str) -> bool:
    row = await runtime.db.read(
        lambda c: c.execute("SELECT 1 FROM backup_drills WHERE job_id = ?", (job_id,)).fetchone()
    )
    return row is not None


# -- the Backups page: the target, the recovery kit, the control plane's copies (B8b) ---


def _copy_overdue(runtime: Runtime) -> Any:
    command = announce_copy_overdue()
    return runtime.db.write(lambda tx: command(tx, META))


async def _copy_stored(runtime: Runtime) -> str:
    """A copy of the control plane recorded as its job records it: its snapshot id."""
    snapshot = new_id().replace("-", "") * 2
    event = ControlPlaneCopyStored(
        snapshot_id=snapshot, job_id=new_id(), sha256="c" * 64, size_bytes=3 << 20, events=42
    )
    await runtime.db.write(lambda tx: append(tx, "control_plane", None, [event], META))
    return snapshot


@pytest.mark.spec("BAK-83")
async def test_the_backups_page_shows_the_target_the_recovery_kit_and_the_control_planes_copies(
    session: httpx.AsyncClient, runtime: Runtime, s3_server: S3Server
) -> None:
    page = (await session.get("/backups")).text
    assert 'id="backup-target-missing"' in page and "PUT /api/backup-target" in page
    assert "never exported" in page and "pressluft recovery-kit export" in page
    assert 'id="control-plane-copies-empty"' in page and 'href="/backups"' in page
    assert "Back up the control plane now" not in page
    bucket = _bucket()
    await _configure(session, s3_server, bucket)
    await runtime.db.write(lambda tx: export_kit_command(runtime.vault, META)(tx))
    await runtime.db.write(lambda tx: export_kit_command(runtime.vault, META)(tx))
    snapshot = await _copy_stored(runtime)
    page = (await session.get("/backups")).text
    assert 'id="backup-target"' in page and f"<td>{bucket}</td>" in page
    assert s3_server.access_key_id in page and s3_server.secret_access_key not in page
    assert "(2 exports, the same key each time)" in page and "never exported" not in page
    assert f'data-snapshot-id="{snapshot}"' in page and "3.0 MB" in page
    assert 'data-url="/api/control-plane/backups"' in page
    assert "control-plane-copy-overdue" not in page


@pytest.mark.spec("BAK-84", "BAK-85")
async def test_a_day_without_a_copy_of_the_control_plane_is_noticed_once_and_shown(
    session: httpx.AsyncClient,
    client: httpx.AsyncClient,
    runtime: Runtime,
    s3_server: S3Server,
    clock: FrozenClock,
) -> None:
    clock.advance(48 * 3600)
    assert await _copy_overdue(runtime) is False  # no target: nothing to copy to
    await _configure(client, s3_server, _bucket())
    clock.advance(23 * 3600)
    assert await _copy_overdue(runtime) is False
    clock.advance(2 * 3600)
    assert await _copy_overdue(runtime) is True  # a day since the target, no copy
    assert await _copy_overdue(runtime) is False  # once
    feed = (
        await client.get("/api/events", params={"type": "control_plane.copy_overdue_noticed"})
    ).json()
    (notice,) = [e["data"] for e in feed["items"]]
    assert notice["recovery_kit_exported"] is False and notice.get("last_snapshot_id") is None
    page = await _page(session, "/backups")
    assert 'id="control-plane-copy-overdue"' in page and "was ever made" in page
    assert "No recovery kit was exported" in page
    # A copy clears it; a day without the next one is noticed again (by the scan).
    await runtime.db.write(lambda tx: export_kit_command(runtime.vault, META)(tx))
    snapshot = await _copy_stored(runtime)
    page = await _page(session, "/backups")
    assert "control-plane-copy-overdue" not in page
    clock.advance(23 * 3600)
    assert await _copy_overdue(runtime) is False
    clock.advance(2 * 3600)
    assert "the control plane: no copy of its own for 24 h" in await _run_scan(runtime)
    feed = (
        await client.get("/api/events", params={"type": "control_plane.copy_overdue_noticed"})
    ).json()
    latest = (
        feed["items"][0]["data"]
        if feed["items"][0]["data"].get("last_snapshot_id")
        else (feed["items"][-1]["data"])
    )
    assert latest["last_snapshot_id"] == snapshot and latest["recovery_kit_exported"] is True
    page = await _page(session, "/backups")
    assert 'id="control-plane-copy-overdue"' in page and "No recovery kit" not in page
    await _copy_stored(runtime)
    assert "control-plane-copy-overdue" not in await _page(session, "/backups")
