"""The worker pool in a real runtime: real subprocesses, real SQLite, a frozen clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from pressluft.clock import FrozenClock, format_ts
from pressluft.config import Config, resolve
from pressluft.contexts.operations.jobs import JobView
from pressluft.db import open_sync
from pressluft.events import Meta
from pressluft.features import verify_replay
from pressluft.jobs import context as context_module
from pressluft.jobs.context import LocalPort
from pressluft.jobs.process import run_process
from pressluft.jobs.queue import JobSpec, RescueScope, cancel, claim, enqueue, rescue
from pressluft.runtime import Runtime
from tests.support.jobs import (
    TEST_ACTOR,
    any_alive,
    job,
    log_lines,
    recorded_groups,
    submit,
    until,
    until_ended,
)
from tests.support.workers import fn_worker

SITE = "00000000-0000-4000-8000-00000000000a"
NODE = "00000000-0000-4000-8000-000000000001"
ENDS = ("job.succeeded", "job.failed", "job.cancelled", "job.retry_scheduled", "job.lease_expired")


def _max_concurrency(conn: sqlite3.Connection, key: str | None = None) -> int:
    """Most attempts running at once, from the order of the log (the clock is frozen)."""
    scope = {}
    if key is not None:
        scope = dict(conn.execute(f"SELECT id, {key} FROM jobs").fetchall())
    running: Counter[object] = Counter()
    peak = 0
    for type_, stream in conn.execute(
        "SELECT type, stream FROM events WHERE stream LIKE 'job:%' ORDER BY seq"
    ):
        job_id = stream[4:]
        group = scope.get(job_id) if key else "all"
        if group is None:
            continue
        if type_ == "job.claimed":
            running[group] += 1
            peak = max(peak, running[group])
        elif type_ in ENDS:
            running[group] -= 1
    return peak


def _read(runtime: Runtime) -> sqlite3.Connection:
    return open_sync(runtime.config.database_path, "reader")


@pytest.mark.spec("JOB-2", "JOB-29")
async def test_a_sleep_job_runs_a_real_process_and_keeps_every_line(runtime: Runtime) -> None:
    job_id = await submit(runtime, job_type="sleep", seconds=0.3, lines=5)
    view = await until_ended(runtime, job_id)
    assert view.status == "succeeded"
    assert [a.outcome for a in view.attempts] == ["succeeded"]
    lines = await log_lines(runtime, job_id)
    assert [t for _, s, t in lines if s == "stdout"] == [f"line {i}/5" for i in range(1, 6)]
    assert lines[0] == (0, "system", "queued (sleep)")
    assert lines[-1] == (1, "system", "attempt 1 succeeded")
    assert not (runtime.config.data_dir / "jobs" / job_id).exists()  # work dir removed


@pytest.mark.spec("JOB-14")
async def test_cancelling_a_running_job_stops_its_whole_process_group(runtime: Runtime) -> None:
    job_id = await submit(runtime, job_type="sleep", seconds=600, lines=600)
    run_dir = runtime.config.data_dir / "run"

    async def started() -> bool:
        return bool(recorded_groups(run_dir)) and any(
            s == "stdout" for _, s, _ in await log_lines(runtime, job_id)
        )

    await until(started)
    groups = recorded_groups(run_dir)
    assert any_alive(groups)  # the script and its `sleep` child
    assert await runtime.db.write(cancel(job_id, TEST_ACTOR)) == "cancel_requested"
    view = await until_ended(runtime, job_id, within=5.0)
    assert view.status == "cancelled"
    assert view.attempts[-1].outcome == "cancelled"
    assert not any_alive(groups)
    assert recorded_groups(run_dir) == []


@pytest.mark.spec("JOB-12")
async def test_a_timeout_kills_the_process_group_and_fails_the_job(runtime: Runtime) -> None:
    job_id = await submit(runtime, job_type="sleep", seconds=600, lines=600, timeout_seconds=1)
    run_dir = runtime.config.data_dir / "run"
    await until(lambda: _true(bool(recorded_groups(run_dir))))
    groups = recorded_groups(run_dir)
    view = await until_ended(runtime, job_id)
    assert (view.status, view.error_code, view.attempt_count) == ("failed", "JOB_TIMEOUT", 1)
    assert not any_alive(groups)
    assert "timed out after 1 s" in (view.error_message or "")


async def _true(value: bool) -> bool:
    return value


@pytest.mark.spec("JOB-9", "JOB-31")
async def test_a_retryable_exit_is_retried_after_the_backoff(
    runtime: Runtime, clock: FrozenClock
) -> None:
    job_id = await submit(runtime, job_type="sleep", lines=2, outcome="fail_retryable")
    await until(lambda: _status_is(runtime, job_id, "queued", attempts=1))
    view = await job(runtime, job_id)
    assert view.error_code == "DIAGNOSTIC_RETRYABLE"
    assert view.run_after == format_ts(clock.now() + timedelta(seconds=60))
    assert "line 2/2" in (view.error_message or "")
    assert "exiting with 75" in (view.error_message or "")
    clock.advance(60)
    runtime.workers.wake()
    await until(lambda: _status_is(runtime, job_id, "queued", attempts=2))
    clock.advance(300)
    runtime.workers.wake()
    view = await until_ended(runtime, job_id)
    assert (view.status, view.attempt_count) == ("failed", 3)
    assert [a.outcome for a in view.attempts] == ["retry_scheduled", "retry_scheduled", "failed"]


async def _status_is(runtime: Runtime, job_id: str, status: str, attempts: int) -> bool:
    view = await job(runtime, job_id)
    return view.status == status and view.attempt_count == attempts


@pytest.mark.spec("JOB-10")
async def test_a_fatal_exit_fails_at_once(runtime: Runtime) -> None:
    job_id = await submit(runtime, job_type="sleep", outcome="fail_fatal")
    view = await until_ended(runtime, job_id)
    assert (view.status, view.error_code, view.attempt_count) == ("failed", "DIAGNOSTIC_FATAL", 1)


@pytest.mark.spec("JOB-34")
async def test_a_job_type_without_handler_fails_unretried(runtime: Runtime) -> None:
    job_id = await runtime.db.write(lambda tx: enqueue(tx, JobSpec(job_type="mystery"), TEST_ACTOR))
    view = await until_ended(runtime, job_id)
    assert (view.status, view.error_code, view.attempt_count) == ("failed", "JOB_TYPE_UNKNOWN", 1)


@pytest.mark.spec("JOB-7")
async def test_a_worker_whose_lease_was_taken_over_is_refused_and_stopped(
    runtime: Runtime, clock: FrozenClock
) -> None:
    job_id = await submit(runtime, job_type="sleep", seconds=600, lines=6000)
    await until(lambda: _status_is(runtime, job_id, "running", attempts=1))
    await until(lambda: _has_stdout(runtime, job_id))
    # Another rescuer (it does not know this worker lives) takes the attempt away.
    clock.advance(runtime.config.lease_seconds + 1)
    [rescued] = await runtime.db.write(rescue(RescueScope()))
    assert rescued.outcome == "requeued"
    # The old worker's next log flush is refused: it stops its process and
    # records nothing; the pool claims the job again as attempt 2.
    await until(lambda: _status_is(runtime, job_id, "running", attempts=2))
    await until(lambda: _true(runtime.metrics.job_lease_rejections._value.get() >= 1))
    view = await job(runtime, job_id)
    assert [a.outcome for a in view.attempts] == ["lease_expired", None]
    attempt_1_after_rescue = [
        line for line in await log_lines(runtime, job_id) if line[0] == 1 and line[1] != "system"
    ]
    stdout_1 = [t for a, s, t in attempt_1_after_rescue]
    assert stdout_1 == [f"line {i}/6000" for i in range(1, len(stdout_1) + 1)]
    await runtime.db.write(cancel(job_id, TEST_ACTOR))
    assert (await until_ended(runtime, job_id, within=5.0)).status == "cancelled"


async def _has_stdout(runtime: Runtime, job_id: str) -> bool:
    return any(s == "stdout" for _, s, _ in await log_lines(runtime, job_id))


@pytest.mark.spec("JOB-3", "JOB-6")
async def test_site_and_node_locks_and_the_slot_limit_hold_in_the_pool(runtime: Runtime) -> None:
    ids = []
    for _ in range(3):
        ids.append(await submit(runtime, job_type="sleep", seconds=0.2, site_id=SITE))
        ids.append(await submit(runtime, job_type="sleep", seconds=0.2, node_id=NODE))
    ids += [await submit(runtime, job_type="sleep", seconds=0.2) for _ in range(8)]
    for job_id in ids:
        assert (await until_ended(runtime, job_id)).status == "succeeded"
    conn = _read(runtime)
    try:
        assert _max_concurrency(conn, "site_id") == 1
        assert _max_concurrency(conn, "node_id") == 1
        assert _max_concurrency(conn) <= runtime.config.workers
        order = [
            r[0]
            for r in conn.execute(
                "SELECT stream FROM events WHERE type = 'job.claimed' ORDER BY seq"
            )
        ]
        site_jobs = ids[0:6:2]
        assert [s[4:] for s in order if s[4:] in site_jobs] == site_jobs  # oldest first
    finally:
        conn.close()


@pytest.mark.spec("JOB-30")
async def test_an_enqueue_wakes_an_idle_pool_without_polling(runtime: Runtime) -> None:
    await until(lambda: _true(runtime.supervisor.states["workers"].running))
    runtime.workers.poll_seconds = 3600.0  # polling would take an hour
    await asyncio.sleep(0.1)  # let the pool fall asleep on its long poll
    job_id = await submit(runtime, job_type="noop")
    assert (await until_ended(runtime, job_id, within=30)).status == "succeeded"


@pytest.mark.spec("JOB-18")
async def test_shutdown_stops_running_jobs_and_requeues_them(runtime: Runtime) -> None:
    # Its only attempt: a planned stop gives it back rather than failing the job.
    job_id = await submit(runtime, job_type="sleep", seconds=600, lines=600, max_attempts=1)
    run_dir = runtime.config.data_dir / "run"
    await until(lambda: _has_stdout(runtime, job_id))
    groups = recorded_groups(run_dir)
    await runtime.stop()
    assert not any_alive(groups)
    conn = open_sync(runtime.config.database_path, "reader")
    try:
        row = conn.execute(
            "SELECT status, attempt_count, max_attempts, error_code FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        attempt = conn.execute(
            "SELECT outcome, error_code FROM job_attempts WHERE job_id = ?", (job_id,)
        ).fetchall()
        reason = conn.execute(
            "SELECT json_extract(data, '$.reason') FROM events WHERE type = 'job.lease_expired'"
        ).fetchone()
    finally:
        conn.close()
    assert row == ("queued", 1, 2, "DAEMON_STOPPED")
    assert attempt == [("lease_expired", "DAEMON_STOPPED")]
    assert reason == ("daemon_stopped",)


@pytest.mark.spec("JOB-16")
async def test_the_pool_rescues_expired_leases_but_not_its_own(
    config: Config, clock: FrozenClock
) -> None:
    """A running attempt with an expired lease and no live worker: the pool's
    periodic rescue requeues it and runs it again; its own live attempts stay."""
    rt = Runtime(config, clock)
    await rt.start()
    try:
        own = await submit(rt, job_type="sleep", seconds=600)
        await until(lambda: _status_is(rt, own, "running", attempts=1))
        # A job some vanished worker held: claimed by hand, never heartbeated.
        rt.workers.slots = 1  # full: the pool must not claim the next job itself
        orphan = await submit(rt, job_type="noop", site_id=SITE)
        [taken], _ = await rt.db.write(claim(1, "vanished:1", 30))
        assert taken.job_id == orphan
        rt.workers.slots = 4
        clock.advance(rt.config.lease_seconds + 1)
        rt.workers.wake()
        view = await until_ended(rt, orphan)
        assert view.status == "succeeded"
        assert [a.outcome for a in view.attempts] == ["lease_expired", "succeeded"]
        assert (await job(rt, own)).status == "running"
        assert rt.metrics.job_rescues._value.get() >= 1
    finally:
        await rt.stop()


@pytest.mark.spec("JOB-24", "JOB-27", "JOB-28")
async def test_housekeeping_runs_as_a_job_and_prunes_logs_and_expired_keys(
    runtime: Runtime, clock: FrozenClock
) -> None:
    from pressluft.contexts.operations.jobs import JobAccepted, read_log
    from pressluft.http.idempotency import guarded

    old = await submit(runtime, job_type="noop")
    assert (await until_ended(runtime, old)).status == "succeeded"

    def keyed(tx: object) -> JobAccepted:
        return JobAccepted(job_id=old)

    command = guarded(runtime.vault, "test", "k", "f" * 64, 60, keyed, JobAccepted, 202)
    await runtime.db.write(command)  # type: ignore[arg-type]
    clock.advance((runtime.config.job_log_retention_days + 1) * 86400)
    job_id = await runtime.db.write(
        lambda tx: enqueue(tx, JobSpec(job_type="housekeeping"), TEST_ACTOR)
    )
    view = await until_ended(runtime, job_id)
    assert view.status == "succeeded"
    texts = [t for _, s, t in await log_lines(runtime, job_id) if s == "stdout"]
    assert texts == [
        f"deleted 3 log line(s) of jobs that ended over {runtime.config.job_log_retention_days}"
        " day(s) ago",
        "deleted 1 expired idempotency key(s)",
    ]
    assert await log_lines(runtime, old) == []
    assert (await job(runtime, old)).status == "succeeded"  # the job row stays

    # A pruned log says so; an empty page of a kept log (read past its end) does not.
    pruned = await runtime.db.read(lambda c: read_log(c, old, after=0, limit=10, tail=None))
    assert (pruned.lines, pruned.pruned) == ([], True)
    tail = await runtime.db.read(lambda c: read_log(c, old, after=0, limit=10, tail=5))
    assert (tail.lines, tail.pruned) == ([], True)
    kept = await runtime.db.read(lambda c: read_log(c, job_id, after=10**6, limit=10, tail=None))
    assert (kept.lines, kept.pruned) == ([], False)


@pytest.mark.spec("JOB-28")
async def test_housekeeping_first_runs_an_hour_after_install_however_often_it_restarts(
    config: Config, clock: FrozenClock
) -> None:
    """A never-run schedule counts from the database's creation, not from each
    start: a daemon restarted every 50 minutes still gets its housekeeping."""
    from pressluft.contexts.operations.housekeeping import FIRST_AFTER_SECONDS

    async def housekeeping_jobs(advance: float) -> int:
        clock.advance(advance)
        rt = Runtime(config, clock)
        await rt.start()
        try:
            await asyncio.wait_for(rt.scheduler.looked.wait(), 60)  # it looks at start
            count = await rt.db.read(
                lambda c: c.execute(
                    "SELECT count(*) FROM jobs WHERE job_type = 'housekeeping'"
                ).fetchone()[0]
            )
            return int(count)
        finally:
            await rt.stop()

    assert await housekeeping_jobs(0) == 0  # installed now
    assert await housekeeping_jobs(FIRST_AFTER_SECONDS * 5 / 6) == 0  # restarted at 50 min
    assert await housekeeping_jobs(FIRST_AFTER_SECONDS / 6) == 1  # at 60 min: due


# A 200,000-character line, a line after it, then a straggler in a session of its
# own (out of the job's process group) that holds stdout for ten minutes; its pid
# goes to the file named by argv[1].
_NOISY = """
import subprocess, sys
sys.stdout.write("x" * 200_000 + "\\n")
print("after", flush=True)
straggler = subprocess.Popen(["sleep", "600"], start_new_session=True, stdout=sys.stdout)
open(sys.argv[1], "w").write(str(straggler.pid))
"""


@pytest.mark.spec("JOB-37")
async def test_a_long_line_is_kept_and_a_straggler_does_not_hold_the_job(
    runtime: Runtime, tmp_path: Path
) -> None:
    pid_file = tmp_path / "straggler.pid"

    async def noisy(ctx: LocalPort) -> None:
        assert await run_process(ctx, [sys.executable, "-c", _NOISY, str(pid_file)]) == 0

    runtime.jobs.register(fn_worker("noisy", noisy))
    job_id = await runtime.db.write(
        lambda tx: enqueue(tx, JobSpec(job_type="noisy"), Meta(actor="test"))
    )
    try:
        view = await until_ended(runtime, job_id, within=120)  # the straggler lives 600 s
        assert view.status == "succeeded"
        stdout = [t for _, s, t in await log_lines(runtime, job_id) if s == "stdout"]
        assert "".join(stdout[:-1]) == "x" * 200_000  # in pieces, nothing lost
        assert all(len(piece) <= 65536 for piece in stdout[:-1])
        assert stdout[-1] == "after"
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


# A second process on the same database file: holds its write lock until told to let go.
_HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


async def _runtime_with_short_busy_timeout(
    data_dir: Path, clock: FrozenClock, **settings: str
) -> tuple[Runtime, Config]:
    """A started daemon runtime with one worker slot (busy: the claim loop does not
    write meanwhile) whose writes fail fast while another process holds the lock."""
    config, _ = resolve(
        "serve",
        {
            "data_dir": str(data_dir),
            "cpu_affinity": "off",
            "workers": "1",
            "db_busy_timeout_ms": "20",
            **settings,
        },
        environ={},
    )
    runtime = Runtime(config, clock)
    await runtime.start()
    return runtime, config


@contextlib.asynccontextmanager
async def _write_lock_held(database: Path) -> AsyncIterator[None]:
    """Inside the block a second process holds `database`'s write lock."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HOLD_WRITE_LOCK,
        str(database),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert await holder.stdout.readline() == b"locked\n"
        yield
    finally:
        holder.stdin.write(b"\n")
        await holder.stdin.drain()
        assert await holder.wait() == 0


