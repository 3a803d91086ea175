"""Point-in-time counters for `GET /api/metrics` (the contract's JSON metrics).

Each counter is a query on a projection; a projection that a later capability
adds (jobs, nodes, sites) is counted as soon as its table exists.
"""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.db import Database

__all__ = ["Counters", "read_counters"]


class Counters(msgspec.Struct, frozen=True, kw_only=True):
    jobs_running: int
    jobs_queued: int
    nodes_active: int
    sites_total: int
    events_total: int


_QUERIES = {
    "jobs_running": ("jobs", "SELECT count(*) FROM jobs WHERE status = 'running'"),
    "jobs_queued": ("jobs", "SELECT count(*) FROM jobs WHERE status = 'queued'"),
    "nodes_active": ("nodes", "SELECT count(*) FROM nodes WHERE status = 'active'"),
    "sites_total": ("sites", "SELECT count(*) FROM sites"),
    "events_total": ("events", "SELECT seq FROM event_log_head WHERE id = 1"),
}


def _read(conn: sqlite3.Connection) -> Counters:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    values = {
        name: int(conn.execute(sql).fetchone()[0]) if table in tables else 0
        for name, (table, sql) in _QUERIES.items()
    }
    return Counters(**values)


async def read_counters(db: Database) -> Counters:
    return await db.read(_read)
