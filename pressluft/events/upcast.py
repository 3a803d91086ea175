"""Decoding stored events, upgrading older shapes on the way.

An event stored with `schema_version` n < its class's `SCHEMA_VERSION` is run
through the registered upcasters n→n+1→… before it is decoded, so projectors
only ever see the current shape. Upcasters are pure functions on plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import msgspec

from pressluft.events.types.base import Event, event_classes

__all__ = ["UPCASTERS", "UnknownEventType", "decode_event"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

#: (event type, from version) → function producing the next version's data.
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class UnknownEventType(ValueError):
    """The log holds an event type this code does not know."""


_decoders: dict[str, msgspec.json.Decoder[Any]] = {}


def decode_event(type_: str, schema_version: int, data: str | bytes) -> Event:
    """The current-shape event for one stored row."""
    cls = event_classes().get(type_)
    if cls is None:
        raise UnknownEventType(f"unknown event type {type_!r}")
    if schema_version == cls.SCHEMA_VERSION:
        decoder = _decoders.get(type_)
        if decoder is None:
            decoder = _decoders[type_] = msgspec.json.Decoder(cls)
        return cast(Event, decoder.decode(data))
    if schema_version > cls.SCHEMA_VERSION:
        raise UnknownEventType(
            f"{type_} v{schema_version} is newer than this code (v{cls.SCHEMA_VERSION})"
        )
    raw: dict[str, Any] = msgspec.json.decode(data)
    for version in range(schema_version, cls.SCHEMA_VERSION):
        step = UPCASTERS.get((type_, version))
        if step is None:
            raise UnknownEventType(f"no upcaster for {type_} v{version}")
        raw = step(raw)
    return msgspec.convert(raw, cls)
