"""Restore into a new environment (`env_create_from_backup`): a copy of the backup's
environment, built beside it on its node and filled with the backup, to inspect.

`into_new.RestoreIntoNew` checks the backup when the sites capability records the
new environment (`Parts.backup_sources`). The job verifies every object first, builds
the copy the way `env_create` does (`env-create.yml`), stages and switches the
backup into it the way a restore does, removes the copy's own release, rewrites the
backup's URL to the new environment's, gives the administrator the new
environment's own password, runs the health checks and records the environment
provisioned with a release from the backup. A failure leaves it `failed` (its
deletion removes everything of it on the node); one attempt. See specs/backups.md.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pressluft.clock import parse_ts
from pressluft.contexts.backups.commands import BackupArgs
from pressluft.contexts.backups.drill_worker import _rewrite
from pressluft.contexts.backups.failures import BACKUP_NOT_RESTORABLE, RESTORE_FAILED
from pressluft.contexts.backups.loaders import BACKUP_JOB, BackupJob
from pressluft.contexts.backups.workers import (
    BACKUP_TIMEOUT_SECONDS,
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
    EnvCreate,
    EnvironmentJob,
    built_release,
    env_names,
    purge_environment_cache,
    record_provisioned,
)
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, WorkerPort
from pressluft.runners.ssh import NodeAddress, SSHQueryError, run_as

__all__ = ["EnvFromBackup"]


class EnvFromBackup(JobWorker[BackupArgs]):
    """`env_create_from_backup`: the environment its command recorded (`cloning`),
    a copy of the backup's environment filled with the backup."""

    kind = "env_create_from_backup"
    args = BackupArgs
    timeout_seconds = BACKUP_TIMEOUT_SECONDS
    #: A second attempt would build over a half-restored copy: delete it, ask again.
    max_attempts = 1
    node_lock = "shared"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def work(self, ctx: WorkerPort, args: BackupArgs) -> None:
        environment_id = ctx.environment_id
        assert environment_id is not None
        env = await ctx.load(ENVIRONMENT_JOB, environment_id)
        if env is None or env.status != "cloning":
            ctx.log("the environment is not cloning: nothing to do")
            return
        backup = await ctx.load(BACKUP_JOB, args.backup_id)
        if (
            backup is None
            or backup.status != "completed"
            or backup.manifest is None
            or backup.site_id != env.site_id
        ):
            raise JobFailure(BACKUP_NOT_RESTORABLE, "the backup is not a completed one of the site")
        repo = await self.storage.repository(ctx, backup)
        await _verify(ctx, repo, backup)
        node = await job_node_address(ctx)
        await _install_script(ctx)
        ctx.log(f"building the copy of {env.source_environment_id} to restore into")
        summary, extra_vars = await EnvCreate().build_copy(ctx, environment_id, env)
        built = built_release(summary, extra_vars)
        started = time.monotonic()
        release = await self._fill(ctx, node, repo, environment_id, env, backup, built)
        seconds = time.monotonic() - started
        try:
            await purge_environment_cache(ctx, environment_id, env, [])
        except JobFailure as exc:
            ctx.log(f"after the restore: {exc.message}", "stderr")
        assert backup.manifest is not None
        version = (
            backup.manifest.get("wordpress_version")
            if release != built
            else summary.data.get("wordpress_version")
        )
        await record_provisioned(
            ctx, environment_id, release, ("backup", backup.backup_id),
            None if version is None else str(version),
        )  # fmt: skip
        ctx.log(f"environment active: backup {backup.backup_id} restored in {seconds:.1f} s"
                f" at {env.preview_url}")  # fmt: skip

    async def _fill(
        self,
        ctx: WorkerPort,
        node: NodeAddress,
        repo: Any,
        environment_id: str,
        env: EnvironmentJob,
        backup: BackupJob,
        built: str,
    ) -> str:
        """The backup staged and switched into the copy, its URL and the
        administrator's password made the copy's, the copy checked: the release
        it serves."""
        assert backup.manifest is not None
        names = env_names(environment_id, env.site_id)
        root, database = names["env_root"], names["db_name"]
        objects = {o["name"]: o for o in backup.manifest["objects"]}
        with_db, with_files = "db.sql" in objects, "files.tar" in objects
        release = parse_ts(ctx.claimed_at).strftime("%Y%m%dT%H%M%SZ") + "-restore"
        if with_db:
            argv = [SCRIPT, "stage-db", database, f"{database}_rs"]
            await _stage(ctx, repo, node, objects["db.sql"], argv)
        if with_files:
            argv = [SCRIPT, "stage-files", root, names["env_user"], release]
            await _stage(ctx, repo, node, objects["files.tar"], argv)
        await _run(ctx, [SCRIPT, "switch", root, database, release if with_files else "-",
                               f"{database}_rs" if with_db else "-"])  # fmt: skip
        await _run(ctx, [SCRIPT, "finish", root, database, release if with_files else "-"])
        if with_files:  # the copy's own release: never served again
            own = built.rstrip("/").rsplit("/", 1)[-1]
            await _run(ctx, [SCRIPT, "drop", root, database, own])
        ctx.log("switched: the copy serves the backup")
        if with_db:
            source_url = backup.manifest.get("source_url")
            if source_url:
                try:
                    await _rewrite(ctx, node, names["env_user"], root, str(source_url),
                                   env.preview_url)  # fmt: skip
                except JobFailure as exc:
                    raise JobFailure(RESTORE_FAILED, exc.message) from exc
            await _admin_password(ctx, node, env, names["env_user"], root)
        await _run(ctx, [SCRIPT, "flush-object-cache", environment_id])
        await _health(ctx, node, env, names["env_user"], root)
        return f"{root}/releases/{release}" if with_files else built


async def _admin_password(ctx: WorkerPort, node: NodeAddress, env: EnvironmentJob,
                          user: str, root: str) -> None:  # fmt: skip
    """The restored database holds the backup's password hash: the administrator gets
    the new environment's own (sealed for it), as a clone's does."""
    if env.admin_secret_id is None:
        return
    request = json.dumps({
        "command": "user-password", "user_login": env.admin_user,
        "password": await ctx.secret(env.admin_secret_id),
    })  # fmt: skip
    try:
        answer = json.loads(await run_as(node, user, ["php", HELPER, f"{root}/current"],
                                         request, 60.0))  # fmt: skip
    except (SSHQueryError, ValueError) as exc:
        message = f"setting the administrator's password failed: {exc}"
        raise JobFailure(RESTORE_FAILED, message) from exc
    if not answer.get("ok"):
        raise JobFailure(RESTORE_FAILED, f"setting the administrator's password failed: {answer}")
    if "skipped" in answer:
        ctx.log(f"the administrator {env.admin_user} is not in the backup: its password was not"
                " set; magic login uses the first administrator", "stderr")  # fmt: skip
