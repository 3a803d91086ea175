"""Identifiers: UUIDv4 text ids for every resource (never timestamps)."""

from __future__ import annotations

import uuid

__all__ = ["is_uuid", "new_id"]


def new_id() -> str:
    """A fresh random resource id."""
    return str(uuid.uuid4())


def is_uuid(text: str) -> bool:
    """True when `text` is a canonical lowercase UUID."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
