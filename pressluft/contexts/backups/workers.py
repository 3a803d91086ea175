"""The backup jobs: `backup_create`, `env_restore` and `backup_cleanup`, and the
backup step other jobs take first (`take_backup`).

A backup streams from the node over SSH (the node's `pressluft-backup` script,
installed by the job when missing or changed) into restic on the control plane:
the database dump as `db.sql`, the current release and the uploads as
`files.tar`, each one snapshot of the site's repository tagged with the backup's
id. The manifest (tables and row counts, files and bytes, counted from the
streams themselves; SHA-256 and size of each object) is recorded with
`backup.completed`. A backup starts in its site's repository in the site's target
(its own, else the default) and stays in that repository: restores, drills and the
cleanup open it with the key of the target it is in, retired or not (BAK-19). A
restore verifies every object first (restic's MAC and our SHA-256), takes a
pre-restore backup, stages the database and the release beside what is served,
switches, checks the site and switches back when a check fails. See
specs/backups.md.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

from pressluft.clock import parse_ts
from pressluft.contexts.backups.commands import (
    BackupArgs,
    RestoreArgs,
    remove_spent_targets_command,
    request_pre_backup_command,
    start_backup_command,
)
from pressluft.contexts.backups.events import (
    BackupCompleted,
    BackupExpired,
    BackupFailed,
    BackupStarted,
)
from pressluft.contexts.backups.failures import (
    BACKUP_CORRUPT,
    BACKUP_NOT_CONFIGURED,
    BACKUP_NOT_RESTORABLE,
    BACKUP_PRE_OPERATION_FAILED,
    BACKUP_SOURCE_FAILED,
    RESTORE_FAILED,
    RESTORE_INTERRUPTED,
)
from pressluft.contexts.backups.loaders import (
    BACKUP_JOB,
    EXPIRED_BACKUPS,
    LIVE_BACKUPS,
    REPOSITORIES,
    SERVED_RELEASE,
    SITE_TARGET,
    TARGET,
    TARGET_BY_ID,
    BackupJob,
    TargetRecord,
)
from pressluft.contexts.backups.streams import RowCounter, TarCounter
from pressluft.contexts.nodes import install_node_script, job_node_address, node_script
from pressluft.contexts.sites import (
    ENVIRONMENT_JOB,
    WP_HELPER,
    EnvironmentJob,
    EnvironmentRestored,
    EnvironmentRestoreReverted,
    check_environment,
    env_names,
    purge_environment_cache,
)
from pressluft.errors import PressluftError
from pressluft.ids import new_id
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort
from pressluft.runners import restic
from pressluft.runners.s3 import Target, restic_url
from pressluft.runners.ssh import (
    NodeAddress,
    SSHQueryError,
    StreamFailed,
    read_privileged,
    write_privileged,
)

__all__ = [
    "HELPER",
    "SCRIPT",
    "BackupCleanup",
    "BackupCreate",
    "EnvRestore",
    "Storage",
    "backup_workers",
    "take_backup",
]

#: The node's half (root-owned; the job installs it when missing or changed).
SCRIPT = "/usr/local/lib/pressluft/pressluft-backup"
_SCRIPT_SOURCE = Path(__file__).parent / "files" / "pressluft-backup"
HELPER = WP_HELPER
BACKUP_TIMEOUT_SECONDS = 4 * 3600
_COMMAND_DEADLINE = 120.0


# -- plumbing ------------------------------------------------------------------------------


async def _run(ctx: WorkerPort, argv: list[str], stdin: str | None = None,
               deadline: float = _COMMAND_DEADLINE) -> str:  # fmt: skip
    """One root command on the job's node; its stdout. JobFailure as a node query
    says, `BACKUP_SOURCE_FAILED` when it exits non-zero."""
    return await node_script(ctx, argv, BACKUP_SOURCE_FAILED, stdin, deadline)


async def _install_script(ctx: WorkerPort) -> None:
    """The node's `pressluft-backup` as this control plane ships it."""
    await install_node_script(ctx, SCRIPT, _SCRIPT_SOURCE.read_text())


