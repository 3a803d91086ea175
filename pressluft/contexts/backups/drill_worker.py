"""The restore drill (`backup_verify`): a backup proven by restoring it.

The job builds a throwaway clone of the backup's environment on the same node
(no environment is recorded for it), restores the backup into it the way
`env_restore` does (verify, stage, switch), rewrites the backup's URL to the
throwaway's, runs the health checks and compares the result with the manifest
(every table's rows, the files and their bytes), records `backup.verified` with the
measured restore time — or `backup.verification_failed` — and removes the
throwaway whatever happened. The scan queues one for each active production
environment whose latest completed backup is not verified and whose last drill is
older than `restore_drill_hours`.

A drill killed with the daemon (one attempt: it is not retried) cannot remove its
throwaway. So the drill records `backup.drill_started` with the throwaway's id before
anything on the node changes, and `backup.drill_throwaway_removed` once it is gone;
the environment's next drill first removes the throwaways of ended drills that were
not removed (`DRILL_LEFTOVERS`, BAK-72).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from pressluft.clock import format_ts, parse_ts
from pressluft.contexts.backups.commands import BackupArgs, BackupNotFound, BackupNotRestorable
from pressluft.contexts.backups.events import (
    BackupDrillStarted,
    BackupDrillThrowawayRemoved,
    BackupVerificationFailed,
    BackupVerified,
)
from pressluft.contexts.backups.failures import (
    BACKUP_NOT_RESTORABLE,
    RESTORE_DRILL_FAILED,
)
from pressluft.contexts.backups.loaders import BACKUP_JOB, DRILL_LEFTOVERS
from pressluft.contexts.backups.workers import (
    HELPER,
    SCRIPT,
    Storage,
    _health,
    _install_script,
    _run,
    _stage,
    _verify,
)
from pressluft.contexts.nodes import job_node_address
from pressluft.contexts.sites import (
    ENVIRONMENT_JOB,
    build_throwaway,
    env_names,
    remove_throwaway,
)
from pressluft.db import WriteTx
from pressluft.events import Meta
from pressluft.ids import new_id
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, WorkerPort, enqueue_job
from pressluft.runners.ssh import NodeAddress, SSHQueryError, run_as

__all__ = [
    "BackupVerify",
    "compare_manifest",
    "queue_due_drills",
    "remove_leftovers",
    "verify_command",
]


def compare_manifest(manifest: dict[str, Any], tables: dict[str, int],
                     files: tuple[int, int] | None) -> list[str]:  # fmt: skip
    """What differs between a backup's manifest and what its restore holds."""
    problems = []
    expected = manifest.get("tables")
    if expected is not None:
        for name in sorted(set(expected) | set(tables)):
            want, got = expected.get(name), tables.get(name)
            if want != got:
                problems.append(f"table {name}: {got} rows restored, {want} in the manifest")
    wanted = manifest.get("files")
    if wanted is not None and files is not None and (wanted["count"], wanted["bytes"]) != files:
        problems.append(
            f"files: {files[0]} ({files[1]} bytes) restored, {wanted['count']}"
            f" ({wanted['bytes']} bytes) in the manifest"
        )
    return problems


async def _rewrite(ctx: WorkerPort, node: NodeAddress, user: str, root: str,
                   source_url: str, url: str) -> None:  # fmt: skip
    """The backup's URL rewritten to the throwaway's (the clone's three passes)."""
    old, new = source_url.rstrip("/"), url.rstrip("/")
    old_host, new_host = old.split("//", 1)[1], new.split("//", 1)[1]
    argv = ["php", HELPER, f"{root}/current"]
    for frm, to in ((old, new), (f"//{old_host}", f"//{new_host}"),
                    (f"\\/\\/{old_host}", f"\\/\\/{new_host}")):  # fmt: skip
        request = json.dumps({"command": "search-replace", "from": frm, "to": to})
        try:
            answer = json.loads(await run_as(node, user, argv, request, 120.0))
        except (SSHQueryError, ValueError) as exc:
            raise JobFailure(RESTORE_DRILL_FAILED, f"rewriting the URL failed: {exc}") from exc
        if not answer.get("ok"):
            raise JobFailure(RESTORE_DRILL_FAILED, f"rewriting the URL failed: {answer}")


async def _remove_throwaway(
    ctx: WorkerPort, node: NodeAddress, throwaway_id: str, site_id: str
) -> None:
    """A throwaway gone from the node: the databases a restore into it replaced
    (`finish`: `_ro`) or staged and never switched to (`drop`: `_rs`) — a throwaway
    built half-way has neither —, then the environment (`site-delete.yml`, which
    passes over what is already gone)."""
    names = env_names(throwaway_id, site_id)
    for step in ("finish", "drop"):
        try:
            await _run(ctx, [SCRIPT, step, names["env_root"], names["db_name"], "-"])
        except JobFailure as exc:
            ctx.log(f"{step}: {exc.message}", "stderr")
    await remove_throwaway(ctx, throwaway_id, site_id)


