"""The nodes service routes and pages call: the context's read/write boundary.

It owns the machine providers the settings configure (the workers drive them,
the death watcher follows their engine, registration asks whether one is
there) and closes them when the daemon stops.
"""

from __future__ import annotations

from collections.abc import Callable

from pressluft.acting import Context
from pressluft.clock import Clock, format_ts
from pressluft.contexts.nodes.commands import (
    NodeAccepted,
    RegisterNodeRequest,
    RepinRequest,
    check_command,
    decommission_command,
    provision_command,
    register_command,
    repin_command,
    start_command,
    stop_command,
)
from pressluft.contexts.nodes.probes import Providers, node_facts
from pressluft.contexts.nodes.views import NodeFacts, NodePage, NodeQuery, NodeView
from pressluft.contexts.nodes.views import get_node as _get_node
from pressluft.contexts.nodes.views import list_nodes as _list_nodes
from pressluft.db import Database, WriteTx
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer
from pressluft.vault import Vault

__all__ = ["Nodes"]


class Nodes:
    """Register, list, check, re-pin, provision, start/stop and decommission nodes;
    ask a node for its facts."""

    def __init__(
        self,
        db: Database,
        writer: Writer,
        vault: Callable[[], Vault],
        clock: Clock,
        providers: Providers,
    ) -> None:
        self._db = db
        self._writer = writer
        self._vault = vault
        self._clock = clock
        self.providers = providers

    async def list(self, query: NodeQuery) -> NodePage:
        # Kept until the next commit: a page depends only on the database and the query.
        return await self._db.read_cached(
            ("listNodes", query), lambda conn: _list_nodes(conn, query)
        )

    async def get(self, node_id: str) -> NodeView:
        return await self._db.read(lambda conn: _get_node(conn, node_id))

    async def facts(self, node_id: str) -> NodeFacts:
        """What the node is now (a direct SSH query: no job, no lock)."""
        now = format_ts(self._clock.now())
        return await node_facts(self._db, self._vault(), node_id, now)

    async def register(
        self, request: RegisterNodeRequest, ctx: Context, retry: Retry | None
    ) -> Answered[NodeAccepted]:
        command = register_command(request, self._vault(), self.providers, ctx.meta())
        return await self._accepted(command, retry)

    async def check(
        self, node_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[NodeAccepted]:
        return await self._accepted(check_command(node_id, ctx.meta()), retry)

    async def repin(
        self, node_id: str, request: RepinRequest | None, ctx: Context, retry: Retry | None
    ) -> Answered[NodeAccepted]:
        return await self._accepted(repin_command(node_id, request, ctx.meta()), retry)

    async def provision(
        self, node_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[NodeAccepted]:
        return await self._accepted(provision_command(node_id, ctx.meta()), retry)

    async def decommission(
        self, node_id: str, confirm: str | None, ctx: Context, retry: Retry | None
    ) -> Answered[NodeAccepted]:
        return await self._accepted(decommission_command(node_id, confirm, ctx.meta()), retry)

    async def start(
        self, node_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[NodeAccepted]:
        return await self._accepted(start_command(node_id, ctx.meta()), retry)

    async def stop(self, node_id: str, ctx: Context, retry: Retry | None) -> Answered[NodeAccepted]:
        return await self._accepted(stop_command(node_id, ctx.meta()), retry)

    async def _accepted(
        self, command: Callable[[WriteTx], NodeAccepted], retry: Retry | None
    ) -> Answered[NodeAccepted]:
        """A node mutation (it enqueues its job), at most once per Idempotency-Key: 202."""
        return await self._writer.run(command, NodeAccepted, 202, retry)

    def close(self) -> None:
        self.providers.close()
