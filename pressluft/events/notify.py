"""In-process notification of new events, for live streams (no polling).

The database's commit listener calls `advance(seq)` after every durable commit;
waiters (SSE streams, later the job workers) sleep until the log head passes the
position they have read up to. Readers always re-read from the database, so a
missed wake-up can delay an event but never lose it.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["KeyedNotifier", "LogNotifier"]


class LogNotifier:
    """Tracks the committed log head and wakes whoever waits for it to move."""

    def __init__(self, head: int = 0) -> None:
        self.head = head
        self._changed = asyncio.Event()

    def advance(self, seq: int) -> None:
        if seq > self.head:
            self.head = seq
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_beyond(self, seq: int, within: float) -> bool:
        """Wait up to `within` seconds for the head to pass `seq`; False if it did not."""
        if self.head > seq:
            return True
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self.head <= seq:
                    await changed.wait()
                    changed = self._changed
        return self.head > seq


class KeyedNotifier:
    """Wakes whoever watches one key (a job) when something about it was committed.

    Usage: `changed = notifier.watch(key)`, then read the database, then wait on
    `changed` — a change committed between the read and the wait is not missed.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def watch(self, key: str) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def notify(self, key: str) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()