def _engine_failure(exc: restic.ResticError) -> JobFailure:
    return JobFailure(exc.code, str(exc))


async def _opened(ctx: WorkerPort, record: TargetRecord) -> Target:
    """The target with its secret key."""
    return Target(
        endpoint=record.endpoint,
        region=record.region,
        bucket=record.bucket,
        prefix=record.prefix,
        access_key_id=record.access_key_id,
        secret_access_key=await ctx.secret(record.secret_id),
    )


async def _target(ctx: WorkerPort) -> Target:
    """The default target (the control plane's own copy goes there)."""
    record = await ctx.load(TARGET, None)
    if record is None:
        raise JobFailure(BACKUP_NOT_CONFIGURED, "no backup target is configured")
    return await _opened(ctx, record)


#: How often a backup's start reads the site's target again when it changed meanwhile.
_START_TRIES = 3


class Storage:
    """Where the repositories live on the control plane's disk (restic's cache), and
    which of them this daemon has found initialised (each restic run that opens a
    repository costs ~0.5 s of key derivation: asked once per repository and run)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._initialised: set[str] = set()

    async def repository(self, ctx: WorkerPort, backup: BackupJob) -> restic.Repository:
        """The repository the backup is stored in, opened with the key of the target it
        is in — retired or not, never simply the one in effect now (BAK-19)."""
        url, secret_id = backup.repository_url, backup.repository_secret_id
        if url is None or secret_id is None:
            raise JobFailure(BACKUP_NOT_RESTORABLE, f"backup {backup.backup_id} was never stored")
        record = None
        if backup.target_id is not None:
            record = await ctx.load(TARGET_BY_ID, backup.target_id)
        if record is None:
            raise JobFailure(
                BACKUP_NOT_CONFIGURED,
                f"the target of the repository {url} was removed: its key is gone",
            )
        return await self._open(ctx, url, secret_id, await _opened(ctx, record))

    async def start(self, ctx: WorkerPort, backup: BackupJob) -> restic.Repository:
        """Start taking the backup (`backup.started`) and its repository: a running one's
        own (an earlier attempt's); else the site's repository in the site's target,
        made on its first backup there (password sealed first, then initialised)."""
        if backup.status == "running" and backup.repository_url is not None:
            repo = await self.repository(ctx, backup)
            await ctx.record(f"backup:{backup.backup_id}", [
                BackupStarted(backup_id=backup.backup_id, job_id=ctx.job_id, storage_path=repo.url)
            ])  # fmt: skip
            return repo
        for _ in range(_START_TRIES):
            record = await ctx.load(SITE_TARGET, backup.site_id)
            if record is None:
                raise JobFailure(
                    BACKUP_NOT_CONFIGURED,
                    "no backup target is configured for the site (its own or the default)",
                )
            target = await _opened(ctx, record)
            url = restic_url(target, f"sites/{backup.site_id}")
            command = start_backup_command(backup.backup_id, ctx.job_id, record.id, url,
                                           secrets.token_urlsafe(32), ctx.sealer())  # fmt: skip
            secret_id = await ctx.command(command)
            if secret_id is not None:
                return await self._open(ctx, url, secret_id, target)
            ctx.log("the site's backup target changed meanwhile: reading it again")
        raise JobFailure(BACKUP_NOT_CONFIGURED, "the site's backup target kept changing")

    async def _open(
        self, ctx: WorkerPort, url: str, secret_id: str, target: Target
    ) -> restic.Repository:
        repo = restic.Repository(
            url=url, password=await ctx.secret(secret_id), target=target, cache_dir=self.cache_dir
        )
        if repo.url in self._initialised:
            return repo
        try:
            if await restic.ensure_initialized(repo):
                ctx.log(f"initialised the site's repository {url}")
        except restic.ResticError as exc:
            raise _engine_failure(exc) from exc
        self._initialised.add(repo.url)
        return repo


async def _counted(source: AsyncIterator[bytes], feed: Callable[[bytes], None]
                   ) -> AsyncIterator[bytes]:  # fmt: skip
    async for chunk in source:
        feed(chunk)
        yield chunk


async def _store(
    ctx: WorkerPort,
    repo: restic.Repository,
    node: NodeAddress,
    argv: list[str],
    filename: str,
    backup_id: str,
    feed: Callable[[bytes], None],
) -> dict[str, Any]:
    started = time.monotonic()
    try:
        stored = await restic.backup_stream(
            repo, _counted(read_privileged(node, argv), feed), filename, [f"backup={backup_id}"]
        )
    except StreamFailed as exc:
        for line in exc.stderr.strip().splitlines()[-10:]:
            ctx.log(line, "stderr")
        raise JobFailure(BACKUP_SOURCE_FAILED, str(exc)) from exc
    except SSHQueryError as exc:
        raise JobFailure("NODE_UNREACHABLE", f"the node did not answer: {exc}") from exc
    except restic.ResticError as exc:
        raise _engine_failure(exc) from exc
    elapsed = time.monotonic() - started
    ctx.log(
        f"stored {filename}: {stored.size} bytes in {elapsed:.1f} s, {stored.added_bytes} new"
        f" after deduplication and compression (snapshot {stored.snapshot_id[:8]})"
    )
    return {
        "name": filename,
        "snapshot_id": stored.snapshot_id,
        "sha256": stored.sha256,
        "bytes": stored.size,
        "added_bytes": stored.added_bytes,
    }


def checksum(objects: list[dict[str, Any]]) -> str:
    """The backup's checksum: SHA-256 over its objects' names, sizes and SHA-256s."""
    lines = "".join(f"{o['name']} {o['bytes']} {o['sha256']}\n" for o in objects)
    return hashlib.sha256(lines.encode()).hexdigest()


async def take_backup(ctx: WorkerPort, storage: Storage, backup_id: str) -> BackupJob:
    """Take the backup `backup_id` of its environment (pending or running: an earlier
    attempt's snapshots are forgotten first) and record it completed."""
    backup = await ctx.load(BACKUP_JOB, backup_id)
    if backup is None:
        raise JobFailure("HANDLER_ERROR", f"no backup {backup_id}")
    env = await ctx.load(ENVIRONMENT_JOB, backup.environment_id)
    if env is None:
        raise JobFailure(BACKUP_NOT_RESTORABLE, "the environment is gone")
    repo = await storage.start(ctx, backup)
    # A pending backup was never started, so no snapshot has its tag: only a running
    # one (an attempt that died) is looked for (each restic run costs ~0.5 s).
    if backup.status != "pending":
        try:
            await restic.unlock(repo)
            earlier = await restic.snapshots(repo, f"backup={backup_id}")
            if earlier:
                await restic.forget(repo, [s.id for s in earlier])
                ctx.log(f"forgot {len(earlier)} snapshot(s) of an interrupted attempt")
        except restic.ResticError as exc:
            raise _engine_failure(exc) from exc
    node = await job_node_address(ctx)
    await _install_script(ctx)
    names = env_names(backup.environment_id, backup.site_id)
    objects: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {
        "format": 1,
        "scope": backup.scope,
        "site_id": backup.site_id,
        "environment_id": backup.environment_id,
        "source_url": env.preview_url,
    }
    if backup.scope in ("db", "full"):
        rows = RowCounter()
        argv = [SCRIPT, "dump-db", names["db_name"]]
        objects.append(await _store(ctx, repo, node, argv, "db.sql", backup_id, rows.feed))
        manifest["tables"] = rows.close()
    if backup.scope in ("files", "full"):
        files = TarCounter()
        argv = [SCRIPT, "tar-files", names["env_root"]]
        objects.append(await _store(ctx, repo, node, argv, "files.tar", backup_id, files.feed))
        manifest["files"] = {"count": files.files, "bytes": files.bytes}
    version = (await _run(ctx, [SCRIPT, "wp-version", names["env_root"]])).strip()
    manifest["wordpress_version"] = version or None
    manifest["objects"] = objects
    size = sum(int(o["bytes"]) for o in objects)
    added = sum(int(o["added_bytes"]) for o in objects)
    event = BackupCompleted(
        backup_id=backup_id,
        job_id=ctx.job_id,
        checksum=checksum(objects),
        size_bytes=size,
        added_bytes=added,
        manifest=manifest,
    )
    await ctx.record(f"backup:{backup_id}", [event])
    ctx.log(f"backup {backup_id} completed: {len(objects)} object(s), {size} bytes")
    return backup


class BackupCreate(JobWorker[BackupArgs]):
    """`backup_create`: one backup of an environment into its site's repository."""

    kind = "backup_create"
    args = BackupArgs
    timeout_seconds = BACKUP_TIMEOUT_SECONDS
    max_attempts = 2
    #: A backup holds its site; its node it shares.
    node_lock = "shared"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def work(self, ctx: WorkerPort, args: BackupArgs) -> None:
        backup = await ctx.load(BACKUP_JOB, args.backup_id)
        if backup is None or backup.status not in ("pending", "running"):
            ctx.log("the backup is no longer pending: nothing to do")
            return
        await take_backup(ctx, self.storage, args.backup_id)


# -- restore -------------------------------------------------------------------------------


async def _verify(ctx: WorkerPort, repo: restic.Repository, backup: BackupJob) -> None:
    """Every object of the backup reads back whole with its SHA-256 (BACKUP_CORRUPT)."""
    assert backup.manifest is not None
    for obj in backup.manifest["objects"]:
        started = time.monotonic()
        try:
            await restic.verify(repo, obj["snapshot_id"], obj["name"], obj["sha256"],
                                int(obj["bytes"]))  # fmt: skip
        except restic.RepositoryCorrupt as exc:
            raise JobFailure(BACKUP_CORRUPT, f"{obj['name']} of backup {backup.backup_id}"
                             f" does not verify: {exc}") from exc  # fmt: skip
        except restic.ResticError as exc:
            raise _engine_failure(exc) from exc
        ctx.log(f"verified {obj['name']} ({obj['bytes']} bytes, sha256 {obj['sha256'][:12]}…)"
                f" in {time.monotonic() - started:.1f} s")  # fmt: skip


async def _stage(
    ctx: WorkerPort,
    repo: restic.Repository,
    node: NodeAddress,
    obj: dict[str, Any],
    argv: list[str],
) -> None:
    """Stream one object from the repository into the node's `argv` (staging)."""
    started = time.monotonic()
    try:
        async with aclosing(restic.dump_stream(repo, obj["snapshot_id"], obj["name"])) as chunks:
            await write_privileged(node, argv, chunks)
    except StreamFailed as exc:
        for line in exc.stderr.strip().splitlines()[-10:]:
            ctx.log(line, "stderr")
        raise JobFailure(RESTORE_FAILED, str(exc)) from exc
    except restic.RepositoryCorrupt as exc:
        raise JobFailure(BACKUP_CORRUPT, str(exc)) from exc
    except restic.ResticError as exc:
        raise _engine_failure(exc) from exc
    except SSHQueryError as exc:
        raise JobFailure("NODE_UNREACHABLE", f"the node did not answer: {exc}") from exc
    ctx.log(f"staged {obj['name']} in {time.monotonic() - started:.1f} s")


async def _health(ctx: WorkerPort, node: NodeAddress, env: EnvironmentJob, env_user: str,
                  env_root: str) -> None:  # fmt: skip
    """The restored site's checks (`check_environment`): RESTORE_FAILED naming the check."""
    try:
        await check_environment(ctx, node, env, env_user, env_root)
    except JobFailure as exc:
        raise JobFailure(RESTORE_FAILED, exc.message) from exc


def _final(failure: JobFailure) -> JobFailure:
    """A restore's failure after it put everything back is its end: a retryable code
    (the target did not answer) would queue a second attempt, which finds the
    environment active and would end as if it had restored."""
    if not failure.retryable:
        return failure
    return JobFailure(RESTORE_FAILED, f"{failure.code}: {failure.message}")


class EnvRestore(JobWorker[RestoreArgs]):
    """`env_restore`: a completed backup of the environment served again, or nothing
    changed. A second attempt (the daemon stopped during the first) puts back what the
    control plane says is served and fails `RESTORE_INTERRUPTED`."""

    kind = "env_restore"
    args = RestoreArgs
    timeout_seconds = BACKUP_TIMEOUT_SECONDS
    max_attempts = 2
    node_lock = "shared"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def work(self, ctx: WorkerPort, args: RestoreArgs) -> None:
        environment_id = ctx.environment_id
        assert environment_id is not None
        env = await ctx.load(ENVIRONMENT_JOB, environment_id)
        if env is None or env.status != "restoring":
            ctx.log("the environment is not restoring: nothing to do")
            return
        names = env_names(environment_id, env.site_id)
        if ctx.attempt > 1:
            node = await job_node_address(ctx)
            reason = "interrupted: the daemon stopped during the restore"
            await self._revert(ctx, node, environment_id, names, None, args.backup_id, reason)
            raise JobFailure(
                RESTORE_INTERRUPTED,
                "the restore was interrupted; the environment serves what it served before"
                " (run the restore again)",
            )
        try:
            node = await job_node_address(ctx)
            backup = await self._restorable(ctx, environment_id, args)
            repo = await self.storage.repository(ctx, backup)
            await _verify(ctx, repo, backup)
            await self._pre_backup(ctx, environment_id)
        except JobFailure as failure:
            # Nothing on the node changed: the environment is active again, and the
            # job ends here (a second attempt is only for a daemon that died).
            await self._reverted(ctx, environment_id, args.backup_id, failure.message)
            raise _final(failure) from failure
        await self._restore(ctx, node, repo, environment_id, env, names, backup, args)

    @staticmethod
    async def _restorable(ctx: WorkerPort, environment_id: str, args: RestoreArgs) -> BackupJob:
        backup = await ctx.load(BACKUP_JOB, args.backup_id)
        problem = None
        if backup is None or backup.status != "completed" or backup.manifest is None:
            problem = "the backup is not completed"
        elif backup.environment_id != environment_id:
            problem = "the backup is of another environment"
        if problem is not None:
            raise JobFailure(BACKUP_NOT_RESTORABLE, problem)
        assert backup is not None
        return backup

    async def _pre_backup(self, ctx: WorkerPort, environment_id: str) -> None:
        """A full backup first; if it fails, the restore does not start."""
        try:
            pre_id = await ctx.command(
                request_pre_backup_command(environment_id, "pre_restore", ctx.job_id)
            )
        except PressluftError as exc:  # e.g. the site's target was removed meanwhile
            raise JobFailure(
                BACKUP_PRE_OPERATION_FAILED, f"the pre-restore backup cannot start: {exc}"
            ) from exc
        try:
            await take_backup(ctx, self.storage, pre_id)
        except JobFailure as exc:
            failed = BackupFailed(
                backup_id=pre_id, job_id=ctx.job_id, code=exc.code, message=exc.message[:500]
            )
            await ctx.record(f"backup:{pre_id}", [failed])
            raise JobFailure(
                BACKUP_PRE_OPERATION_FAILED,
                f"the pre-restore backup failed ({exc.code}): {exc.message}",
            ) from exc
        ctx.log(f"pre-restore backup {pre_id} completed")

    @staticmethod
    async def _reverted(ctx: WorkerPort, environment_id: str, backup_id: str, reason: str) -> None:
        event = EnvironmentRestoreReverted(
            environment_id=environment_id,
            job_id=ctx.job_id,
            backup_id=backup_id,
            reason=reason[:500],
        )
        await ctx.record(f"environment:{environment_id}", [event])

    async def _revert(
        self,
        ctx: WorkerPort,
        node: NodeAddress,
        environment_id: str,
        names: dict[str, str],
        old_release: str | None,
        backup_id: str,
        reason: str,
    ) -> None:
        """Serve what was served before — the previous release (`old_release`, else the
        one the control plane records as current) and the previous database — then
        record it."""
        release = old_release
        if release is None:
            path = await ctx.load(SERVED_RELEASE, environment_id)
            release = None if path is None else path.rstrip("/").rsplit("/", 1)[-1]
        argv = [SCRIPT, "revert", names["env_root"], names["db_name"], release or "-"]
        await _install_script(ctx)
        await _run(ctx, argv)
        await _run(ctx, [SCRIPT, "flush-object-cache", environment_id])
        env = await ctx.load(ENVIRONMENT_JOB, environment_id)
        if env is not None:
            try:
                await purge_environment_cache(ctx, environment_id, env, [])
            except JobFailure as exc:
                ctx.log(f"after switching back: {exc.message}", "stderr")
        ctx.log(f"switched back: {reason}")
        await self._reverted(ctx, environment_id, backup_id, reason)

    async def _restore(
        self,
        ctx: WorkerPort,
        node: NodeAddress,
        repo: restic.Repository,
        environment_id: str,
        env: EnvironmentJob,
        names: dict[str, str],
        backup: BackupJob,
        args: RestoreArgs,
    ) -> None:
        """Stage, switch, check; on any failure switch back (what was staged goes)."""
        assert backup.manifest is not None
        objects = {o["name"]: o for o in backup.manifest["objects"]}
        with_db = args.scope in ("db", "full") and "db.sql" in objects
        with_files = args.scope in ("files", "full") and "files.tar" in objects
        release = parse_ts(ctx.claimed_at).strftime("%Y%m%dT%H%M%SZ") + "-restore"
        stage_db = f"{names['db_name']}_rs"
        started = time.monotonic()
        previous: str | None = None
        switching = False
        try:
            if with_db:
                argv = [SCRIPT, "stage-db", names["db_name"], stage_db]
                await _stage(ctx, repo, node, objects["db.sql"], argv)
            if with_files:
                argv = [SCRIPT, "stage-files", names["env_root"], names["env_user"], release]
                await _stage(ctx, repo, node, objects["files.tar"], argv)
            switching = True
            argv = [
                SCRIPT,
                "switch",
                names["env_root"],
                names["db_name"],
                release if with_files else "-",
                stage_db if with_db else "-",
            ]
            out = await _run(ctx, argv)
            for line in out.splitlines():
                if line.startswith("previous="):
                    previous = line.partition("=")[2].strip()
            ctx.log("switched: the backup is served" + (f" (was {previous})" if previous else ""))
            await _run(ctx, [SCRIPT, "flush-object-cache", environment_id])
            await _health(ctx, node, env, names["env_user"], names["env_root"])
        except JobFailure as failure:
            ctx.log(f"restore: {failure.message}", "stderr")
            if switching:
                await self._revert(
                    ctx,
                    node,
                    environment_id,
                    names,
                    previous,
                    args.backup_id,
                    f"the restore failed after the switch: {failure.message}",
                )
            else:
                argv = [SCRIPT, "drop", names["env_root"], names["db_name"],
                        release if with_files else "-"]  # fmt: skip
                await _run(ctx, argv)
                await self._reverted(ctx, environment_id, args.backup_id, failure.message)
            if failure.code == BACKUP_CORRUPT:
                raise
            raise JobFailure(RESTORE_FAILED, failure.message) from failure
        argv = [SCRIPT, "finish", names["env_root"], names["db_name"],
                release if with_files else "-"]  # fmt: skip
        await _run(ctx, argv)
        seconds = time.monotonic() - started
        try:
            await purge_environment_cache(ctx, environment_id, env, [])
        except JobFailure as exc:
            ctx.log(f"after the restore: {exc.message}", "stderr")
        version = backup.manifest.get("wordpress_version") if with_files else None
        event = EnvironmentRestored(
            environment_id=environment_id,
            job_id=ctx.job_id,
            backup_id=args.backup_id,
            release_id=new_id() if with_files else None,
            release_path=f"{names['env_root']}/releases/{release}" if with_files else None,
            wordpress_version=None if version is None else str(version),
        )
        await ctx.record(f"environment:{environment_id}", [event])
        ctx.log(f"restored backup {args.backup_id} ({args.scope}) in {seconds:.1f} s")


# -- cleanup -------------------------------------------------------------------------------


class BackupCleanup(JobWorker[NoArgs]):
    """`backup_cleanup` (every 6 h): the completed backups past their retention are
    forgotten in their repositories and `expired` (reference scenario 27); so are the
    snapshots of no live backup (an attempt killed with the daemon, a failed backup's
    objects); each repository that lost snapshots is pruned. Each repository is opened
    with the key of its own target, retired ones too; a retired target no backup is in
    any more is removed (its key destroyed)."""

    kind = "backup_cleanup"
    args = NoArgs
    timeout_seconds = 3600
    max_attempts = 1
    node_lock = "shared"
    unique = True

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        due = await ctx.load(EXPIRED_BACKUPS, ctx.claimed_at)
        repositories = await ctx.load(REPOSITORIES, None)
        by_repository: dict[str | None, list[Any]] = {}
        for item in due:
            by_repository.setdefault(item.repository_url, []).append(item)
        targets: dict[str, Target] = {}
        for record in repositories:
            if record.target_id not in targets:
                found = await ctx.load(TARGET_BY_ID, record.target_id)
                if found is None:
                    continue
                targets[record.target_id] = await _opened(ctx, found)
            # Each repository with the key of the target it is in (a retired one's too).
            repo = restic.Repository(
                url=record.url,
                password=await ctx.secret(record.secret_id),
                target=targets[record.target_id],
                cache_dir=self.storage.cache_dir,
            )
            expired = by_repository.get(record.url, [])
            try:
                await restic.unlock(repo)
                forgotten = [s for item in expired for s in item.snapshot_ids]
                # Snapshots of no live backup: an attempt killed with the daemon, a
                # failed backup's first object.
                live = await ctx.load(LIVE_BACKUPS, record.site_id)
                expiring = {item.backup_id for item in expired}
                for snapshot in await restic.snapshots(repo):
                    owner = _owner(snapshot.tags)
                    stale = owner is not None and (owner not in live or owner in expiring)
                    if stale and snapshot.id not in forgotten:
                        forgotten.append(snapshot.id)
                if forgotten:
                    await restic.forget(repo, forgotten)
                    await restic.prune(repo)
            except restic.ResticError as exc:
                raise _engine_failure(exc) from exc
            for item in expired:
                await ctx.record(
                    f"backup:{item.backup_id}",
                    [BackupExpired(backup_id=item.backup_id, job_id=ctx.job_id)],
                )
            if forgotten:
                ctx.log(f"site {record.site_id}: {len(expired)} backup(s) expired,"
                        f" {len(forgotten)} snapshot(s) forgotten and pruned"
                        f" in {record.url}")  # fmt: skip
        if not repositories:
            ctx.log("no repository yet")
        # A retired target no backup is in any more: its key goes (BAK-29).
        for target_id in await ctx.command(remove_spent_targets_command()):
            ctx.log(f"removed the retired target {target_id}: no backup is in it any more")


def _owner(tags: Sequence[str]) -> str | None:
    """The backup a snapshot belongs to (its `backup=<id>` tag)."""
    for tag in tags:
        if tag.startswith("backup="):
            return tag.partition("=")[2]
    return None


def backup_workers(storage: Storage) -> list[JobWorker[Any]]:
    return [BackupCreate(storage), EnvRestore(storage), BackupCleanup(storage)]
