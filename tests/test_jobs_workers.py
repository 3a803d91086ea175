"""Typed job workers, their port and the rows jobs hold (JOB-46..JOB-50)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pressluft.clock import FrozenClock
from pressluft.config import Config
from pressluft.contexts.nodes.commands import check_command, provision_command
from pressluft.contexts.nodes.events import NodeOrphanDetected, NodeProvisioningStarted
from pressluft.contexts.nodes.workers import NodeCheck, NodeProvision
from pressluft.contexts.operations import housekeeping
from pressluft.contexts.operations.housekeeping import Housekeeping, housekeeping_schedule
from pressluft.contexts.sites import workers as site_jobs
from pressluft.contexts.sites.events import EnvironmentCreated, EnvironmentProvisioned, SiteCreated
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.jobs import builtin
from pressluft.jobs.builtin import SleepPayload
from pressluft.jobs.context import LocalPort
from pressluft.jobs.events import JobEnqueued
from pressluft.jobs.logs import LeaseLost
from pressluft.jobs.queue import (
    JobSpec,
    Outcome,
    RescueScope,
    cancel,
    claim,
    enqueue,
    finish,
    rescue,
    retry,
)
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort, enqueue_job
from pressluft.runtime import Runtime
from tests.support.jobs import until
from tests.support.nodes import recorded_node_events
from tests.support.queue import ACTOR, QueueDb

NODE = "00000000-0000-4000-8000-000000000001"
SITE_A = "00000000-0000-4000-8000-00000000000a"
SITE_B = "00000000-0000-4000-8000-00000000000b"
PROD_A = "00000000-0000-4000-8000-0000000000a0"
PROD_B = "00000000-0000-4000-8000-0000000000b0"
CLONE_A = "00000000-0000-4000-8000-0000000000a1"
CLONE_B = "00000000-0000-4000-8000-0000000000b1"


class Slow(JobWorker[SleepPayload]):
    kind = "slow_test"
    args = SleepPayload
    timeout_seconds = 42
    max_attempts = 5
    node_lock = "shared"


# -- JOB-46: the class is the one source of a job's settings -------------------------


@pytest.fixture
def q(tmp_path: Path) -> Iterator[QueueDb]:
    db = QueueDb(tmp_path / "queue.db")
    try:
        yield db
    finally:
        db.close()


@pytest.mark.spec("JOB-46")
def test_enqueue_takes_timeout_and_attempts_from_the_worker_class(q: QueueDb) -> None:
    args = SleepPayload(seconds=1.5, lines=2)
    job_id = q.run(lambda tx: enqueue_job(tx, Slow, args, ACTOR, node_id=NODE))
    row = q.job(job_id)
    assert (row["job_type"], row["timeout_seconds"], row["max_attempts"]) == ("slow_test", 42, 5)
    assert row["payload_json"] == '{"seconds":1.5,"lines":2,"outcome":"succeed"}'
    assert row["node_id"] == NODE and row["holds_kind"] is None
    with pytest.raises(TypeError):  # another worker's arguments
        q.run(lambda tx: enqueue_job(tx, Slow, NoArgs(), ACTOR))


@pytest.mark.spec("JOB-46")
def test_commands_and_schedules_enqueue_with_their_workers_settings(q: QueueDb) -> None:
    q.run(lambda tx: append(tx, f"node:{NODE}", NO_STREAM, recorded_node_events(NODE), ACTOR))
    accepted = q.run(check_command(NODE, ACTOR))
    row = q.job(accepted.job_id)
    assert (row["timeout_seconds"], row["max_attempts"]) == (
        NodeCheck.timeout_seconds,
        NodeCheck.max_attempts,
    )
    provision = q.job(q.run(provision_command(NODE, ACTOR)).job_id)
    assert provision["timeout_seconds"] == NodeProvision.timeout_seconds == 1800
    schedule = housekeeping_schedule()
    assert (schedule.job_type, schedule.timeout_seconds, schedule.max_attempts) == (
        Housekeeping.kind,
        Housekeeping.timeout_seconds,
        Housekeeping.max_attempts,
    )


@pytest.mark.spec("JOB-46")
async def test_the_pool_runs_a_typed_worker_with_its_decoded_arguments(
    config: Config, clock: FrozenClock
) -> None:
    seen: list[Any] = []

    class Echo(JobWorker[SleepPayload]):
        kind = "echo_test"
        args = SleepPayload

        async def work(self, ctx: WorkerPort, args: SleepPayload) -> None:
            seen.append(args)

    runtime = Runtime(config, clock)
    runtime.jobs.register(Echo())
    with pytest.raises(ValueError, match="registered twice"):
        runtime.jobs.register(Echo())
    await runtime.start()
    try:
        await runtime.db.write(
            lambda tx: enqueue_job(tx, Echo, SleepPayload(lines=7), Meta(actor="test"))
        )
        await until(lambda: _done(bool(seen)))
        assert seen == [SleepPayload(lines=7)]
    finally:
        await runtime.stop()


async def _done(value: bool) -> bool:
    return value


# -- JOB-47: the port fences every write ------------------------------------------------


def _orphan(container: str) -> NodeOrphanDetected:
    """An event no projector reads (any event would do)."""
    return NodeOrphanDetected(
        container_id=container, labelled_node_id=NODE, container_status="exited"
    )


@pytest.mark.spec("JOB-47")
async def test_the_ports_record_refuses_once_the_lease_is_lost(
    config: Config, clock: FrozenClock
) -> None:
    ports: list[LocalPort] = []
    release = asyncio.Event()

    class Holder(JobWorker[NoArgs]):
        kind = "holder_test"
        args = NoArgs
        max_attempts = 1

        async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
            assert isinstance(ctx, LocalPort)
            ports.append(ctx)
            await release.wait()

    runtime = Runtime(config, clock)
    runtime.jobs.register(Holder())
    await runtime.start()
    try:
        meta = Meta(actor="test", correlation_id="corr-47")
        job_id = await runtime.db.write(lambda tx: enqueue_job(tx, Holder, NoArgs(), meta))
        await until(lambda: _done(bool(ports)))
        port = ports[0]
        await port.record("probe:47", [_orphan("a")])
        rows = await runtime.db.read(
            lambda c: c.execute(
                "SELECT actor, json_extract(meta, '$.correlation_id') FROM events"
                " WHERE stream = 'probe:47'"
            ).fetchall()
        )
        assert rows == [(f"system:job:{job_id}", "corr-47")]

        # The rescuer takes the attempt (as if its worker had gone away).
        await runtime.db.write(rescue(RescueScope(all_running=True, reason="lease_expired")))
        with pytest.raises(LeaseLost):
            await port.record("probe:47", [_orphan("b")])

        def sneaky(tx: WriteTx, meta: Meta) -> None:
            append(tx, "probe:47", None, [_orphan("c")], meta)

        with pytest.raises(LeaseLost):
            await port.command(sneaky)
        count = await runtime.db.read(
            lambda c: c.execute("SELECT count(*) FROM events WHERE stream = 'probe:47'").fetchone()
        )
        assert count == (1,)  # nothing after the lease was lost
        assert port.final_attempt
    finally:
        release.set()
        await runtime.stop()


# -- JOB-48: a job that fails or is cancelled fails what it holds ------------------------


def _site(tx: WriteTx, site_id: str, production: str, clone: str) -> None:
    """A site with an active production environment and a clone being built."""
    append(
        tx,
        f"site:{site_id}",
        NO_STREAM,
        [
            SiteCreated(
                site_id=site_id, name="S", slug=f"s{site_id[-1]}", primary_environment_id=production
            )
        ],
        ACTOR,
    )
    for env_id, kind, source in ((production, "production", None), (clone, "clone", production)):
        created = EnvironmentCreated(
            environment_id=env_id,
            site_id=site_id,
            name=kind.title(),
            slug=kind,
            environment_type=kind,
            node_id=NODE,
            preview_url=f"http://{env_id[-8:]}.127-0-0-1.sslip.io",
            db_secret_id="sec_db",
            admin_secret_id="sec_admin",
            source_environment_id=source,
        )
        append(tx, f"environment:{env_id}", NO_STREAM, [created], ACTOR)
        if kind == "production":
            provisioned = EnvironmentProvisioned(
                environment_id=env_id,
                job_id=str(uuid.uuid4()),
                release_id=str(uuid.uuid4()),
                release_path="/var/www/x",
                source_type="wordpress",
                source_ref="latest",
            )
            append(tx, f"environment:{env_id}", None, [provisioned], ACTOR)


@pytest.fixture
def sites(q: QueueDb) -> QueueDb:
    q.run(lambda tx: append(tx, f"node:{NODE}", NO_STREAM, recorded_node_events(NODE), ACTOR))
    q.run(lambda tx: _site(tx, SITE_A, PROD_A, CLONE_A))
    q.run(lambda tx: _site(tx, SITE_B, PROD_B, CLONE_B))
    return q


def _env(q: QueueDb, env_id: str) -> tuple[str, str | None]:
    """The environment's status and, when failed, why: the error code of the job
    that failed it (the newest ended job holding it)."""
    (status,) = q.conn.execute("SELECT status FROM environments WHERE id = ?", (env_id,)).fetchone()
    if status != "failed":
        return str(status), None
    row = q.conn.execute(
        "SELECT CASE status WHEN 'cancelled' THEN 'CANCELLED' ELSE error_code END FROM jobs"
        " WHERE holds_kind = 'environment' AND holds_id = ? AND status IN ('failed', 'cancelled')"
        " ORDER BY enqueued_seq DESC LIMIT 1",
        (env_id,),
    ).fetchone()
    return str(status), None if row is None else row[0]


def _site_status(q: QueueDb, site_id: str) -> str:
    return str(q.conn.execute("SELECT status FROM sites WHERE id = ?", (site_id,)).fetchone()[0])


def _holding(q: QueueDb, env_id: str, status: str, **fields: Any) -> str:
    site_id = q.conn.execute("SELECT site_id FROM environments WHERE id = ?", (env_id,)).fetchone()
    spec = JobSpec(
        job_type="noop",
        site_id=site_id[0],
        environment_id=env_id,
        node_id=NODE,
        holds=("environment", env_id, status),
        **fields,
    )
    return q.run(lambda tx: enqueue(tx, spec, ACTOR))


@pytest.mark.spec("JOB-48")
def test_a_job_holding_an_environment_as_cloning_fails_it_with_its_code(
    sites: QueueDb, tmp_path: Path
) -> None:
    q = sites
    assert _env(q, CLONE_A) == _env(q, CLONE_B) == ("cloning", None)
    job_id = _holding(q, CLONE_A, "cloning")
    assert q.job(job_id)["holds_as"] == "cloning"
    claims, _ = q.run(claim(1, "w1", 30.0))
    q.run(finish(claims[0], Outcome("failed", "ENV_CLONE_FAILED", "copy broke"), "w1"))
    assert q.status(job_id) == "failed"
    assert _env(q, CLONE_A) == ("failed", "ENV_CLONE_FAILED")
    assert _site_status(q, SITE_A) == "active"  # its production still serves
    # Not held: untouched, though in the same status.
    assert _env(q, CLONE_B) == ("cloning", None)
    assert _env(q, PROD_A) == ("active", None)
    q.assert_consistent(tmp_path)


@pytest.mark.spec("JOB-48")
def test_a_held_row_fails_on_cancel_and_on_a_lost_worker_but_not_on_success_or_retry(
    sites: QueueDb, tmp_path: Path
) -> None:
    q = sites
    job_id = _holding(q, CLONE_A, "cloning")
    assert q.run(cancel(job_id, ACTOR)) == "cancelled"
    assert _env(q, CLONE_A) == ("failed", "CANCELLED")

    # A retryable failure with attempts left holds on; the worker lost for good fails it.
    job_b = _holding(q, CLONE_B, "cloning", max_attempts=2)
    claims, _ = q.run(claim(1, "w1", 30.0))
    retryable = Outcome("failed", "ANSIBLE_PLAY_ERROR", "again", retryable=True)
    q.run(finish(claims[0], retryable, "w1"))
    assert q.status(job_b) == "queued" and _env(q, CLONE_B) == ("cloning", None)
    q.advance(3600)
    claims, _ = q.run(claim(1, "w1", 30.0))
    q.advance(60)
    q.run(rescue(RescueScope()))
    assert q.status(job_b) == "failed"
    assert _env(q, CLONE_B) == ("failed", "LEASE_EXPIRED")

    # A job that holds a row in a status the row no longer has changes nothing.
    late = _holding(q, PROD_A, "deploying")
    q.run(cancel(late, ACTOR))
    assert _env(q, PROD_A) == ("active", None)
    q.assert_consistent(tmp_path)


# -- JOB-49: workers touch neither the database nor the vault ---------------------------

_FORBIDDEN_MODULES = {
    "sqlite3",
    "pressluft.vault",
    "pressluft.db.database",
    "pressluft.db.connection",
}
_FORBIDDEN_NAMES = {"Database", "Vault", "sqlite3", "open_sync"}


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.spec("JOB-49")
@pytest.mark.parametrize("module", [builtin, site_jobs, housekeeping], ids=lambda m: m.__name__)
def test_a_worker_module_imports_no_database_or_vault(module: Any) -> None:
    imported = _imports(ast.parse(inspect.getsource(module)))
    assert not {
        name
        for name in imported
        if name in _FORBIDDEN_MODULES
        or name.rsplit(".", 1)[-1] in _FORBIDDEN_NAMES
        or name == "pressluft.db.Database"
    }


@pytest.mark.spec("JOB-49")
def test_no_registered_worker_names_the_database_or_the_vault(config: Config) -> None:
    runtime = Runtime(config)
    workers = [runtime.jobs.get(kind) for kind in runtime.jobs.names()]
    assert {"node_provision", "site_create", "env_delete", "housekeeping", "noop"} <= set(
        runtime.jobs.names()
    )
    for worker in workers:
        assert worker is not None
        for cls in type(worker).__mro__:
            if cls in (JobWorker, object) or not cls.__module__.startswith("pressluft."):
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
            names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
            assert not names & (_FORBIDDEN_NAMES | {"db", "vault", "conn"}), cls
        # Constructed with what they need: never the database or the vault.
        for value in vars(worker).values():
            assert type(value).__name__ not in ("Database", "Vault"), worker


# -- JOB-50: holds of a node, of jobs from before holds, and of retries ------------------


@pytest.mark.spec("JOB-50")
def test_provisioning_holds_its_node_and_no_handler_records_its_failure(
    q: QueueDb, tmp_path: Path
) -> None:
    q.run(lambda tx: append(tx, f"node:{NODE}", NO_STREAM, recorded_node_events(NODE), ACTOR))
    first = q.run(provision_command(NODE, ACTOR)).job_id
    assert q.run(provision_command(NODE, ACTOR)).job_id == first  # unique per node
    # A second job holding the node the same way (as jobs from before unique jobs could).
    holds = ("node", NODE, "provisioning")
    second = q.run(
        lambda tx: enqueue_job(
            tx, NodeProvision, NoArgs(), ACTOR, node_id=NODE, holds=holds, unique=False
        )
    )
    assert (q.job(first)["holds_kind"], q.job(first)["holds_as"]) == ("node", "provisioning")

    def started(job_id: str) -> None:
        event = NodeProvisioningStarted(node_id=NODE, job_id=job_id)
        q.run(lambda tx: append(tx, f"node:{NODE}", None, [event], ACTOR))

    def node_status() -> str:
        return str(q.conn.execute("SELECT status FROM nodes WHERE id = ?", (NODE,)).fetchone()[0])

    # The first begins, fails retryably (it will run again); the second fails for good
    # meanwhile: the node waits for the first.
    claims, _ = q.run(claim(1, "w1", 30.0))
    assert claims[0].job_id == first
    started(first)
    again = Outcome("failed", "ANSIBLE_PLAY_ERROR", "x", retryable=True)
    q.run(finish(claims[0], again, "w1"))
    claims, _ = q.run(claim(1, "w1", 30.0))
    assert claims[0].job_id == second
    started(second)
    q.run(finish(claims[0], Outcome("failed", "ANSIBLE_SYNTAX_ERROR", "y"), "w1"))
    assert node_status() == "provisioning"
    q.advance(3600)
    claims, _ = q.run(claim(1, "w1", 30.0))
    q.run(finish(claims[0], Outcome("failed", "ANSIBLE_SYNTAX_ERROR", "z"), "w1"))
    assert node_status() == "failed"
    types = [
        r[0] for r in q.conn.execute("SELECT type FROM events WHERE stream = ?", (f"node:{NODE}",))
    ]
    assert "node.provision_failed" not in types
    q.assert_consistent(tmp_path)


@pytest.mark.spec("JOB-50")
def test_jobs_from_before_holds_hold_by_type_and_a_retry_holds_what_its_job_held(
    sites: QueueDb, tmp_path: Path
) -> None:
    q = sites
    old = JobEnqueued(  # as recorded before jobs named their holds
        job_id=str(uuid.uuid4()),
        job_type="env_create",
        payload={},
        max_attempts=1,
        timeout_seconds=1800,
        site_id=SITE_A,
        environment_id=CLONE_A,
        node_id=NODE,
    )
    assert old.holds is None
    q.run(lambda tx: append(tx, f"job:{old.job_id}", NO_STREAM, [old], ACTOR))
    row = q.job(old.job_id)
    assert (row["holds_kind"], row["holds_id"], row["holds_as"]) == (
        "environment",
        CLONE_A,
        "cloning",
    )
    q.run(cancel(old.job_id, ACTOR))
    assert _env(q, CLONE_A) == ("failed", "CANCELLED")
    again = q.run(retry(old.job_id, ACTOR))
    assert (q.job(again)["holds_id"], q.job(again)["holds_as"]) == (CLONE_A, "cloning")
    q.assert_consistent(tmp_path)
