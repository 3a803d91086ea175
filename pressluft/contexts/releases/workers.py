"""The release jobs: `release_activate` serves a kept release of an environment again,
checks it, switches back when a check fails, and prunes the node's releases to the
newest `releases_keep` (the served one always kept). See specs/releases.md.

The node's half is the root-owned `pressluft-release` script (installed by the job
when missing or changed); nginx resolves `current` per request (`$realpath_root`),
so a switch takes effect for the next request and opcache never mixes releases.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pressluft.contexts.nodes import install_node_script, job_node_address, node_script
from pressluft.contexts.releases.commands import ActivateArgs
from pressluft.contexts.releases.failures import (
    RELEASE_FAILED,
    RELEASE_GONE,
    RELEASE_INTERRUPTED,
    RELEASE_UNHEALTHY,
)
from pressluft.contexts.releases.loaders import RELEASES, EnvironmentReleases, RecordedRelease
from pressluft.contexts.sites import (
    ENVIRONMENT_JOB,
    EnvironmentJob,
    EnvironmentReleaseActivated,
    EnvironmentReleaseChangeReverted,
    EnvironmentReleasesPruned,
    check_environment,
    env_names,
    purge_environment_cache,
)
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, WorkerPort

__all__ = ["SCRIPT", "ReleaseActivate", "release_workers", "releases_to_prune"]

#: The node's half (root-owned; the job installs it when missing or changed).
SCRIPT = "/usr/local/lib/pressluft/pressluft-release"
_SCRIPT_SOURCE = Path(__file__).parent / "files" / "pressluft-release"
#: A step of the script that fails (its stderr in the message; a node that does not
#: answer is NODE_UNREACHABLE, tried again).
_NODE_FAILED = RELEASE_FAILED


def _final(failure: JobFailure) -> JobFailure:
    """A failure before the switch ends the job: a retryable one (the node did not
    answer) would queue a second attempt, which is the crash recovery."""
    if not failure.retryable:
        return failure
    return JobFailure(RELEASE_FAILED, f"{failure.code}: {failure.message}")


def releases_to_prune(recorded: EnvironmentReleases, keep: int) -> list[str]:
    """The kept releases beyond the newest `keep` (names on the node, oldest last),
    never the served one."""
    kept = [r for r in recorded.releases if not r.pruned]
    return [r.release_id for r in kept[keep:] if r.release_id != recorded.current_release_id]


async def _switch(ctx: WorkerPort, names: dict[str, str], release: str) -> None:
    argv = [SCRIPT, "activate", names["env_root"], names["env_user"], release]
    await node_script(ctx, argv, _NODE_FAILED)


async def prune(ctx: WorkerPort, environment_id: str, env: EnvironmentJob, keep: int) -> None:
    """Remove the releases beyond the newest `keep` from the node and record it."""
    recorded = await ctx.load(RELEASES, environment_id)
    gone = releases_to_prune(recorded, keep)
    if not gone:
        return
    names = [r.name for r in recorded.releases if r.release_id in gone]
    where = env_names(environment_id, env.site_id)
    await node_script(ctx, [SCRIPT, "prune", where["env_root"], where["env_user"], *names],
                      _NODE_FAILED)  # fmt: skip
    event = EnvironmentReleasesPruned(environment_id=environment_id, job_id=ctx.job_id,
                                      release_ids=gone)  # fmt: skip
    await ctx.record(f"environment:{environment_id}", [event])
    ctx.log(f"pruned {len(gone)} release(s) beyond the newest {keep}: {', '.join(names)}")


class ReleaseActivate(JobWorker[ActivateArgs]):
    """`release_activate`: a kept release served again and checked, or nothing
    changed. A second attempt (the daemon stopped during the first) serves what the
    control plane records as served and fails `RELEASE_INTERRUPTED`."""

    kind = "release_activate"
    args = ActivateArgs
    timeout_seconds = 600
    max_attempts = 2
    node_lock = "shared"

    def __init__(self, keep: int) -> None:
        self.keep = keep

    async def work(self, ctx: WorkerPort, args: ActivateArgs) -> None:
        environment_id = ctx.environment_id
        assert environment_id is not None
        env = await ctx.load(ENVIRONMENT_JOB, environment_id)
        if env is None or env.status != "deploying":
            ctx.log("the environment is not deploying: nothing to do")
            return
        names = env_names(environment_id, env.site_id)
        recorded = await ctx.load(RELEASES, environment_id)
        served = recorded.get(recorded.current_release_id)
        if ctx.attempt > 1:
            if served is not None:
                await _switch(ctx, names, served.name)
            await self._purge(ctx, environment_id, env)
            await self._reverted(ctx, environment_id, "interrupted: the daemon stopped")
            raise JobFailure(RELEASE_INTERRUPTED, "the change was interrupted; the environment"
                             " serves what it served before (activate it again)")  # fmt: skip
        wanted = recorded.get(args.release_id)
        try:
            await install_node_script(ctx, SCRIPT, _SCRIPT_SOURCE.read_text())
            argv = [SCRIPT, "list", names["env_root"], names["env_user"]]
            listed = await node_script(ctx, argv, _NODE_FAILED)
            if wanted is None or wanted.pruned or wanted.name not in listed.split()[1:]:
                raise JobFailure(RELEASE_GONE, f"release {args.release_id} is not on the node")
        except JobFailure as failure:
            # Nothing was switched: the job ends here (a second attempt is only for a
            # daemon that died after the switch).
            await self._reverted(ctx, environment_id, failure.message)
            raise _final(failure) from failure
        assert wanted is not None
        await _switch(ctx, names, wanted.name)
        ctx.log(f"switched: serving release {wanted.name}"
                + (f" (was {served.name})" if served else ""))  # fmt: skip
        try:
            await self._settle(ctx, environment_id, env, names)
            version = await self._version(ctx, names, wanted.name)
        except JobFailure as failure:
            ctx.log(f"release: {failure.message}", "stderr")
            await self._switch_back(ctx, environment_id, env, names, served, failure.message)
            raise JobFailure(RELEASE_UNHEALTHY, failure.message) from failure
        except BaseException:
            # Cancelled, timed out or broken after the switch: what was served is
            # served again before the job ends (shielded from the cancellation).
            reason = "the change was cancelled or broke after the switch"
            undo = self._switch_back(ctx, environment_id, env, names, served, reason)
            await asyncio.shield(undo)
            raise
        event = EnvironmentReleaseActivated(
            environment_id=environment_id, job_id=ctx.job_id, release_id=args.release_id,
            previous_release_id=recorded.current_release_id, wordpress_version=version or None,
        )  # fmt: skip
        await ctx.record(f"environment:{environment_id}", [event])
        ctx.log(f"release {wanted.name} is served (WordPress {version or '?'})")
        try:
            await prune(ctx, environment_id, env, self.keep)
        except JobFailure as exc:  # the change is done; the next one prunes
            ctx.log(f"pruning: {exc.message}", "stderr")

    async def _switch_back(
        self,
        ctx: WorkerPort,
        environment_id: str,
        env: EnvironmentJob,
        names: dict[str, str],
        served: RecordedRelease | None,
        reason: str,
    ) -> None:
        """Serve the recorded release again, purge, record the change reverted."""
        if served is not None:
            await _switch(ctx, names, served.name)
            ctx.log(f"switched back to {served.name}")
        await self._purge(ctx, environment_id, env)
        await self._reverted(ctx, environment_id, f"the release failed: {reason}")

    @staticmethod
    async def _version(ctx: WorkerPort, names: dict[str, str], release: str) -> str:
        """The release's WordPress version ('' when the node cannot say: not a failure)."""
        argv = [SCRIPT, "wp-version", names["env_root"], names["env_user"], release]
        try:
            out = await node_script(ctx, argv, _NODE_FAILED)
            return out.strip()
        except JobFailure as exc:
            ctx.log(f"reading the WordPress version: {exc.message}", "stderr")
            return ""

    @staticmethod
    async def _purge(ctx: WorkerPort, environment_id: str, env: EnvironmentJob) -> None:
        try:
            await purge_environment_cache(ctx, environment_id, env, [])
        except JobFailure as exc:
            ctx.log(f"purging the page cache: {exc.message}", "stderr")

    async def _settle(self, ctx: WorkerPort, environment_id: str, env: EnvironmentJob,
                      names: dict[str, str]) -> None:  # fmt: skip
        """What the old release cached is gone; the new one passes the checks."""
        await self._purge(ctx, environment_id, env)
        node = await job_node_address(ctx)
        await check_environment(ctx, node, env, names["env_user"], names["env_root"])

    @staticmethod
    async def _reverted(ctx: WorkerPort, environment_id: str, reason: str) -> None:
        event = EnvironmentReleaseChangeReverted(
            environment_id=environment_id, job_id=ctx.job_id, reason=reason[:500]
        )
        await ctx.record(f"environment:{environment_id}", [event])


def release_workers(keep: int) -> list[JobWorker[Any]]:
    """`release_activate` (pruning to the newest `keep`)."""
    return [ReleaseActivate(keep)]
