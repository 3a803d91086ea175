"""Time: the one clock every part of Pressluft reads, and the timestamp format.

Services and SQL never read the wall clock themselves; they take a `Clock`
(`SystemClock` in the daemon, `FrozenClock` in tests) and pass `now` into
queries as a parameter. Timestamps are ISO-8601 UTC strings with microseconds
and a `Z` suffix, so they sort lexicographically.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FrozenClock", "SystemClock", "format_ts", "parse_rfc3339", "parse_ts"]

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(moment: datetime) -> str:
    """Render an aware datetime as the canonical `…Z` string."""
    return moment.astimezone(UTC).strftime(_FORMAT)


def parse_ts(text: str) -> datetime:
    """Parse a canonical timestamp (or any ISO-8601 string with an offset)."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return parsed.astimezone(UTC)


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 `date-time` (what the API's `format: date-time` promises).

    Stricter than `datetime.fromisoformat`: a `T`, seconds and an offset are
    required. Raises ValueError otherwise.
    """
    if not _RFC3339.match(text):
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    head, _, fraction = text.partition(".")
    if fraction:  # Python takes at most microseconds
        digits = re.match(r"\d+", fraction)
        assert digits is not None
        text = head + "." + digits[0][:6].ljust(6, "0") + fraction[len(digits[0]) :]
    return parse_ts(text.upper().replace("Z", "+00:00") if text[-1] in "zZ" else text)


class Clock(Protocol):
    """Where time comes from."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic scale, for durations."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FrozenClock:
    """A clock that moves only when told to; safe to read from other threads."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds
