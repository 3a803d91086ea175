"""Job output: every line of every attempt, in order, nothing dropped silently.

A worker appends lines only while it holds the attempt's lease (fenced like
every other worker transition); transitions add `system` lines in their own
transaction. Lines a worker could not store (the database refused writes longer
than its buffer lasted) are said so where they are missing: a `system` line and
`job.output_dropped` (the job's `output_lines_lost`). Lines are read by seq
(`after`/`limit`), from the end (`tail`), or followed live. Retention deletes
the lines of jobs that ended long ago; the job row stays.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.jobs.events import JobOutputDropped

__all__ = [
    "ERROR_TAIL_BYTES",
    "LOG_WRITER_ACTOR",
    "JobLogLine",
    "LeaseLost",
    "LogAppended",
    "append_lines",
    "attempt_output_tail",
    "first_line",
    "has_lines",
    "last_seq",
    "prune_before",
    "read_lines",
    "system_line",
    "tail_lines",
]

#: The reference: a failed job keeps the last 10 KiB of its output in error_message
#: (UTF-8 bytes, not characters: 10 Ki characters of non-ASCII output are up to 40 KiB).
ERROR_TAIL_BYTES = 10 * 1024


class LeaseLost(RuntimeError):
    """The worker no longer holds the attempt's lease: it must stop and change nothing."""


class JobLogLine(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: str
    attempt: int
    stream: str
    text: str


class LogAppended(msgspec.Struct, frozen=True):
    """Published after commit: `job_id` has new lines (wakes its log followers)."""

    job_id: str


def last_seq(conn: sqlite3.Connection, job_id: str) -> int:
    row = conn.execute("SELECT max(seq) FROM job_logs WHERE job_id = ?", (job_id,)).fetchone()
    return int(row[0] or 0)


def has_lines(conn: sqlite3.Connection, job_id: str) -> bool:
    """Whether any line of the job is stored (none once retention deleted them)."""
    row = conn.execute("SELECT 1 FROM job_logs WHERE job_id = ? LIMIT 1", (job_id,)).fetchone()
    return row is not None


def _insert(tx: WriteTx, job_id: str, attempt: int, lines: Sequence[tuple[str, str]]) -> int:
    base = last_seq(tx.conn, job_id)
    tx.conn.executemany(
        "INSERT INTO job_logs (job_id, seq, at, attempt, stream, text) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (job_id, base + i, tx.now_ts, attempt, stream, text)
            for i, (stream, text) in enumerate(lines, start=1)
        ],
    )
    tx.publish(LogAppended(job_id))
    return base + len(lines)


#: Who records output the worker could not store.
LOG_WRITER_ACTOR = "system:job-log"


def append_lines(
    tx: WriteTx,
    job_id: str,
    lease_token: str,
    attempt: int,
    lines: Sequence[tuple[str, str]],
    *,
    lost: int = 0,
    lost_note: str = "",
) -> int:
    """Append a running attempt's output; refused (LeaseLost) without its lease.

    `lost` lines that were printed before `lines` could not be stored: a
    `system` line (`lost_note`) takes their place and `job.output_dropped` counts them."""
    held = tx.conn.execute(
        "SELECT 1 FROM jobs WHERE id = ? AND status = 'running' AND lease_token = ?"
        " AND attempt_count = ?",
        (job_id, lease_token, attempt),
    ).fetchone()
    if held is None:
        raise LeaseLost(f"job {job_id}: attempt {attempt} no longer holds its lease")
    if lost:
        note = lost_note or f"{lost} lines of output lost"
        event = JobOutputDropped(
            job_id=job_id, attempt=attempt, lease_token=lease_token, lines=lost, reason=note
        )
        append(tx, f"job:{job_id}", None, [event], Meta(actor=LOG_WRITER_ACTOR))
        lines = [("system", note), *lines]
    return _insert(tx, job_id, attempt, lines) if lines else last_seq(tx.conn, job_id)


def first_line(tx: WriteTx, job_id: str, text: str) -> None:
    """The first line of a new job's log (written by `enqueue`)."""
    tx.conn.execute(
        "INSERT INTO job_logs (job_id, seq, at, attempt, stream, text)"
        " VALUES (?, 1, ?, 0, 'system', ?)",
        (job_id, tx.now_ts, text),
    )
    tx.publish(LogAppended(job_id))


def system_line(tx: WriteTx, job_id: str, attempt: int, text: str) -> None:
    """A line written by Pressluft itself, in the transaction of a transition."""
    # Two statements, not INSERT … SELECT from job_logs: SQLite runs that through
    # an ephemeral table (it reads the table it writes), which costs more than the lookup.
    tx.conn.execute(
        "INSERT INTO job_logs (job_id, seq, at, attempt, stream, text)"
        " VALUES (?, ?, ?, ?, 'system', ?)",
        (job_id, last_seq(tx.conn, job_id) + 1, tx.now_ts, attempt, text),
    )
    tx.publish(LogAppended(job_id))


def read_lines(conn: sqlite3.Connection, job_id: str, after: int, limit: int) -> list[JobLogLine]:
    rows = conn.execute(
        "SELECT seq, at, attempt, stream, text FROM job_logs WHERE job_id = ? AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (job_id, after, limit),
    ).fetchall()
    return [JobLogLine(seq=r[0], at=r[1], attempt=r[2], stream=r[3], text=r[4]) for r in rows]


def tail_lines(conn: sqlite3.Connection, job_id: str, count: int) -> list[JobLogLine]:
    rows = conn.execute(
        "SELECT seq, at, attempt, stream, text FROM job_logs WHERE job_id = ?"
        " ORDER BY seq DESC LIMIT ?",
        (job_id, count),
    ).fetchall()
    return [
        JobLogLine(seq=r[0], at=r[1], attempt=r[2], stream=r[3], text=r[4]) for r in reversed(rows)
    ]


def attempt_output_tail(
    conn: sqlite3.Connection, job_id: str, attempt: int, limit: int = ERROR_TAIL_BYTES
) -> str:
    """The last `limit` bytes (UTF-8) of one attempt's output, lines joined by newlines
    and cut at a character boundary (for error_message)."""
    collected: list[bytes] = []
    size = 0
    for (text,) in conn.execute(
        "SELECT text FROM job_logs WHERE job_id = ? AND attempt = ? ORDER BY seq DESC",
        (job_id, attempt),
    ):
        line = text.encode()
        collected.append(line)
        size += len(line) + 1
        if size >= limit:
            break
    output = b"\n".join(reversed(collected))[-limit:]
    # The cut may split a character: drop its continuation bytes (10xxxxxx).
    start = 0
    while start < len(output) and start < 3 and output[start] & 0xC0 == 0x80:
        start += 1
    return output[start:].decode()


def prune_before(tx: WriteTx, cutoff: str, after_seq: int = 0, jobs: int = 200) -> tuple[int, int]:
    """Delete the lines of jobs that ended before `cutoff`, looking at up to `jobs`
    jobs after `after_seq` (in queue order). Returns (lines deleted, the last job's
    seq looked at, or 0 when there are no more jobs)."""
    rows = tx.conn.execute(
        "SELECT enqueued_seq, id, finished_at FROM jobs WHERE enqueued_seq > ?"
        " ORDER BY enqueued_seq LIMIT ?",
        (after_seq, jobs),
    ).fetchall()
    deleted = 0
    for _, job_id, finished_at in rows:
        if finished_at is not None and finished_at < cutoff:
            deleted += tx.conn.execute("DELETE FROM job_logs WHERE job_id = ?", (job_id,)).rowcount
    return deleted, rows[-1][0] if len(rows) == jobs else 0
