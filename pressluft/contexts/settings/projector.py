"""Projector of `settings.*` events into the one-row `settings` table."""

from __future__ import annotations

import sqlite3
from functools import cache

import msgspec

from pressluft.contexts.settings.events import SettingsChanged
from pressluft.events.projection import Envelope, Projector

__all__ = ["SETTINGS_PROJECTOR"]

_COLUMNS = ("control_plane_domain", "preview_domain", "dns01_provider", "dns01_credentials_ref")


@cache
def _update(columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE settings SET {assignments} WHERE id = 1"


@cache
def _insert(columns: tuple[str, ...]) -> str:
    placeholders = ", ".join("?" * len(columns))
    return f"INSERT INTO settings (id, {', '.join(columns)}) VALUES (1, {placeholders})"


def _changed(conn: sqlite3.Connection, event: SettingsChanged, env: Envelope) -> None:
    # UPDATE the merged row (an upsert checks its CHECK constraints against the
    # partial new row before merging it); INSERT only when there is no row yet.
    columns = ["state_version", "updated_at"]
    values: list[object] = [env.stream_version, env.recorded_at]
    for name in _COLUMNS:
        value = getattr(event, name)
        if value is not msgspec.UNSET:
            columns.append(name)
            values.append(value)
    key = tuple(columns)
    if conn.execute(_update(key), values).rowcount == 0:
        conn.execute(_insert(key), values)


SETTINGS_PROJECTOR = Projector(
    name="settings",
    tables=("settings",),
    handlers={SettingsChanged: _changed},
)
