"""Sliding-window rate limits kept in memory (one daemon process owns the data dir)."""

from __future__ import annotations

import ipaddress
import math
from collections import deque

from pressluft.clock import Clock

__all__ = ["SlidingWindow", "client_key"]


def client_key(address: str | None) -> str:
    """The key a client address is limited under: IPv6 by /64 (one subscriber), IPv4 as is."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SlidingWindow:
    """At most `limit` hits per key within any `window` seconds.

    Memory is bounded: every `sweep_every` hits all keys are pruned, and beyond
    `max_keys` the least recently hit keys are forgotten.
    """

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Clock,
        *,
        max_keys: int = 100_000,
        sweep_every: int = 1_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self.sweep_every = sweep_every
        self._hits: dict[str, deque[float]] = {}
        self._since_sweep = 0

    def _prune(self, hits: deque[float], now: float) -> None:
        while hits and hits[0] <= now - self.window:
            hits.popleft()

    def retry_after(self, key: str) -> int | None:
        """Seconds until `key` may try again, or None if it may now."""
        hits = self._hits.get(key)
        if not hits:
            return None
        now = self.clock.monotonic()
        self._prune(hits, now)
        if len(hits) < self.limit:
            return None
        return max(1, math.ceil(hits[0] + self.window - now))

    def hit(self, key: str) -> None:
        now = self.clock.monotonic()
        hits = self._hits.pop(key, None) or deque()
        self._prune(hits, now)
        hits.append(now)
        self._hits[key] = hits  # re-inserted: the dict stays ordered by last hit
        self._since_sweep += 1
        if self._since_sweep >= self.sweep_every or len(self._hits) > self.max_keys:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        for key in list(self._hits):
            self._prune(self._hits[key], now)
            if not self._hits[key]:
                del self._hits[key]
        while len(self._hits) > self.max_keys:
            del self._hits[next(iter(self._hits))]

    def __len__(self) -> int:
        return len(self._hits)
