"""Projector of `settings.*` events into the one-row `settings` table."""

from __future__ import annotations

import sqlite3
from functools import cache

import msgspec

from pressluft.events.projection import Envelope, Projector
from pressluft.events.types import SettingsChanged

__all__ = ["SETTINGS_PROJECTOR"]

_COLUMNS = ("control_plane_domain", "preview_domain", "dns01_provider", "dns01_credentials_ref")


@cache
def _upsert(columns: tuple[str, ...]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return (
        f"INSERT INTO settings ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


def _changed(conn: sqlite3.Connection, event: SettingsChanged, env: Envelope) -> None:
    columns = ["id", "state_version", "updated_at"]
    values: list[object] = [1, env.stream_version, env.recorded_at]
    for name in _COLUMNS:
        value = getattr(event, name)
        if value is not msgspec.UNSET:
            columns.append(name)
            values.append(value)
    conn.execute(_upsert(tuple(columns)), values)


SETTINGS_PROJECTOR = Projector(
    name="settings",
    tables=("settings",),
    handlers={SettingsChanged: _changed},
)
