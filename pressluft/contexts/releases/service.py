"""The releases service routes and pages call: an environment's releases, and
activating a kept one; commands run at most once per `Idempotency-Key` through the
`Writer`."""

from __future__ import annotations

from pressluft.acting import Context
from pressluft.contexts.releases.commands import JobAccepted, activate_command
from pressluft.contexts.releases.queries import ReleasePage, list_releases
from pressluft.contexts.releases.workers import ReleaseActivate
from pressluft.db import Database
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer

__all__ = ["Releases"]


class Releases:
    """Releases of environments: listed, and activated again."""

    def __init__(self, db: Database, writer: Writer) -> None:
        self._db = db
        self._writer = writer

    async def list(
        self, environment_id: str, limit: int, before: str | None, kept_only: bool
    ) -> ReleasePage:
        return await self._db.read(
            lambda conn: list_releases(conn, environment_id, limit, before, kept_only)
        )

    async def activate(
        self, environment_id: str, release_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = activate_command(environment_id, release_id, ctx.meta(), ReleaseActivate)
        return await self._writer.run(command, JobAccepted, 202, retry)