async def remove_leftovers(
    ctx: WorkerPort,
    environment_id: str,
    node_id: str,
    remove: Callable[[str, str], Awaitable[None]],
) -> int:
    """The throwaways the environment's ended drills left on its node, removed with
    `remove(throwaway_id, site_id)` and recorded as removed by this job, oldest
    first; one whose removal fails stays for the next drill. How many were removed."""
    removed = 0
    for left in await ctx.load(DRILL_LEFTOVERS, (environment_id, node_id)):
        ctx.log(f"removing the throwaway environment {left.throwaway_id}"
                f" left by the drill {left.job_id}")  # fmt: skip
        try:
            await remove(left.throwaway_id, left.site_id)
        except JobFailure as exc:
            ctx.log(f"not removed: {exc.message} (the next drill tries again)", "stderr")
            continue
        event = BackupDrillThrowawayRemoved(
            drill_job_id=left.job_id, job_id=ctx.job_id, site_id=left.site_id,
            throwaway_id=left.throwaway_id,
        )  # fmt: skip
        await ctx.record(f"backup_drill:{left.job_id}", [event])
        removed += 1
    return removed


class BackupVerify(JobWorker[BackupArgs]):
    """`backup_verify`: restore a completed backup into a throwaway clone, check it
    against its manifest, remove the throwaway."""

    kind = "backup_verify"
    args = BackupArgs
    timeout_seconds = 4 * 3600
    max_attempts = 1
    node_lock = "shared"
    unique = True

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def work(self, ctx: WorkerPort, args: BackupArgs) -> None:
        backup = await ctx.load(BACKUP_JOB, args.backup_id)
        if backup is None or backup.status != "completed" or backup.manifest is None:
            raise JobFailure(BACKUP_NOT_RESTORABLE, "the backup is not completed")
        source = await ctx.load(ENVIRONMENT_JOB, backup.environment_id)
        if source is None or source.status != "active":
            raise JobFailure(BACKUP_NOT_RESTORABLE, "the backup's environment is not active")
        try:
            seconds = await self._drill(ctx, backup.backup_id, backup.environment_id,
                                        backup.manifest, source)  # fmt: skip
        except JobFailure as failure:
            event = BackupVerificationFailed(
                backup_id=args.backup_id, job_id=ctx.job_id, code=failure.code,
                message=failure.message[:500],
            )  # fmt: skip
            await ctx.record(f"backup:{args.backup_id}", [event])
            raise
        await ctx.record(
            f"backup:{args.backup_id}",
            [BackupVerified(backup_id=args.backup_id, job_id=ctx.job_id, restore_seconds=seconds)],
        )
        ctx.log(f"restore drill passed: backup {args.backup_id} restores in {seconds:.1f} s")

    async def _drill(self, ctx: WorkerPort, backup_id: str, source_id: str,
                     manifest: dict[str, Any], source: Any) -> float:  # fmt: skip
        backup = await ctx.load(BACKUP_JOB, backup_id)
        assert backup is not None
        node = await job_node_address(ctx)
        node_id = ctx.node_id
        assert node_id is not None  # the node answered
        await _install_script(ctx)

        async def remove(throwaway_id: str, site_id: str) -> None:
            await _remove_throwaway(ctx, node, throwaway_id, site_id)

        await remove_leftovers(ctx, source_id, node_id, remove)
        repo = await self.storage.repository(ctx, backup)
        await _verify(ctx, repo, backup)
        throwaway_id = new_id()
        names = env_names(throwaway_id, backup.site_id)
        drill = BackupDrillStarted(
            job_id=ctx.job_id, backup_id=backup_id, site_id=backup.site_id,
            environment_id=source_id, node_id=node_id, throwaway_id=throwaway_id,
        )  # fmt: skip
        await ctx.record(f"backup_drill:{ctx.job_id}", [drill])
        ctx.log(f"building the throwaway environment {throwaway_id}")
        try:
            env = await build_throwaway(ctx, source_id, source, throwaway_id)
            objects = {o["name"]: o for o in manifest["objects"]}
            release = parse_ts(ctx.claimed_at).strftime("%Y%m%dT%H%M%SZ") + "-drill"
            started = time.monotonic()
            if "db.sql" in objects:
                argv = [SCRIPT, "stage-db", names["db_name"], f"{names['db_name']}_rs"]
                await _stage(ctx, repo, node, objects["db.sql"], argv)
            if "files.tar" in objects:
                argv = [SCRIPT, "stage-files", names["env_root"], names["env_user"], release]
                await _stage(ctx, repo, node, objects["files.tar"], argv)
            await _run(ctx, [
                SCRIPT, "switch", names["env_root"], names["db_name"],
                release if "files.tar" in objects else "-",
                f"{names['db_name']}_rs" if "db.sql" in objects else "-",
            ])  # fmt: skip
            # Counted before the restored site serves a request (WordPress writes
            # transients and cron state as it answers).
            tables: dict[str, int] = {}
            if "db.sql" in objects:
                out = await _run(ctx, [SCRIPT, "counts", names["db_name"]])
                for line in out.splitlines():
                    name, _, rows = line.rpartition("\t")
                    tables[name] = int(rows)
            files = None
            if "files.tar" in objects:
                count, size = (await _run(ctx, [SCRIPT, "files", names["env_root"]])).split()
                files = (int(count), int(size))
            if "db.sql" in objects and manifest.get("source_url"):
                await _rewrite(ctx, node, names["env_user"], names["env_root"],
                               str(manifest["source_url"]), env.preview_url)  # fmt: skip
            try:
                await _health(ctx, node, env, names["env_user"], names["env_root"])
            except JobFailure as exc:
                raise JobFailure(RESTORE_DRILL_FAILED, exc.message) from exc
            seconds = time.monotonic() - started
            problems = compare_manifest(manifest, tables, files)
            for problem in problems:
                ctx.log(problem, "stderr")
            if problems:
                raise JobFailure(RESTORE_DRILL_FAILED, f"the restore differs from the manifest:"
                                 f" {problems[0]} ({len(problems)} difference(s))")  # fmt: skip
            ctx.log(f"manifest matched: {len(tables)} table(s)"
                    + (f", {files[0]} file(s)" if files else ""))  # fmt: skip
            return seconds
        finally:
            ctx.log(f"removing the throwaway environment {throwaway_id}")
            await remove(throwaway_id, backup.site_id)
            removed = BackupDrillThrowawayRemoved(
                drill_job_id=ctx.job_id, job_id=ctx.job_id, site_id=backup.site_id,
                throwaway_id=throwaway_id,
            )  # fmt: skip
            await ctx.record(f"backup_drill:{ctx.job_id}", [removed])