async def _print_while_the_database_refuses(
    data_dir: Path,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
    before: int,
    during: int,
) -> tuple[Runtime, str, JobView]:
    """A job prints `before` lines, then `during` lines while another process holds the
    database's write lock (the daemon's busy timeout is short: its writes fail), then
    the lock is let go. The daemon's Runtime (stopped) and the job's id and end."""
    caplog.set_level(logging.WARNING, logger="pressluft.jobs")
    runtime, config = await _runtime_with_short_busy_timeout(data_dir, clock)
    go = asyncio.Event()

    async def printer(ctx: LocalPort) -> None:
        for i in range(1, before + 1):
            ctx.log(f"line {i}")
        await go.wait()
        for i in range(before + 1, before + during + 1):
            ctx.log(f"line {i}")

    try:
        runtime.jobs.register(fn_worker("printer", printer))
        job_id = await runtime.db.write(
            lambda tx: enqueue(tx, JobSpec(job_type="printer"), Meta(actor="test"))
        )

        async def stored(count: int) -> bool:
            return (
                len([t for _, s, t in await log_lines(runtime, job_id) if s == "stdout"]) >= count
            )

        await until(lambda: stored(before))
        async with _write_lock_held(config.database_path):
            go.set()

            async def refused() -> bool:
                return any(
                    r.getMessage().startswith("could not store job output")
                    and getattr(r, "job_id", None) == job_id
                    for r in caplog.records
                )

            await until(refused)
        view = await until_ended(runtime, job_id)
    finally:
        await runtime.stop()
    return runtime, job_id, view


