"""Sliding-window rate limits kept in memory (one daemon process owns the data dir)."""

from __future__ import annotations

import math
from collections import deque

from pressluft.clock import Clock

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """At most `limit` hits per key within any `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Clock) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may try again, or None if it may now."""
        now = self.clock.monotonic()
        hits = self._prune(key, now)
        if len(hits) < self.limit:
            return None
        return max(1, math.ceil(hits[0] + self.window - now))

    def hit(self, key: str) -> None:
        now = self.clock.monotonic()
        self._prune(key, now).append(now)
        if len(self._hits) > 10_000:  # bound memory: forget idle keys
            for stale in [k for k, v in self._hits.items() if not v]:
                del self._hits[stale]
