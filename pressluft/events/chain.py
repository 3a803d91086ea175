"""The hash chain over the event log, and its verification.

Each event's `hash` is sha256 over its seq, stream, stream version, type, schema
version, data, meta, time and the previous event's hash. Editing, reordering or
deleting any event breaks the chain at that event; `event_log_head` (written with
every append) catches a removed tail.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

import msgspec

__all__ = ["GENESIS_HASH", "VerifyResult", "event_hash", "verify_chain"]

GENESIS_HASH = "0" * 64

_encode = msgspec.json.Encoder().encode


def event_hash(
    seq: int,
    stream: str,
    stream_version: int,
    type_: str,
    schema_version: int,
    data: str,
    meta: str,
    recorded_at: str,
    prev_hash: str,
) -> str:
    canonical = _encode(
        [seq, stream, stream_version, type_, schema_version, data, meta, recorded_at, prev_hash]
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of walking the chain."""

    checked: int
    head_seq: int
    first_bad_seq: int | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def verify_chain(conn: sqlite3.Connection, batch: int = 10_000) -> VerifyResult:
    """Walk every event in order; stop at the first one that does not hold."""
    prev_seq = 0
    prev_hash = GENESIS_HASH
    checked = 0
    while True:
        rows = conn.execute(
            "SELECT seq, stream, stream_version, type, schema_version, data, meta, recorded_at,"
            " prev_hash, hash FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (prev_seq, batch),
        ).fetchall()
        if not rows:
            break
        for seq, stream, version, type_, sv, data, meta, at, stored_prev, stored_hash in rows:
            if seq != prev_seq + 1:
                return VerifyResult(
                    checked, prev_seq, prev_seq + 1, f"events {prev_seq + 1}..{seq - 1} are missing"
                )
            if stored_prev != prev_hash:
                return VerifyResult(
                    checked, prev_seq, seq, "prev_hash does not match the previous event"
                )
            actual = event_hash(seq, stream, version, type_, sv, data, meta, at, stored_prev)
            if actual != stored_hash:
                return VerifyResult(checked, prev_seq, seq, "content does not match its hash")
            prev_seq, prev_hash = seq, stored_hash
            checked += 1
    head = conn.execute("SELECT seq, hash FROM event_log_head WHERE id = 1").fetchone()
    if head is None:
        return VerifyResult(checked, prev_seq, prev_seq + 1, "the log head record is missing")
    head_seq, head_hash = int(head[0]), str(head[1])
    if head_seq > prev_seq:
        return VerifyResult(
            checked, prev_seq, prev_seq + 1, f"events {prev_seq + 1}..{head_seq} are missing"
        )
    if head_seq != prev_seq or head_hash != prev_hash:
        return VerifyResult(
            checked, prev_seq, head_seq + 1, "the log head does not match the last event"
        )
    return VerifyResult(checked, prev_seq)
