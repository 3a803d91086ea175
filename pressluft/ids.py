"""Identifiers: canonical UUID text ids for every resource.

`new_id` is random (UUIDv4). `new_ordered_id` (UUIDv7, RFC 9562: 48-bit Unix
milliseconds, then random bits) is for high-volume rows that are written and
read together with their neighbours — jobs: their log lines, attempts, leases
and event streams are keyed by the job id, so time-ordered ids keep a busy
queue's writes on a few b-tree pages instead of scattering them. The embedded
time is the creation time, which the API shows anyway.
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["is_uuid", "new_id", "new_ordered_id"]


def new_id() -> str:
    """A fresh random resource id."""
    return str(uuid.uuid4())


def new_ordered_id() -> str:
    """A fresh UUIDv7: ordered by creation (millisecond), random within it."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b: 62 bits
    return str(uuid.UUID(int=value))


def is_uuid(text: str) -> bool:
    """True when `text` is a canonical lowercase UUID."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
