"""The queue under random interleavings: a Hypothesis state machine over the real commands.

Several workers claim site jobs, node checks and node mutations over a few
sites and nodes (lock scopes: the cap, exclusivity, no starvation, unique jobs),
heartbeat, log, succeed, fail and get cancelled; some
crash (stop heartbeating, keep their stale claims and later try to use them);
the daemon stops gracefully or restarts after a crash; ended jobs are retried;
the clock jumps; the rescuer runs. After every step the invariants are checked
against the real SQLite file; at the end, a replay must equal the tables and,
with no new work and enough time, every job must end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from pressluft.clock import format_ts
from pressluft.contexts.operations.jobs import get_job
from pressluft.errors import Conflict, NotFound
from pressluft.jobs.logs import LeaseLost, append_lines
from pressluft.jobs.queue import (
    STOPS_FORGIVEN,
    TERMINAL,
    Claim,
    JobNotCancellable,
    Outcome,
    RescueReason,
    RescueScope,
    active_unique,
    cancel,
    claim,
    finish,
    heartbeat,
    rescue,
    retry,
)
from tests.support.queue import ACTOR, QueueDb

pytestmark = [
    pytest.mark.spec("JOB-35", "JOB-7", "JOB-16", "JOB-18", "JOB-19", "JOB-40", "JOB-41"),
    pytest.mark.spec("JOB-42", "JOB-43"),
]

EXAMPLES = int(os.environ.get("JOBS_EXAMPLES", "500"))
LEASE = 30.0
SITES = [
    None,
    "00000000-0000-4000-8000-00000000000a",
    "00000000-0000-4000-8000-00000000000b",
    "00000000-0000-4000-8000-00000000000c",
]
NODES = [None, "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"]
#: Site jobs running at once on one node (the claim's `node_site_jobs`): three
#: sites can reach it on one node.
CAP = 2
WORKERS = ["w1", "w2", "w3"]


class QueueMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")
    held = Bundle("held")  # claims a live worker holds
    stale = Bundle("stale")  # claims of crashed workers (they may still try to use them)

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="pressluft-machine-"))
        self.q = QueueDb(self.dir / "queue.db")
        self.ended: dict[str, tuple[object, ...]] = {}
        self.live: set[str] = set()  # lease tokens of live claims
        self.expiry: dict[str, str] = {}  # lease token -> when its lease should expire
        self.granted: dict[str, int] = {}  # job id -> max_attempts as enqueued

    def teardown(self) -> None:
        try:
            self._drain()
            self.q.assert_consistent(self.dir)
        finally:
            self.q.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------

    def _row(self, job_id: str) -> tuple[object, ...]:
        row = self.q.conn.execute(
            "SELECT status, finished_at, attempt_count, error_code, error_message, lease_token,"
            " updated_at, state_version FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        assert row is not None
        return tuple(row)

    def _holds(self, c: Claim) -> bool:
        return (
            self.q.conn.execute(
                "SELECT 1 FROM jobs WHERE id = ? AND status = 'running' AND lease_token = ?",
                (c.job_id, c.lease_token),
            ).fetchone()
            is not None
        )

    def _lease_row(self, job_id: str) -> tuple[object, ...] | None:
        row = self.q.conn.execute(
            "SELECT lease_token, expires_at FROM job_leases WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else tuple(row)

    def _rescue(self) -> None:
        """Rescue, and check it took exactly the attempts whose lease (the claim's,
        or the last renewal's) ran out and whose worker is not known to be alive."""
        running = self.q.conn.execute(
            "SELECT id, lease_token FROM jobs WHERE status = 'running'"
        ).fetchall()
        rescued = {r.job_id for r in self.q.run(rescue(RescueScope(live_tokens=set(self.live))))}
        now = format_ts(self.q.now)
        for job_id, token in running:
            due = token not in self.live and self.expiry[token] <= now
            assert (job_id in rescued) == due

    def _drain(self) -> None:
        """No new work, enough time: every job must end."""
        self.live.clear()
        for _ in range(50):
            open_ = self.q.conn.execute(
                "SELECT count(*) FROM jobs WHERE status NOT IN ('succeeded','failed','cancelled')"
            ).fetchone()[0]
            if open_ == 0:
                return
            self.q.advance(1000)
            self.q.run(rescue(RescueScope()))
            for c in self.q.run(claim(10, "drain", LEASE, node_site_jobs=CAP))[0]:
                self.q.run(finish(c, Outcome("succeeded"), "drain"))
        raise AssertionError("jobs still open after draining")

    # -- rules ---------------------------------------------------------------------------

    def _enqueued(self, job_id: str) -> str:
        self.granted[job_id] = int(self.q.job(job_id)["max_attempts"])
        return job_id

    @initialize(target=jobs)
    def first_job(self) -> str:
        return self._enqueued(self.q.enqueue())

    @rule(
        target=jobs,
        site=st.sampled_from(SITES),
        node=st.sampled_from(NODES),
        attempts=st.integers(1, 3),
        delay=st.sampled_from([0, 0, 0, 45]),
    )
    def enqueue(self, site: str | None, node: str | None, attempts: int, delay: int) -> str:
        """A job of any scope, its node lock from its scope (as the diagnostic jobs)."""
        return self._enqueued(
            self.q.enqueue(
                site_id=site, node_id=node, max_attempts=attempts, run_after=self._after(delay)
            )
        )

    def _after(self, delay: int) -> str | None:
        return format_ts(self.q.now + timedelta(seconds=delay)) if delay else None

    @rule(
        target=jobs,
        site=st.sampled_from(SITES[1:]),
        node=st.sampled_from(NODES[1:]),
        attempts=st.integers(1, 3),
    )
    def enqueue_site_job(self, site: str, node: str, attempts: int) -> str:
        """A site's job (create, clone, delete): its site alone, its node shared."""
        return self._enqueued(
            self.q.enqueue(
                "env_create", site_id=site, node_id=node, node_lock="shared", max_attempts=attempts
            )
        )

    @rule(
        target=jobs,
        node=st.sampled_from(NODES[1:]),
        kind=st.sampled_from(["node_check", "node_provision", "node_stop"]),
        delay=st.sampled_from([0, 0, 45]),
    )
    def enqueue_node_job(self, node: str, kind: str, delay: int) -> str:
        """A node's check (shared, unique), provisioning (exclusive, unique) or another
        mutation (exclusive): a unique one already active is the answer, and nothing
        is appended."""
        unique = kind != "node_stop"
        lock = "shared" if kind == "node_check" else "exclusive"
        active = active_unique(self.q.conn, kind, node) if unique else None
        waiting = active is not None and self._waiting(active)
        before = self._event_count()
        job_id = self.q.enqueue(
            kind, node_id=node, node_lock=lock, unique=unique, run_after=self._after(delay)
        )
        if active is not None:
            assert job_id == active
            self._answered_by_active(active, waiting, before)
            return job_id
        return self._enqueued(job_id)

    def _event_count(self) -> int:
        return int(self.q.conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def _waiting(self, job_id: str) -> bool:
        """Queued with a run_after still to come (a retry's backoff, or a delay)."""
        row = self.q.job(job_id)
        return row["status"] == "queued" and (row["run_after"] or "") > self.q.now_ts

    def _answered_by_active(self, job_id: str, waiting: bool, before: int) -> None:
        """A request answered by the active unique job: nothing appended — unless it
        was waiting, then it is due now (job.hastened, and nothing else)."""
        if waiting:
            event("a waiting unique job made due by a new request")
            assert self._event_count() == before + 1
            assert self.q.events(job_id)[-1] == "job.hastened"
            assert self.q.job(job_id)["run_after"] == self.q.now_ts
        else:
            event("a unique job answered by the active one")
            assert self._event_count() == before

    @rule(target=held, worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> object:
        return multiple(*self._claim(worker, limit))

    def _claim(self, worker: str, limit: int) -> list[Claim]:
        # The oldest due exclusive job of each node: no shared job of that node
        # enqueued after it may start (no starvation).
        barring = dict(
            self.q.conn.execute(
                "SELECT node_id, min(enqueued_seq) FROM jobs WHERE status = 'queued'"
                " AND node_lock = 'exclusive' AND node_id IS NOT NULL"
                " AND (run_after IS NULL OR run_after <= ?) GROUP BY node_id",
                (self.q.now_ts,),
            ).fetchall()
        )
        claims, _ = self.q.run(claim(limit, worker, LEASE, node_site_jobs=CAP))
        for c in claims:
            seq, lock = self.q.conn.execute(
                "SELECT enqueued_seq, node_lock FROM jobs WHERE id = ?", (c.job_id,)
            ).fetchone()
            if lock == "shared" and c.node_id in barring:
                assert seq < barring[c.node_id], "a shared job got ahead of a due exclusive one"
        for c in claims:
            assert c.attempt <= c.max_attempts
            self.live.add(c.lease_token)
            self.expiry[c.lease_token] = format_ts(self.q.now + timedelta(seconds=LEASE))
        return claims

    @rule(c=held, after=st.sampled_from([0, 10, 20]))
    def heartbeat(self, c: Claim, after: int) -> None:
        """A renewal, usually some time after the claim (the pool renews every 10 s)."""
        self.q.advance(after)

        def renew() -> None:
            renewed = self.q.run(heartbeat(c.job_id, c.lease_token, c.attempt, LEASE))
            self.expiry[c.lease_token] = renewed

        self._use(c, renew)

    @rule(c=held, text=st.text(max_size=20))
    def log(self, c: Claim, text: str) -> None:
        self._use(c, lambda: append_lines_cmd(self.q, c, text))

    @rule(c=consumes(held), how=st.sampled_from(["succeed", "retryable", "fatal", "cancelled"]))
    def end(self, c: Claim, how: str) -> None:
        self.live.discard(c.lease_token)
        self._use(c, lambda: self.q.run(finish(c, outcome_of(how), "w")))

    @rule(target=stale, c=consumes(held))
    def crash(self, c: Claim) -> Claim:
        """The worker dies: it stops heartbeating (and may come back as a zombie)."""
        self.live.discard(c.lease_token)
        return c

    @rule(c=held)
    def pause(self, c: Claim) -> None:
        """The worker stalls (a long pause) past its lease and the rescuer takes the
        attempt away; the worker resumes later with its now-stale claim."""
        self.live.discard(c.lease_token)
        self.q.advance(LEASE + 1)
        self._rescue()

    @rule(c=consumes(stale), how=st.sampled_from(["succeed", "retryable", "fatal"]))
    def zombie(self, c: Claim, how: str) -> None:
        self._use(c, lambda: self.q.run(finish(c, outcome_of(how), "zombie")))

    def _use(self, c: Claim, action: object) -> None:
        """A worker transition: allowed while the claim holds the lease; otherwise
        refused with nothing changed."""
        assert callable(action)
        if self._holds(c):
            event("transition with the lease")
            action()
            return
        event("transition with a stale lease")
        before = (self._row(c.job_id), self._lease_row(c.job_id))
        with pytest.raises(LeaseLost):
            action()
        assert (self._row(c.job_id), self._lease_row(c.job_id)) == before

    @rule(job_id=jobs)
    def cancel(self, job_id: str) -> None:
        status = self._row(job_id)[0]
        if status in TERMINAL:
            with pytest.raises(JobNotCancellable):
                self.q.run(cancel(job_id, ACTOR))
        else:
            self.q.run(cancel(job_id, ACTOR))

    @rule(seconds=st.sampled_from([1, 5, 10, 20, 31, 61, 301, 901]))
    def advance(self, seconds: int) -> None:
        self.q.advance(seconds)

    @rule()
    def rescue(self) -> None:
        self._rescue()

    @rule(graceful=st.booleans())
    def daemon_stop(self, graceful: bool) -> None:
        """The daemon goes down with its workers, then starts again: a graceful stop
        gives each running attempt back (up to STOPS_FORGIVEN times per job), a crash
        leaves them to the restart's rescue, which counts them. Every claim held until
        now is stale afterwards."""
        running = {
            job_id: (attempts, max_attempts, cancel is not None, self._stops(job_id))
            for job_id, attempts, max_attempts, cancel in self.q.conn.execute(
                "SELECT id, attempt_count, max_attempts, cancel_requested_at FROM jobs"
                " WHERE status = 'running'"
            ).fetchall()
        }
        self.live.clear()
        reason: RescueReason = "daemon_stopped" if graceful else "daemon_restarted"
        rescued = self.q.run(rescue(RescueScope(all_running=True, reason=reason)))
        assert {r.job_id for r in rescued} == set(running)
        for r in rescued:
            attempts, max_attempts, cancelled, stops = running[r.job_id]
            forgiven = graceful and stops < STOPS_FORGIVEN
            row = self.q.job(r.job_id)
            if cancelled:
                assert r.outcome == "cancelled"
            elif forgiven:
                event("a planned stop given back")
                assert r.outcome == "requeued"
                # the attempt is not counted: one more is granted in its place
                assert row["max_attempts"] == max_attempts + 1
                assert self._stops(r.job_id) == stops + 1
            else:
                event("a stop counted" + (" (the cap reached)" if graceful else ""))
                assert r.outcome == ("requeued" if attempts < max_attempts else "failed")
                assert row["max_attempts"] == max_attempts
        self.q.advance(1)

    @rule(worker=st.sampled_from(WORKERS))
    def stop_while_running(self, worker: str) -> None:
        """A worker claims what it can and the daemon stops gracefully at once: the
        stop cap needs one job stopped mid-run four times, which independent claims
        and stops reach only by chance."""
        self._claim(worker, 3)
        self.daemon_stop(graceful=True)

    def _stops(self, job_id: str) -> int:
        return int(
            self.q.conn.execute(
                "SELECT count(*) FROM job_attempts WHERE job_id = ?"
                " AND error_code = 'DAEMON_STOPPED'",
                (job_id,),
            ).fetchone()[0]
        )

    @rule(target=jobs, job_id=jobs)
    def retry(self, job_id: str) -> object:
        """An operator retries a job: once, and only when it failed or was cancelled."""
        status = self._row(job_id)[0]
        retried = self.q.conn.execute(
            "SELECT count(*) FROM jobs WHERE retry_of = ?", (job_id,)
        ).fetchone()[0]
        if status in ("failed", "cancelled") and not retried:
            job_type, node, key = self.q.conn.execute(
                "SELECT job_type, node_id, unique_key FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            active = active_unique(self.q.conn, job_type, node) if key else None
            if active is not None:
                event("a unique job's retry answered by the active one")
                waiting, before = self._waiting(active), self._event_count()
                assert self.q.run(retry(job_id, ACTOR)) == active
                self._answered_by_active(active, waiting, before)
                return multiple()
            event("retried" + (" after forgiven stops" if self._stops(job_id) else ""))
            new = self.q.run(retry(job_id, ACTOR))
            row = self.q.job(new)
            # a fresh attempt series, as many as the old job was enqueued with
            assert (row["retry_of"], row["max_attempts"]) == (job_id, self.granted[job_id])
            self.granted[new] = self.granted[job_id]
            return new
        before = self.q.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        with pytest.raises(Conflict):
            self.q.run(retry(job_id, ACTOR))
        assert self.q.conn.execute("SELECT count(*) FROM events").fetchone()[0] == before
        return multiple()

    @rule()
    def unknown_job(self) -> None:
        with pytest.raises(NotFound):
            self.q.run(cancel("00000000-0000-4000-8000-000000000999", ACTOR))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def locks_hold(self) -> None:
        """Never two running jobs holding one site; never an exclusive job beside
        another running job of its node; never more running site jobs on a node than
        the cap; never two queued-or-running jobs with one unique key."""
        conn = self.q.conn
        two_on_a_site = conn.execute(
            "SELECT site_id FROM jobs WHERE status = 'running' AND site_id IS NOT NULL"
            " GROUP BY site_id HAVING count(*) > 1"
        ).fetchall()
        assert two_on_a_site == []
        beside_exclusive = conn.execute(
            "SELECT node_id FROM jobs WHERE status = 'running' AND node_id IS NOT NULL"
            " GROUP BY node_id HAVING count(*) > 1 AND sum(node_lock = 'exclusive') > 0"
        ).fetchall()
        assert beside_exclusive == []
        over_cap = conn.execute(
            "SELECT node_id FROM jobs WHERE status = 'running' AND node_id IS NOT NULL"
            " AND site_id IS NOT NULL GROUP BY node_id HAVING count(*) > ?",
            (CAP,),
        ).fetchall()
        assert over_cap == []
        twice_active = conn.execute(
            "SELECT unique_key FROM jobs WHERE status IN ('queued', 'running')"
            " AND unique_key IS NOT NULL GROUP BY unique_key HAVING count(*) > 1"
        ).fetchall()
        assert twice_active == []
        running = conn.execute(
            "SELECT sum(node_lock = 'shared' AND site_id IS NOT NULL),"
            " sum(node_lock = 'shared' AND site_id IS NULL), sum(node_lock = 'exclusive')"
            " FROM jobs WHERE status = 'running' AND node_id IS NOT NULL GROUP BY node_id"
        ).fetchall()
        for site_jobs, checks, exclusive in running:
            if site_jobs == CAP:
                event("a node at its cap of site jobs")
            if site_jobs and checks:
                event("a check beside site jobs")
            if exclusive:
                event("an exclusive job on its node")

    @invariant()
    def attempts_bounded_and_leases_present(self) -> None:
        assert (
            self.q.conn.execute(
                "SELECT count(*) FROM jobs WHERE attempt_count > max_attempts"
            ).fetchone()[0]
            == 0
        )
        # A running attempt's lease is the claim's expiry in its row until its first
        # renewal writes a `job_leases` row: readers see the latest of the two, and
        # a lease row never outlives its attempt.
        for job_id, token in self.q.conn.execute(
            "SELECT id, lease_token FROM jobs WHERE status = 'running'"
        ).fetchall():
            lease = get_job(self.q.conn, job_id).lease
            assert lease is not None
            assert lease.expires_at == self.expiry[token]
        stale = self.q.conn.execute(
            "SELECT count(*) FROM job_leases l LEFT JOIN jobs j ON j.id = l.job_id"
            " WHERE j.status IS NOT 'running' OR j.lease_token IS NOT l.lease_token"
        ).fetchone()[0]
        assert stale == 0

    @invariant()
    def stops_forgiven_bounded_and_retried_once(self) -> None:
        for job_id, max_attempts in self.q.conn.execute(
            "SELECT id, max_attempts FROM jobs"
        ).fetchall():
            # one attempt granted back for each forgiven stop, and no more than the cap
            forgiven = self._stops(job_id)
            assert max_attempts - self.granted[job_id] == forgiven <= STOPS_FORGIVEN
        twice = self.q.conn.execute(
            "SELECT retry_of FROM jobs WHERE retry_of IS NOT NULL"
            " GROUP BY retry_of HAVING count(*) > 1"
        ).fetchall()
        assert twice == []

    @invariant()
    def terminal_states_never_change(self) -> None:
        for job_id, row in self.ended.items():
            assert self._row(job_id) == row
        for (job_id,) in self.q.conn.execute(
            "SELECT id FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled')"
        ).fetchall():
            self.ended.setdefault(job_id, self._row(job_id))


def outcome_of(how: str) -> Outcome:
    if how == "succeed":
        return Outcome("succeeded")
    if how == "cancelled":
        return Outcome("cancelled")
    code = "DIAGNOSTIC_RETRYABLE" if how == "retryable" else "DIAGNOSTIC_FATAL"
    return Outcome("failed", code, "boom", retryable=how == "retryable", backoff_seconds=60)


def append_lines_cmd(q: QueueDb, c: Claim, text: str) -> None:
    q.run(lambda tx: append_lines(tx, c.job_id, c.lease_token, c.attempt, [("stdout", text)]))


QueueMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestQueueMachine = QueueMachine.TestCase