def _log(runtime: Runtime, job_id: str) -> list[tuple[str, str]]:
    with contextlib.closing(_read(runtime)) as conn:
        return conn.execute(
            "SELECT stream, text FROM job_logs WHERE job_id = ? AND attempt = 1 ORDER BY seq",
            (job_id,),
        ).fetchall()


@pytest.mark.spec("JOB-38")
async def test_output_written_while_the_database_refuses_writes_is_stored_once_it_accepts(
    data_dir: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    runtime, job_id, view = await _print_while_the_database_refuses(
        data_dir, clock, caplog, before=16, during=16
    )
    assert view.status == "succeeded"
    assert view.output_lines_lost == 0
    lines = _log(runtime, job_id)
    assert [t for s, t in lines if s == "stdout"] == [f"line {i}" for i in range(1, 33)]
    assert not any("lost" in t for s, t in lines if s == "system")


@pytest.mark.spec("JOB-38")
async def test_output_beyond_the_buffer_is_dropped_oldest_first_and_the_loss_is_said(
    data_dir: Path,
    clock: FrozenClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context_module, "MAX_PENDING_LINES", 4)  # a small buffer
    runtime, job_id, view = await _print_while_the_database_refuses(
        data_dir, clock, caplog, before=4, during=16
    )
    assert view.status == "succeeded"
    assert view.output_lines_lost == 12
    lines = _log(runtime, job_id)
    stored = [t for s, t in lines if s == "stdout"]
    assert stored == [f"line {i}" for i in (1, 2, 3, 4, 17, 18, 19, 20)]
    # The note stands where the lines are missing.
    note = lines.index(("stdout", "line 17")) - 1
    assert lines[note][0] == "system"
    assert lines[note][1].startswith("12 lines of output lost: the database refused writes")
    assert lines[note - 1] == ("stdout", "line 4")
    with contextlib.closing(_read(runtime)) as conn:
        lost = conn.execute(
            "SELECT json_extract(data, '$.lines') FROM events WHERE type = 'job.output_dropped'"
            " AND stream = ?",
            (f"job:{job_id}",),
        ).fetchall()
        assert lost == [(12,)]
        assert verify_replay(conn, format_ts(clock.now())).ok  # the projector agrees


@pytest.mark.spec("JOB-39")
async def test_an_outcome_is_recorded_after_an_outage_longer_than_the_lease(
    data_dir: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler ends while another process holds the write lock for longer than a
    lease: its outcome is recorded once the lock is gone — the job is not rescued
    and run again (with one attempt it used to fail LEASE_EXPIRED after succeeding)."""
    caplog.set_level(logging.WARNING, logger="pressluft.jobs")
    runtime, config = await _runtime_with_short_busy_timeout(data_dir, clock, lease_seconds="3")
    go = asyncio.Event()
    runs = 0

    async def once(ctx: LocalPort) -> None:
        nonlocal runs
        runs += 1
        await go.wait()

    def retries() -> int:
        return sum(
            r.getMessage().startswith("could not record an outcome yet") for r in caplog.records
        )

    try:
        runtime.jobs.register(fn_worker("once", once))
        job_id = await runtime.db.write(
            lambda tx: enqueue(tx, JobSpec(job_type="once", max_attempts=1), Meta(actor="test"))
        )

        async def started() -> bool:
            return runs == 1

        await until(started)
        async with _write_lock_held(config.database_path):
            go.set()

            async def refused() -> bool:
                return retries() >= 1

            await until(refused)
            clock.advance(3 * config.lease_seconds)  # the stored lease has long expired
            seen = retries()

            async def refused_again() -> bool:
                return retries() > seen

            await until(refused_again)
        view = await until_ended(runtime, job_id)
        assert view.status == "succeeded"
        assert view.attempt_count == 1
        assert runs == 1
    finally:
        await runtime.stop()


@pytest.mark.spec("JOB-38")
async def test_a_stop_while_the_database_refuses_gives_up_unsent_output_and_says_so(
    data_dir: Path, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pressluft.jobs")
    runtime, config = await _runtime_with_short_busy_timeout(data_dir, clock)
    started, go = asyncio.Event(), asyncio.Event()

    async def chatty(ctx: LocalPort) -> None:
        started.set()
        await go.wait()
        ctx.log("a line the disk will not take")
        await asyncio.Event().wait()  # runs until the daemon stops

    runtime.jobs.register(fn_worker("chatty", chatty))
    await runtime.db.write(lambda tx: enqueue(tx, JobSpec(job_type="chatty"), Meta(actor="test")))
    await started.wait()
    async with _write_lock_held(config.database_path):
        go.set()

        async def refused() -> bool:
            return any(
                r.getMessage().startswith("could not store job output") for r in caplog.records
            )

        await until(refused)
        await runtime.stop()  # while its output cannot be stored
    lost = [
        r
        for r in caplog.records
        if r.getMessage() == "job output lost: the daemon stopped while the database refused writes"
    ]
    assert len(lost) == 1 and getattr(lost[0], "lines", None) == 1
