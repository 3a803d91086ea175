"""The release jobs: `release_activate` serves a kept release of an environment again,
checks it, switches back when a check fails, and prunes the node's releases to the
newest `releases_keep` (the served one always kept). See specs/releases.md.

The node's half is the root-owned `pressluft-release` script (installed by the job
when missing or changed); nginx resolves `current` per request (`$realpath_root`),
so a switch takes effect for the next request and opcache never mixes releases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pressluft.contexts.nodes import install_node_script, job_node_address, node_script
from pressluft.contexts.releases.commands import ActivateArgs
from pressluft.contexts.releases.failures import (
    RELEASE_GONE,
    RELEASE_INTERRUPTED,
    RELEASE_UNHEALTHY,
)
from pressluft.contexts.releases.loaders import RELEASES, EnvironmentReleases
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
#: A step of the script that fails: tried again (the node, not the release).
_NODE_FAILED = "NODE_UNREACHABLE"


def releases_to_prune(recorded: EnvironmentReleases, keep: int) -> list[str]:
    """The kept releases beyond the newest `keep` (names on the node, oldest last),
    never the served one."""
    kept = [r for r in recorded.releases if not r.pruned]
    return [r.release_id for r in kept[keep:] if r.release_id != recorded.current_release_id]


async def _switch(ctx: WorkerPort, root: str, name: str) -> None:
    await node_script(ctx, [SCRIPT, "activate", root, name], _NODE_FAILED)


async def prune(ctx: WorkerPort, environment_id: str, env: EnvironmentJob, keep: int) -> None:
    """Remove the releases beyond the newest `keep` from the node and record it."""
    recorded = await ctx.load(RELEASES, environment_id)
    gone = releases_to_prune(recorded, keep)
    if not gone:
        return
    names = [r.name for r in recorded.releases if r.release_id in gone]
    root = env_names(environment_id, env.site_id)["env_root"]
    await node_script(ctx, [SCRIPT, "prune", root, *names], _NODE_FAILED)
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
        root = names["env_root"]
        await install_node_script(ctx, SCRIPT, _SCRIPT_SOURCE.read_text())
        recorded = await ctx.load(RELEASES, environment_id)
        served = recorded.get(recorded.current_release_id)
        if ctx.attempt > 1:
            if served is not None:
                await _switch(ctx, root, served.name)
            await self._reverted(ctx, environment_id, "interrupted: the daemon stopped")
            raise JobFailure(RELEASE_INTERRUPTED, "the change was interrupted; the environment"
                             " serves what it served before (activate it again)")  # fmt: skip
        wanted = recorded.get(args.release_id)
        listed = await node_script(ctx, [SCRIPT, "list", root], _NODE_FAILED)
        if wanted is None or wanted.pruned or wanted.name not in listed.split()[1:]:
            await self._reverted(ctx, environment_id, "the release is not on the node")
            raise JobFailure(RELEASE_GONE, f"release {args.release_id} is not on the node")
        await _switch(ctx, root, wanted.name)
        ctx.log(f"switched: serving release {wanted.name}"
                + (f" (was {served.name})" if served else ""))  # fmt: skip
        try:
            await self._settle(ctx, environment_id, env, names)
        except JobFailure as failure:
            ctx.log(f"release: {failure.message}", "stderr")
            if served is not None:
                await _switch(ctx, root, served.name)
                ctx.log(f"switched back to {served.name}")
            await self._purge(ctx, environment_id, env)
            await self._reverted(ctx, environment_id, f"the release failed: {failure.message}")
            raise JobFailure(RELEASE_UNHEALTHY, failure.message) from failure
        version = (await node_script(ctx, [SCRIPT, "wp-version", root, wanted.name],
                                     _NODE_FAILED)).strip()  # fmt: skip
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
