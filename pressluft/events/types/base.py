"""The base of all events."""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = ["Event", "event_type", "schema_version"]


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """A fact that happened. Subclasses set `tag="<aggregate>.<past participle>"`."""

    #: Bumped when the stored shape changes; older shapes are upcast on read.
    SCHEMA_VERSION: ClassVar[int] = 1


def event_type(cls: type[Event]) -> str:
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} has no string tag")
    return tag


def schema_version(cls: type[Event]) -> int:
    return cls.SCHEMA_VERSION
