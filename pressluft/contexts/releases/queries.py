"""Reads of the releases capability: an environment's releases, newest first, with
which one it serves (the sites capability projects the `releases` table)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from pressluft.contexts.sites import get_environment
from pressluft.errors import NotFound

__all__ = ["ReleaseNotFound", "ReleasePage", "ReleaseView", "get_release", "list_releases"]


class ReleaseNotFound(NotFound):
    """No such release of this environment."""


class ReleaseView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    environment_id: str
    #: Where its code came from: `wordpress` (a new site), `clone`, `backup`, `git`, `upload`.
    source_type: str
    source_ref: str
    #: Its directory on the node (`…/releases/<name>`).
    path: str
    health_status: str
    created_at: str
    #: The one the environment serves.
    current: bool
    #: When pruning removed it from the node (None: kept).
    pruned_at: str | None


class ReleasePage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[ReleaseView]
    next_before: str | None
    has_more: bool


_COLUMNS = (
    "r.id, r.environment_id, r.source_type, r.source_ref, r.path, r.health_status,"
    " r.created_at, r.id IS e.current_release_id, r.pruned_at"
)


def _view(row: tuple[Any, ...]) -> ReleaseView:
    rid, env, source_type, ref, path, health, created, current, pruned = row
    return ReleaseView(
        id=rid, environment_id=env, source_type=source_type, source_ref=ref, path=path,
        health_status=health, created_at=created, current=bool(current), pruned_at=pruned,
    )  # fmt: skip


def get_release(conn: sqlite3.Connection, environment_id: str, release_id: str) -> ReleaseView:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM releases r JOIN environments e ON e.id = r.environment_id"
        " WHERE r.id = ? AND r.environment_id = ?",
        (release_id, environment_id),
    ).fetchone()
    if row is None:
        raise ReleaseNotFound(f"no release {release_id} of environment {environment_id}")
    return _view(row)


def list_releases(
    conn: sqlite3.Connection,
    environment_id: str,
    limit: int,
    before: str | None,
    kept_only: bool,
) -> ReleasePage:
    """An environment's releases, newest first (recorded last first at one time);
    `before` is a release id (the cursor);
    `kept_only` leaves out the pruned ones."""
    get_environment(conn, environment_id)  # 404 for an unknown environment
    where = ["r.environment_id = ?"]
    params: list[Any] = [environment_id]
    if before is not None:
        anchor = conn.execute(
            "SELECT created_at, rowid FROM releases WHERE id = ? AND environment_id = ?",
            (before, environment_id),
        ).fetchone()
        if anchor is None:
            raise ReleaseNotFound(f"no release {before} of this environment (the cursor)")
        where.append("(r.created_at, r.rowid) < (?, ?)")
        params += list(anchor)
    if kept_only:
        where.append("r.pruned_at IS NULL")
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM releases r JOIN environments e ON e.id = r.environment_id"
        f" WHERE {' AND '.join(where)} ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    items = [_view(r) for r in rows[:limit]]
    more = len(rows) > limit
    return ReleasePage(items=items, next_before=items[-1].id if more else None, has_more=more)