def verify_command(
    backup_id: str, meta: Meta, worker: type[JobWorker[BackupArgs]]
) -> Callable[[WriteTx], str]:
    """A drill of a completed backup now (`backup_verify`): its job id."""

    def command(tx: WriteTx) -> str:
        row = tx.conn.execute(
            "SELECT b.status, b.site_id, b.environment_id, e.node_id, e.status FROM backups b"
            " JOIN environments e ON e.id = b.environment_id WHERE b.id = ?",
            (backup_id,),
        ).fetchone()
        if row is None:
            raise BackupNotFound(f"no backup {backup_id}")
        status, site_id, environment_id, node_id, env_status = row
        if status != "completed" or env_status != "active":
            raise BackupNotRestorable(
                f"a drill needs a completed backup of an active environment (the backup is"
                f" {status}, the environment {env_status})",
                details={"hint": "choose a completed backup"},
            )
        return enqueue_job(
            tx, worker, BackupArgs(backup_id=backup_id), meta,
            site_id=site_id, environment_id=environment_id, node_id=node_id,
        )  # fmt: skip

    return command


def _due(conn: sqlite3.Connection, now: str, every_hours: int) -> list[tuple[str, ...]]:
    since = format_ts(parse_ts(now) - timedelta(hours=every_hours))
    return conn.execute(
        "SELECT b.id, e.site_id, e.id, e.node_id FROM environments e"
        " JOIN backups b ON b.id = (SELECT id FROM backups WHERE environment_id = e.id"
        "   AND status = 'completed' ORDER BY completed_at DESC LIMIT 1)"
        " WHERE e.status = 'active' AND e.environment_type = 'production'"
        " AND b.verified_at IS NULL AND NOT EXISTS (SELECT 1 FROM backups v"
        "   WHERE v.environment_id = e.id AND v.verified_at > ?)"
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_type = 'backup_verify'"
        "   AND j.environment_id = e.id"
        "   AND (j.status IN ('queued', 'running')"
        "     OR (j.status = 'failed' AND j.finished_at > ?)))",
        (since, since),
    ).fetchall()


def queue_due_drills(
    every_hours: int, worker: type[JobWorker[BackupArgs]]
) -> Callable[[WriteTx, Meta], list[str]]:
    """A `backup_verify` of the latest completed backup of each active production
    environment not proven within `every_hours` (nor failed within it): job ids."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        jobs = []
        for backup_id, site_id, environment_id, node_id in _due(tx.conn, tx.now_ts, every_hours):
            jobs.append(enqueue_job(
                tx, worker, BackupArgs(backup_id=backup_id), meta,
                site_id=site_id, environment_id=environment_id, node_id=node_id,
            ))  # fmt: skip
        return jobs

    return command
