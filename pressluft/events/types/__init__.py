"""Event types: every `<aggregate>.<past participle>` Struct derives from `Event`.

A capability's events live in its context (`contexts/<name>/events.py`); the
catalog is every event class defined (`event_classes()`), and the features
declare which are theirs. An event type, once recorded, is never renamed or
given an incompatible field: new fields need defaults, and anything else is a
new `schema_version` with an upcaster (`events/upcast.py`).
"""

from __future__ import annotations

from pressluft.events.types.base import Event, event_classes, event_type, schema_version

__all__ = [
    "Event",
    "event_classes",
    "event_type",
    "schema_version",
]
