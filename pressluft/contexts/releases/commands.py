"""The releases capability's commands: activating a kept release of an environment
(`release_activate`), in one transaction with the event that holds the environment
`deploying`."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from pressluft.contexts.releases.queries import get_release
from pressluft.contexts.sites import (
    EnvironmentNotActive,
    EnvironmentReleaseChangeRequested,
    get_environment,
)
from pressluft.db import WriteTx
from pressluft.errors import Conflict
from pressluft.events import Meta, append
from pressluft.jobs.workers import JobWorker, enqueue_job

__all__ = ["ActivateArgs", "JobAccepted", "ReleaseNotKept", "activate_command"]


class ActivateArgs(msgspec.Struct, frozen=True, kw_only=True):
    release_id: str


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class ReleaseNotKept(Conflict):
    """The release cannot be served: pruned from the node, or served already."""

    code = "release_not_kept"


def activate_command(
    environment_id: str,
    release_id: str,
    meta: Meta,
    worker: type[JobWorker[ActivateArgs]],
) -> Callable[[WriteTx], JobAccepted]:
    """Serve a kept release of the environment again (a rollback, or forward again):
    `environment.release_change_requested` and its `release_activate` job."""

    def command(tx: WriteTx) -> JobAccepted:
        env = get_environment(tx.conn, environment_id)
        release = get_release(tx.conn, environment_id, release_id)
        if release.pruned_at is not None:
            raise ReleaseNotKept(
                f"release {release_id} was pruned from the node at {release.pruned_at}",
                details={"hint": "activate a kept release (GET …/releases?kept=true)"},
            )
        if release.current:
            raise ReleaseNotKept(
                f"release {release_id} is the one served", details={"hint": "nothing to do"}
            )
        if env.status != "active":
            raise EnvironmentNotActive(
                f"the environment is {env.status}, not active",
                details={"status": env.status, "hint": "wait for its job to end, then retry"},
            )
        job_id = enqueue_job(
            tx, worker, ActivateArgs(release_id=release_id), meta,
            site_id=env.site_id, environment_id=environment_id, node_id=env.node_id,
            holds=("environment", environment_id, "deploying"),
        )  # fmt: skip
        event = EnvironmentReleaseChangeRequested(
            environment_id=environment_id, job_id=job_id, change="activate"
        )
        append(tx, f"environment:{environment_id}", None, [event], meta)
        return JobAccepted(job_id=job_id)

    return command
