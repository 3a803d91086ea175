"""The queue's commands on a real SQLite file with a frozen clock (no workers, no loop)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from pressluft.clock import format_ts
from pressluft.contexts.operations.jobs import get_job
from pressluft.contexts.settings.events import SettingsChanged
from pressluft.db import WriteTx, open_sync
from pressluft.db.migrate import migrate
from pressluft.errors import Conflict, NotFound
from pressluft.events import append
from pressluft.events.log import NO_STREAM
from pressluft.ids import new_ordered_id
from pressluft.jobs.events import JobEnqueued
from pressluft.jobs.logs import ERROR_TAIL_BYTES, LeaseLost, append_lines, prune_before
from pressluft.jobs.queue import (
    Claim,
    JobNotCancellable,
    JobSpec,
    JobWake,
    Outcome,
    RescueScope,
    active_unique,
    cancel,
    claim,
    enqueue,
    finish,
    heartbeat,
    renew,
    rescue,
    retry,
)
from pressluft.jobs.scheduler import Schedule, enqueue_due, next_due
from pressluft.vault import Vault
from tests.support.queue import ACTOR, QueueDb

SITE_A = "00000000-0000-4000-8000-00000000000a"
SITE_B = "00000000-0000-4000-8000-00000000000b"
SITE_C = "00000000-0000-4000-8000-00000000000c"
NODE_1 = "00000000-0000-4000-8000-000000000001"
LEASE = 30.0


@pytest.fixture
def q(tmp_path: Path) -> Iterator[QueueDb]:
    db = QueueDb(tmp_path / "queue.db")
    try:
        yield db
    finally:
        db.close()


def take(q: QueueDb, limit: int = 1, worker: str = "w1") -> list[Claim]:
    claims, _ = q.run(claim(limit, worker, LEASE))
    return claims


def fail(retryable: bool, code: str = "DIAGNOSTIC_RETRYABLE", backoff: int = 60) -> Outcome:
    return Outcome("failed", code, "boom", retryable=retryable, backoff_seconds=backoff)


@pytest.mark.spec("JOB-1")
def test_a_command_and_its_job_commit_together_or_not_at_all(q: QueueDb) -> None:
    def command(tx: WriteTx, explode: bool) -> str:
        append(tx, "settings", None, [SettingsChanged(control_plane_domain="a.example.com")], ACTOR)
        job_id = enqueue(tx, JobSpec(job_type="noop"), ACTOR)
        if explode:
            raise RuntimeError("the command fails after enqueueing")
        return job_id

    with pytest.raises(RuntimeError):
        q.run(lambda tx: command(tx, True))
    assert q.conn.execute("SELECT count(*) FROM events").fetchone() == (0,)
    assert q.conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert q.conn.execute("SELECT count(*) FROM job_logs").fetchone() == (0,)

    job_id = q.run(lambda tx: command(tx, False))
    types = [r[0] for r in q.conn.execute("SELECT type FROM events ORDER BY seq")]
    assert types == ["settings.changed", "job.enqueued"]
    assert q.status(job_id) == "queued"


@pytest.mark.spec("JOB-2")
def test_enqueue_records_the_event_the_row_and_a_first_log_line(q: QueueDb) -> None:
    job_id = q.enqueue("sleep", payload={"seconds": 1}, site_id=SITE_A)
    row = q.job(job_id)
    assert row["status"] == "queued"
    assert row["attempt_count"] == 0
    assert row["site_id"] == SITE_A
    assert q.events(job_id) == ["job.enqueued"]
    assert q.log(job_id) == [(0, "system", "queued (sleep)")]
    assert JobWake("enqueued") in q.published


@pytest.mark.spec("JOB-3")
def test_one_running_job_per_site_and_a_node_job_alone_on_its_node(q: QueueDb) -> None:
    # Changed with lock scopes: a node no longer runs one job at a time — b1 and c1,
    # two sites' jobs, share NODE_1; a job of the node without a site (n1, exclusive
    # by its scope) waits for both.
    a1 = q.enqueue(site_id=SITE_A)
    a2 = q.enqueue(site_id=SITE_A)
    b1 = q.enqueue(site_id=SITE_B, node_id=NODE_1)
    c1 = q.enqueue(site_id=SITE_C, node_id=NODE_1)
    n1 = q.enqueue(node_id=NODE_1)
    free = q.enqueue()
    claims = take(q, limit=10)
    assert {c.job_id for c in claims} == {a1, b1, c1, free}
    assert q.status(a2) == "queued"
    assert q.status(n1) == "queued"
    # The database itself refuses a second running job of a site, even when asked directly.
    with pytest.raises(sqlite3.IntegrityError):
        q.conn.execute(
            "UPDATE jobs SET status = 'running', lease_token = 'x', lease_expires_at = 'x',"
            " locked_at = 'x', locked_by = 'x', started_at = 'x', attempt_count = 1 WHERE id = ?",
            (a2,),
        )
    q.conn.rollback()
    # When the site's job ends, the next one of that site runs.
    by_id = {c.job_id: c for c in claims}
    q.run(finish(by_id[a1], Outcome("succeeded"), "w1"))
    q.run(finish(by_id[b1], Outcome("succeeded"), "w1"))
    assert {c.job_id for c in take(q, limit=10)} == {a2}  # n1 waits for c1 too
    q.run(finish(by_id[c1], Outcome("succeeded"), "w1"))
    assert {c.job_id for c in take(q, limit=10)} == {n1}


@pytest.mark.spec("JOB-4")
def test_a_future_run_after_is_not_claimed_until_due(q: QueueDb) -> None:
    later = format_ts(q.now + timedelta(seconds=90))
    job_id = q.enqueue(run_after=later)
    assert take(q) == []
    q.advance(89)
    assert take(q) == []
    q.advance(1)
    assert [c.job_id for c in take(q)] == [job_id]


@pytest.mark.spec("JOB-5", "JOB-31")
def test_claim_sets_lock_lease_attempt_and_times_from_the_clock(q: QueueDb) -> None:
    job_id = q.enqueue()
    q.advance(5)
    [c] = take(q, worker="host:123")
    row = q.job(job_id)
    assert row["status"] == "running"
    assert row["locked_by"] == "host:123"
    assert row["locked_at"] == row["started_at"] == q.now_ts
    assert row["attempt_count"] == 1 == c.attempt
    assert row["lease_token"] == c.lease_token and len(c.lease_token) == 32
    assert row["lease_expires_at"] == format_ts(q.now + timedelta(seconds=LEASE))
    assert row["created_at"] == format_ts(q.now - timedelta(seconds=5))
    attempts = q.conn.execute("SELECT attempt, worker, started_at FROM job_attempts").fetchall()
    assert attempts == [(1, "host:123", q.now_ts)]
    assert q.events(job_id) == ["job.enqueued", "job.claimed"]


@pytest.mark.spec("JOB-6")
def test_claims_oldest_first_and_only_as_many_as_asked(q: QueueDb) -> None:
    ids = [q.enqueue() for _ in range(5)]
    first = take(q, limit=2)
    assert [c.job_id for c in first] == ids[:2]
    assert [c.job_id for c in take(q, limit=2)] == ids[2:4]


@pytest.mark.spec("JOB-7")
def test_a_stale_lease_changes_nothing(q: QueueDb, tmp_path: Path) -> None:
    job_id = q.enqueue()
    [old] = take(q, worker="old")
    q.advance(LEASE + 1)
    assert [r.outcome for r in q.run(rescue(RescueScope()))] == ["requeued"]
    [new] = take(q, worker="new")
    assert new.lease_token != old.lease_token
    before = q.job(job_id)
    for outcome in (Outcome("succeeded"), fail(True), fail(False), Outcome("cancelled")):
        with pytest.raises(LeaseLost):
            q.run(finish(old, outcome, "old"))
    with pytest.raises(LeaseLost):
        q.run(lambda tx: append_lines(tx, job_id, old.lease_token, old.attempt, [("stdout", "x")]))
    with pytest.raises(LeaseLost):
        q.run(heartbeat(job_id, old.lease_token, old.attempt, LEASE))
    assert q.job(job_id) == before
    q.run(finish(new, Outcome("succeeded"), "new"))
    assert q.status(job_id) == "succeeded"
    q.assert_consistent(tmp_path)


@pytest.mark.spec("JOB-8")
def test_heartbeats_extend_the_lease_without_events(q: QueueDb) -> None:
    job_id = q.enqueue()
    [c] = take(q)
    events = len(q.events(job_id))
    # Until its first renewal the lease is the claim's, in the job's row only.
    assert _lease_rows(q) == 0
    assert _lease_expiry(q, job_id) == format_ts(q.now + timedelta(seconds=LEASE))
    q.advance(20)
    expires = q.run(heartbeat(job_id, c.lease_token, c.attempt, LEASE))
    assert expires == format_ts(q.now + timedelta(seconds=LEASE))
    assert _lease_expiry(q, job_id) == expires
    assert _lease_rows(q) == 1
    assert len(q.events(job_id)) == events
    q.advance(20)  # past the claim's lease, within the renewed one
    assert q.run(rescue(RescueScope())) == []
    q.advance(11)
    assert len(q.run(rescue(RescueScope()))) == 1
    assert _lease_rows(q) == 0
    with pytest.raises(LeaseLost):
        q.run(heartbeat(job_id, c.lease_token, c.attempt, LEASE))


def _lease_rows(q: QueueDb) -> int:
    return int(q.conn.execute("SELECT count(*) FROM job_leases").fetchone()[0])


def _lease_expiry(q: QueueDb, job_id: str) -> str:
    lease = get_job(q.conn, job_id).lease
    assert lease is not None
    return lease.expires_at


@pytest.mark.spec("JOB-8")
def test_a_pool_renews_all_its_leases_in_one_go_and_learns_which_are_gone(q: QueueDb) -> None:
    ids = [q.enqueue() for _ in range(3)]
    claims = take(q, limit=3)
    q.advance(LEASE + 1)
    [gone] = q.run(rescue(RescueScope(live_tokens={c.lease_token for c in claims[1:]})))
    assert gone.job_id == ids[0]
    leases = [(c.job_id, c.lease_token, c.attempt) for c in claims]
    assert q.run(renew(leases, LEASE)) == {claims[0].lease_token}
    expiries = q.conn.execute("SELECT expires_at FROM job_leases ORDER BY job_id").fetchall()
    assert {e for (e,) in expiries} == {format_ts(q.now + timedelta(seconds=LEASE))}


@pytest.mark.spec("JOB-4")
def test_a_claim_reports_when_the_next_retry_falls_due(q: QueueDb) -> None:
    later = format_ts(q.now + timedelta(seconds=300))
    sooner = format_ts(q.now + timedelta(seconds=60))
    q.enqueue(run_after=later)
    q.enqueue(run_after=sooner)
    assert q.run(claim(4, "w1", LEASE)) == ([], sooner)


@pytest.mark.spec("JOB-9", "JOB-10")
def test_retryable_failures_back_off_then_fail_on_the_last_attempt(q: QueueDb) -> None:
    job_id = q.enqueue(max_attempts=3)
    for attempt, backoff in ((1, 60), (2, 300)):
        [c] = take(q)
        assert c.attempt == attempt
        assert q.run(finish(c, fail(True, backoff=backoff), "w1")) == "queued"
        row = q.job(job_id)
        assert row["run_after"] == format_ts(q.now + timedelta(seconds=backoff))
        assert row["error_code"] == "DIAGNOSTIC_RETRYABLE"
        assert row["locked_at"] is None and row["locked_by"] is None
        assert row["started_at"] is None and row["lease_token"] is None
        assert take(q) == []
        q.advance(backoff)
    [c] = take(q)
    assert q.run(finish(c, fail(True, backoff=900), "w1")) == "failed"
    row = q.job(job_id)
    assert row["status"] == "failed"
    assert row["finished_at"] == q.now_ts
    assert row["attempt_count"] == 3
    outcomes = q.conn.execute("SELECT outcome FROM job_attempts ORDER BY attempt").fetchall()
    assert outcomes == [("retry_scheduled",), ("retry_scheduled",), ("failed",)]


@pytest.mark.spec("JOB-10")
def test_a_fatal_failure_fails_at_once(q: QueueDb) -> None:
    job_id = q.enqueue(max_attempts=3)
    [c] = take(q)
    assert q.run(finish(c, fail(False, "DIAGNOSTIC_FATAL"), "w1")) == "failed"
    row = q.job(job_id)
    assert (row["error_code"], row["attempt_count"]) == ("DIAGNOSTIC_FATAL", 1)


@pytest.mark.spec("JOB-11")
def test_error_message_keeps_the_last_10_kib_and_the_log_keeps_everything(q: QueueDb) -> None:
    job_id = q.enqueue(max_attempts=1)
    [c] = take(q)
    lines = [("stdout", f"{i:05d} " + "x" * 94) for i in range(300)]  # 300 lines of 101 chars
    q.run(lambda tx: append_lines(tx, job_id, c.lease_token, c.attempt, lines))
    q.run(finish(c, fail(False, "DIAGNOSTIC_FATAL"), "w1"))
    message = q.job(job_id)["error_message"]
    assert len(message.encode()) == ERROR_TAIL_BYTES
    assert message.endswith("attempt 1 failed: DIAGNOSTIC_FATAL: boom")
    stored = [text for _, stream, text in q.log(job_id) if stream == "stdout"]
    assert stored == [text for _, text in lines]


@pytest.mark.spec("JOB-11")
@pytest.mark.parametrize("offset", range(4))  # the cut falls on each byte of a 4-byte character
def test_error_message_counts_bytes_and_never_splits_a_character(q: QueueDb, offset: int) -> None:
    """10 KiB of output, not 10 Ki characters: non-ASCII output (German, emoji)
    is cut by its UTF-8 size, at a character boundary."""
    job_id = q.enqueue(max_attempts=1)
    [c] = take(q)
    lines = [("stdout", "ä" * offset + "Grüße 🚀" * 40) for _ in range(100)]
    q.run(lambda tx: append_lines(tx, job_id, c.lease_token, c.attempt, lines))
    q.run(finish(c, fail(False, "DIAGNOSTIC_FATAL"), "w1"))
    message = q.job(job_id)["error_message"]
    assert ERROR_TAIL_BYTES - 3 <= len(message.encode()) <= ERROR_TAIL_BYTES
    assert "\ufffd" not in message
    assert message.endswith("attempt 1 failed: DIAGNOSTIC_FATAL: boom")


@pytest.mark.spec("JOB-13", "JOB-15")
def test_cancel_queued_at_once_running_on_request_ended_refused(q: QueueDb) -> None:
    queued = q.enqueue()
    assert q.run(cancel(queued, ACTOR)) == "cancelled"
    assert q.job(queued)["finished_at"] == q.now_ts
    assert take(q) == []

    running = q.enqueue()
    [c] = take(q)
    assert q.run(cancel(running, ACTOR)) == "cancel_requested"
    assert q.run(cancel(running, ACTOR)) == "cancel_requested"  # asked twice: one event
    assert q.events(running).count("job.cancel_requested") == 1
    assert q.run(finish(c, Outcome("cancelled"), "w1")) == "cancelled"

    for ended in (queued, running):
        before = q.job(ended)
        with pytest.raises(JobNotCancellable) as refused:
            q.run(cancel(ended, ACTOR))
        assert refused.value.status == 409
        assert q.job(ended) == before
    with pytest.raises(NotFound):
        q.run(cancel("00000000-0000-4000-8000-000000000999", ACTOR))


@pytest.mark.spec("JOB-10")
def test_a_failure_after_a_cancel_request_is_not_retried(q: QueueDb) -> None:
    job_id = q.enqueue()
    [c] = take(q)
    q.run(cancel(job_id, ACTOR))
    assert q.run(finish(c, fail(True), "w1")) == "failed"


@pytest.mark.spec("JOB-16")
def test_rescue_requeues_fails_or_cancels_by_what_is_left(q: QueueDb, tmp_path: Path) -> None:
    again = q.enqueue(max_attempts=2)
    last = q.enqueue(max_attempts=1)
    stopping = q.enqueue(max_attempts=3)
    live = q.enqueue()
    claims = {c.job_id: c for c in take(q, limit=4)}
    q.run(cancel(stopping, ACTOR))
    q.advance(LEASE - 1)
    assert q.run(rescue(RescueScope())) == []  # nothing expired yet
    q.advance(2)
    scope = RescueScope(live_tokens={claims[live].lease_token})
    outcomes = {r.job_id: r.outcome for r in q.run(rescue(scope))}
    assert outcomes == {again: "requeued", last: "failed", stopping: "cancelled"}
    assert q.job(again)["error_code"] == "LEASE_EXPIRED"
    assert q.job(again)["attempt_count"] == 1  # the lost attempt is consumed
    assert q.status(live) == "running"
    [c] = take(q)
    assert (c.job_id, c.attempt) == (again, 2)
    q.assert_consistent(tmp_path)


@pytest.mark.spec("JOB-19")
def test_retry_makes_a_new_job_and_leaves_the_old_one_alone(q: QueueDb) -> None:
    job_id = q.enqueue("sleep", payload={"seconds": 1}, site_id=SITE_A, max_attempts=1)
    with pytest.raises(Conflict):
        q.run(retry(job_id, ACTOR))  # queued
    [c] = take(q)
    q.run(finish(c, fail(False, "DIAGNOSTIC_FATAL"), "w1"))
    before = q.job(job_id)
    new_id = q.run(retry(job_id, ACTOR))
    new = q.job(new_id)
    assert new["retry_of"] == job_id
    assert (new["status"], new["attempt_count"], new["job_type"]) == ("queued", 0, "sleep")
    assert (new["site_id"], new["payload_json"]) == (SITE_A, before["payload_json"])
    assert q.job(job_id) == before


@pytest.mark.spec("JOB-24")
def test_retention_deletes_the_lines_of_jobs_that_ended_long_ago(q: QueueDb) -> None:
    ended = q.enqueue()
    [c] = take(q)
    q.run(finish(c, Outcome("succeeded"), "w1"))
    waiting = q.enqueue()
    q.advance(31 * 86400)
    recent = q.enqueue(site_id=SITE_A)
    [running, recent_claim] = take(q, limit=2)  # `waiting` runs: its old lines stay
    assert running.job_id == waiting
    q.run(finish(recent_claim, Outcome("succeeded"), "w1"))  # ended, but just now
    cutoff = format_ts(q.now - timedelta(days=30))
    deleted, cursor = q.run(lambda tx: prune_before(tx, cutoff))
    assert (deleted, cursor) == (3, 0)  # queued, started, succeeded of `ended`
    assert q.log(ended) == []
    assert q.log(waiting) and q.log(recent)
    assert q.status(ended) == "succeeded"
    # In batches of jobs: the cursor walks the queue until it is exhausted.
    more = [q.enqueue() for _ in range(5)]
    for claim_ in take(q, limit=5):
        q.run(finish(claim_, Outcome("succeeded"), "w1"))
    q.advance(31 * 86400)
    cutoff = format_ts(q.now - timedelta(days=30))
    total, cursor, rounds = 0, 0, 0
    while True:
        deleted, cursor = q.run(lambda tx, after=cursor: prune_before(tx, cutoff, after, jobs=2))
        total += deleted
        rounds += 1
        if cursor == 0:
            break
    assert rounds == 5  # 9 jobs, 2 at a time
    assert all(q.log(j) == [] for j in more)
    assert q.log(waiting)  # still running


@pytest.mark.spec("JOB-28")
def test_scheduler_enqueues_when_due_and_never_while_one_is_active(q: QueueDb) -> None:
    every = 6 * 3600
    schedules = [
        Schedule("housekeeping", every),
        Schedule("noop", every, site_id=SITE_A, first_after_seconds=600),
    ]
    started = q.now
    [first] = q.run(enqueue_due(schedules, started))  # never ran: due at once
    assert q.job(first)["job_type"] == "housekeeping"
    q.advance(600)
    [site_job] = q.run(enqueue_due(schedules, started))
    assert q.job(site_job)["site_id"] == SITE_A
    q.advance(every)
    assert q.run(enqueue_due(schedules, started)) == []  # both still queued: de-dup
    [c] = take(q)  # housekeeping runs
    assert q.run(enqueue_due(schedules, started)) == []  # running: de-dup
    q.run(finish(c, Outcome("succeeded"), "w1"))
    second = q.run(enqueue_due(schedules, started))
    assert [q.job(j)["job_type"] for j in second] == ["housekeeping"]
    # A restart (a new `started`) neither repeats nor skips: the database remembers.
    assert q.run(enqueue_due(schedules, q.now)) == []
    actors = q.conn.execute(
        "SELECT DISTINCT json_extract(meta, '$.actor') FROM events WHERE type = 'job.enqueued'"
    ).fetchall()
    assert actors == [("system:scheduler",)]


@pytest.mark.spec("JOB-28")
def test_a_clock_set_back_does_not_hold_the_schedule_back(q: QueueDb) -> None:
    """A job created while the clock ran a day ahead does not hold the schedule
    back for that day once the clock is corrected: it runs at once and measures
    its interval from that run."""
    every = 6 * 3600
    schedules = [Schedule("housekeeping", every)]
    correct = q.now
    q.advance(86400)  # the clock is a day ahead
    q.run(enqueue_due(schedules, correct))
    q.run(finish(take(q)[0], Outcome("succeeded"), "w1"))
    q.now = correct  # NTP sets it back
    assert next_due(schedules, correct, q.now)(q.conn) == q.now
    [again] = q.run(enqueue_due(schedules, correct))
    q.run(finish(take(q)[0], Outcome("succeeded"), "w1"))
    assert q.job(again)["created_at"] == q.now_ts
    q.advance(every - 1)
    assert q.run(enqueue_due(schedules, correct)) == []
    assert next_due(schedules, correct, q.now)(q.conn) == correct + timedelta(seconds=every)
    q.advance(1)
    assert len(q.run(enqueue_due(schedules, correct))) == 1


@pytest.mark.spec("JOB-28")
def test_a_schedule_with_an_active_job_is_not_due(q: QueueDb) -> None:
    """Its job from a clock that ran ahead still waits (queued for a retry): the
    scheduler must not think the schedule due every second meanwhile."""
    every = 6 * 3600
    schedules = [Schedule("housekeeping", every)]
    correct = q.now
    q.advance(86400)
    q.run(enqueue_due(schedules, correct))
    q.now = correct
    assert next_due(schedules, correct, q.now)(q.conn) is None  # nothing due: sleep long
    assert q.run(enqueue_due(schedules, correct)) == []


@pytest.mark.spec("JOB-27")
def test_idempotency_keys_expire_belong_to_one_actor_and_skip_failures(
    q: QueueDb, tmp_path: Path
) -> None:
    from pressluft.contexts.operations.jobs import JobAccepted
    from pressluft.http.idempotency import IdempotencyKeyReused, guarded, prune_expired

    vault = Vault.load_or_create(tmp_path / "secrets")

    def once(actor: str, key: str, fp: str, explode: bool = False) -> tuple[str, bool]:
        def command(tx: WriteTx) -> JobAccepted:
            if explode:
                raise Conflict("refused")
            return JobAccepted(job_id=enqueue(tx, JobSpec(job_type="noop"), ACTOR))

        done = q.run(guarded(vault, actor, key, fp, 3600, command, JobAccepted, 202))
        return done.value.job_id, done.replayed

    fp = "a" * 64
    with pytest.raises(Conflict):
        once("alice", "k1", fp, explode=True)  # failed: not recorded
    first, replayed = once("alice", "k1", fp)
    assert not replayed
    assert once("alice", "k1", fp) == (first, True)
    with pytest.raises(IdempotencyKeyReused):
        once("alice", "k1", "b" * 64)
    other, replayed = once("bob", "k1", fp)  # another actor's key space
    assert other != first and not replayed
    q.advance(3600)
    after, replayed = once("alice", "k1", fp)  # expired: runs as new
    assert after != first and not replayed
    q.advance(3600)
    assert q.run(prune_expired) == 2
    sealed = q.conn.execute(
        "SELECT count(*) FROM secrets WHERE purpose = 'idempotent-response'"
    ).fetchone()
    assert sealed == (0,)
    assert q.conn.execute("SELECT count(*) FROM idempotency_keys").fetchone() == (0,)


@pytest.mark.spec("API-7", "JOB-10")
def test_every_job_error_code_is_registered_with_its_retry_rule(repo_root: Path) -> None:
    import re

    from pressluft.jobs.failures import CODES

    registry = (repo_root / "specs" / "error-codes.md").read_text()
    table = registry.split("## Job error codes", 1)[1]
    rows = dict(re.findall(r"^\| `([A-Z0-9_]+)` \| (yes|no) \|", table, flags=re.MULTILINE))
    assert rows == {code: "yes" if again else "no" for code, again in CODES.items()}


@pytest.mark.spec("JOB-18", "JOB-19")
def test_planned_stops_are_forgiven_three_times_then_count(q: QueueDb) -> None:
    job_id = q.enqueue(max_attempts=1)
    stopped = RescueScope(all_running=True, reason="daemon_stopped")
    for attempt in (1, 2, 3):  # given back: requeued even from the last attempt
        take(q)
        assert [r.outcome for r in q.run(rescue(stopped))] == ["requeued"]
        job = q.job(job_id)
        assert (job["attempt_count"], job["max_attempts"]) == (attempt, attempt + 1)
        assert job["error_code"] == "DAEMON_STOPPED"
    take(q)  # a job that keeps stopping its daemon ends like one that crashes it
    assert [r.outcome for r in q.run(rescue(stopped))] == ["failed"]
    job = q.job(job_id)
    assert (job["status"], job["error_code"], job["max_attempts"]) == ("failed", "LEASE_EXPIRED", 4)
    # Its retry is a fresh series: the attempts given back were the old job's.
    again = q.run(retry(job_id, ACTOR))
    assert q.job(again)["max_attempts"] == 1


# -- lock scopes and unique jobs ------------------------------------------------------------

NODE_2 = "00000000-0000-4000-8000-000000000002"


def site_job(q: QueueDb, site: str, node: str = NODE_1, **fields: object) -> str:
    return q.enqueue("site_create", site_id=site, node_id=node, node_lock="shared", **fields)


def node_check(q: QueueDb, node: str = NODE_1) -> str:
    return q.enqueue("node_check", node_id=node, node_lock="shared", unique=True)


def node_mutation(q: QueueDb, node: str = NODE_1, **fields: object) -> str:
    return q.enqueue("node_provision", node_id=node, node_lock="exclusive", **fields)


def take_ids(q: QueueDb, limit: int = 10, cap: int = 2) -> dict[str, Claim]:
    claims, _ = q.run(claim(limit, "w1", LEASE, node_site_jobs=cap))
    return {c.job_id: c for c in claims}


def end(q: QueueDb, claims: dict[str, Claim], *job_ids: str) -> None:
    for job_id in job_ids:
        q.run(finish(claims.pop(job_id), Outcome("succeeded"), "w1"))


def force_running(q: QueueDb, job_id: str) -> None:
    q.conn.execute(
        "UPDATE jobs SET status = 'running', lease_token = 'x', lease_expires_at = 'x',"
        " locked_at = 'x', locked_by = 'x', started_at = 'x', attempt_count = 1 WHERE id = ?",
        (job_id,),
    )


@pytest.mark.spec("JOB-40")
def test_site_jobs_share_their_node_up_to_the_cap_and_a_check_is_not_counted(
    q: QueueDb,
) -> None:
    a, b, c = site_job(q, SITE_A), site_job(q, SITE_B), site_job(q, SITE_C)
    a2 = site_job(q, SITE_A)  # a's site is busy: never beside a
    check = node_check(q)
    other = site_job(q, SITE_C, node=NODE_2)  # site C on another node, before c runs
    running = take_ids(q)
    # two site jobs (the cap), the check beside them, the other node's job
    assert set(running) == {a, b, check, other}
    assert q.status(c) == q.status(a2) == "queued"
    end(q, running, b)
    # b's slot goes to the oldest waiting site job of the node whose site is free: c
    # is held by `other` (site C runs on node 2), a2 by a — nothing starts.
    assert take_ids(q) == {}
    end(q, running, other)
    started = take_ids(q)
    assert set(started) == {c}
    running.update(started)
    end(q, running, a, check)
    running.update(take_ids(q))
    assert set(running) == {c, a2}


@pytest.mark.spec("JOB-40")
def test_the_cap_is_the_setting(q: QueueDb) -> None:
    jobs = [site_job(q, site) for site in (SITE_A, SITE_B, SITE_C)]
    assert set(take_ids(q, cap=3)) == set(jobs)
    q2 = [
        site_job(q, s, node=NODE_2)
        for s in ("00000000-0000-4000-8000-0000000000d1", "00000000-0000-4000-8000-0000000000d2")
    ]
    assert set(take_ids(q, cap=1)) == {q2[0]}


@pytest.mark.spec("JOB-41", "JOB-3")
def test_a_node_mutation_runs_alone_on_its_node(q: QueueDb) -> None:
    a = site_job(q, SITE_A)
    mutation = node_mutation(q)
    check = node_check(q)
    elsewhere = site_job(q, SITE_B, node=NODE_2)
    running = take_ids(q)
    # the mutation waits for a; the younger check waits for the mutation (JOB-42)
    assert set(running) == {a, elsewhere}
    end(q, running, a)
    running.update(take_ids(q))
    assert set(running) == {mutation, elsewhere}
    b = site_job(q, SITE_C)
    assert take_ids(q) == {}  # nothing of node 1 starts beside the mutation
    assert q.status(check) == q.status(b) == "queued"
    # The database refuses it even when asked directly.
    with pytest.raises(sqlite3.IntegrityError, match="node lock held"):
        force_running(q, check)
    q.conn.rollback()
    end(q, running, mutation)
    assert set(take_ids(q)) == {check, b}
    # ... and an exclusive job beside running shared ones, asked directly
    second = node_mutation(q)
    with pytest.raises(sqlite3.IntegrityError, match="node lock held"):
        force_running(q, second)
    q.conn.rollback()


@pytest.mark.spec("JOB-42")
def test_a_due_node_mutation_bars_younger_shared_jobs_of_its_node(q: QueueDb) -> None:
    a = site_job(q, SITE_A)
    running = take_ids(q, limit=1)
    b = site_job(q, SITE_B)  # enqueued before the mutation: runs as usual
    mutation = node_mutation(q)
    c = site_job(q, SITE_C)  # after it: waits, although the cap would allow it
    check = node_check(q)
    elsewhere = site_job(q, "00000000-0000-4000-8000-0000000000d1", node=NODE_2)
    running.update(take_ids(q))
    assert set(running) == {a, b, elsewhere}  # another node's jobs are not barred
    assert {q.status(j) for j in (mutation, c, check)} == {"queued"}
    end(q, running, a)
    assert take_ids(q) == {}  # a stream of site jobs cannot get ahead of it
    end(q, running, b)
    running.update(take_ids(q))
    assert set(running) == {mutation, elsewhere}
    end(q, running, mutation)
    assert set(take_ids(q)) == {c, check}


@pytest.mark.spec("JOB-42")
def test_a_node_mutation_not_yet_due_bars_nothing(q: QueueDb) -> None:
    later = format_ts(q.now + timedelta(seconds=60))
    a = site_job(q, SITE_A)
    mutation = node_mutation(q, run_after=later)
    b = site_job(q, SITE_B)
    running = take_ids(q)
    assert set(running) == {a, b}
    q.advance(60)
    c = site_job(q, SITE_C)
    assert take_ids(q) == {}  # due now: c (younger) waits, the mutation waits for a and b
    end(q, running, a, b)
    assert set(take_ids(q)) == {mutation}
    assert q.status(c) == "queued"


@pytest.mark.spec("JOB-43")
def test_a_unique_job_is_enqueued_once_while_active(q: QueueDb) -> None:
    first = node_check(q)
    events = q.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert node_check(q) == first
    assert q.conn.execute("SELECT count(*) FROM events").fetchone()[0] == events
    other = node_check(q, NODE_2)
    assert other != first
    assert q.job(first)["unique_key"] == f"node_check:{NODE_1}"
    running = take_ids(q)
    assert node_check(q) == first  # running is active too
    # active_unique tells a command before it appends events of its own
    assert q.run(lambda tx: active_unique(tx.conn, "node_check", NODE_1)) == first
    assert q.run(lambda tx: active_unique(tx.conn, "node_provision", NODE_1)) is None
    # the database refuses two active jobs with one key, even when asked directly
    with pytest.raises(sqlite3.IntegrityError):
        q.conn.execute(
            "UPDATE jobs SET unique_key = ? WHERE id = ?", (f"node_check:{NODE_1}", other)
        )
    q.conn.rollback()
    end(q, running, first)
    again = node_check(q)
    assert again not in (first, other)
    # not unique: every request is a job
    assert q.enqueue("node_check", node_id=NODE_1) != q.enqueue("node_check", node_id=NODE_1)


@pytest.mark.spec("JOB-43")
def test_retrying_a_unique_job_while_one_is_active_answers_that_one(q: QueueDb) -> None:
    failed = node_check(q)
    running = take_ids(q)
    q.run(finish(running.pop(failed), fail(retryable=False, code="DIAGNOSTIC_FATAL"), "w1"))
    active = node_check(q)
    events = q.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert q.run(retry(failed, ACTOR)) == active
    assert q.conn.execute("SELECT count(*) FROM events").fetchone()[0] == events
    assert get_job(q.conn, failed).retried_by is None
    q.run(cancel(active, ACTOR))
    new = q.run(retry(failed, ACTOR))
    row = q.job(new)
    assert (row["retry_of"], row["unique_key"], row["node_lock"]) == (
        failed,
        f"node_check:{NODE_1}",
        "shared",
    )


@pytest.mark.spec("JOB-45")
def test_jobs_from_before_lock_scopes_migrate_and_replay_alike(tmp_path: Path) -> None:
    # Events recorded before lock scopes name no node_lock and no unique key.
    q = QueueDb(tmp_path / "replay.db")
    try:
        scopes = ((None, NODE_1), (SITE_A, NODE_1), (SITE_B, None), (None, None))
        ids = {
            scope: q.run(partial(_old_enqueue, site=scope[0], node=scope[1])) for scope in scopes
        }
        locks = {scope: q.job(job_id)["node_lock"] for scope, job_id in ids.items()}
        assert locks == {
            (None, NODE_1): "exclusive",
            (SITE_A, NODE_1): "shared",
            (SITE_B, None): "shared",
            (None, None): "shared",
        }
        assert {q.job(j)["unique_key"] for j in ids.values()} == {None}
        q.assert_consistent(tmp_path)
    finally:
        q.close()
    # A database at the schema before them gets the same from the migration.
    conn = open_sync(tmp_path / "old.db", "writer")
    try:
        migrate(conn, q.now_ts, target=14)
        for seq, (site, node) in enumerate(locks, start=1):
            conn.execute(
                "INSERT INTO jobs (enqueued_seq, id, job_type, status, site_id, node_id,"
                " payload_json, max_attempts, timeout_seconds, created_at, updated_at,"
                " state_version) VALUES (?, ?, 'noop', 'queued', ?, ?, '{}', 3, 60, 'x', 'x', 1)",
                (seq, f"job-{seq}", site, node),
            )
        conn.commit()
        migrate(conn, q.now_ts)
        migrated = conn.execute(
            "SELECT site_id, node_id, node_lock FROM jobs ORDER BY enqueued_seq"
        ).fetchall()
        assert {(s, n): lock for s, n, lock in migrated} == locks
    finally:
        conn.close()


def _old_enqueue(tx: WriteTx, *, site: str | None, node: str | None) -> str:
    job_id = new_ordered_id()
    event = JobEnqueued(
        job_id=job_id,
        job_type="noop",
        payload={},
        max_attempts=3,
        timeout_seconds=60,
        site_id=site,
        node_id=node,
    )
    append(tx, f"job:{job_id}", NO_STREAM, [event], ACTOR)
    return job_id


@pytest.mark.spec("JOB-43")
def test_asking_again_for_a_unique_job_waiting_out_a_retry_makes_it_due_now(
    q: QueueDb,
) -> None:
    check = node_check(q)
    running = take_ids(q)
    q.run(finish(running.pop(check), fail(retryable=True, backoff=300), "w1"))
    assert q.job(check)["run_after"] > q.now_ts
    assert take_ids(q) == {}
    q.advance(5)
    assert node_check(q) == check
    assert q.events(check)[-1] == "job.hastened"
    assert q.job(check)["run_after"] == q.now_ts
    assert q.log(check)[-1][2].startswith("asked for again: due now")
    assert set(take_ids(q)) == {check}
    # A running one is only answered.
    events = q.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert node_check(q) == check
    assert q.conn.execute("SELECT count(*) FROM events").fetchone()[0] == events
    q.assert_consistent(q.path.parent)
