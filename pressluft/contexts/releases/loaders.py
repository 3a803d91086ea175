"""What the release jobs read through their port: an environment's releases as the
control plane records them (which one is served, which are kept)."""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.jobs.workers import Loader

__all__ = ["RELEASES", "EnvironmentReleases", "RecordedRelease"]


class RecordedRelease(msgspec.Struct, frozen=True, kw_only=True):
    release_id: str
    #: Its directory's name under `releases/`.
    name: str
    created_at: str
    pruned: bool


class EnvironmentReleases(msgspec.Struct, frozen=True, kw_only=True):
    current_release_id: str | None
    #: Newest first.
    releases: list[RecordedRelease]

    def get(self, release_id: str | None) -> RecordedRelease | None:
        return next((r for r in self.releases if r.release_id == release_id), None)


def _releases(conn: sqlite3.Connection, environment_id: str) -> EnvironmentReleases:
    current = conn.execute(
        "SELECT current_release_id FROM environments WHERE id = ?", (environment_id,)
    ).fetchone()
    rows = conn.execute(
        "SELECT id, path, created_at, pruned_at IS NOT NULL FROM releases"
        " WHERE environment_id = ? ORDER BY created_at DESC, rowid DESC",
        (environment_id,),
    ).fetchall()
    return EnvironmentReleases(
        current_release_id=None if current is None else current[0],
        releases=[
            RecordedRelease(
                release_id=r[0],
                name=r[1].rstrip("/").rsplit("/", 1)[-1],
                created_at=r[2],
                pruned=bool(r[3]),
            )
            for r in rows
        ],
    )


RELEASES: Loader[str, EnvironmentReleases] = Loader("environment_releases", _releases)
