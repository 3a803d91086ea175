"""The base of all events, and the catalog of every event type defined.

An event class joins the catalog by being defined: the catalog is every tagged
`Event` subclass of the modules imported so far. The daemon imports every
capability through `pressluft.features`, so its catalog is complete before the
first event is read; two classes with one tag are refused.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

__all__ = ["Event", "event_classes", "event_type", "schema_version"]


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """A fact that happened. Subclasses set `tag="<aggregate>.<past participle>"`."""

    #: Bumped when the stored shape changes; older shapes are upcast on read.
    SCHEMA_VERSION: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        global _defined
        _defined += 1  # the tag is set after this hook: the catalog reads it lazily


def event_type(cls: type[Event]) -> str:
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} has no string tag")
    return tag


def schema_version(cls: type[Event]) -> int:
    return cls.SCHEMA_VERSION


_defined = 0
_catalog: tuple[int, dict[str, type[Event]]] = (-1, {})


def _walk(cls: type[Event]) -> list[type[Event]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_walk(sub))
    return found


def event_classes() -> dict[str, type[Event]]:
    """Every event type defined so far, by tag (in definition order)."""
    global _catalog
    if _catalog[0] != _defined:
        by_tag: dict[str, type[Event]] = {}
        for cls in _walk(Event):
            tag = cls.__struct_config__.tag
            if not isinstance(tag, str):
                continue  # an untagged base of other events
            other = by_tag.get(tag)
            if other is not None and other is not cls:
                raise TypeError(f"event type {tag} defined twice: {other} and {cls}")
            by_tag[tag] = cls
        _catalog = (_defined, by_tag)
    return _catalog[1]
