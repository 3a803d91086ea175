"""The Ansible runner through real jobs against a real sshd test node: output in the
job log, the exit classification (syntax error, unreachable, timeout), cancellation,
and nothing left behind (processes, key files, the key in `ps`)."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pressluft.clock import FrozenClock, parse_ts
from pressluft.contexts.nodes import run_node_playbook
from pressluft.contexts.operations.jobs import JobView
from pressluft.jobs.context import LocalPort
from pressluft.jobs.failures import retryable
from pressluft.runners.ansible import ANSIBLE_DIR, PlaybookSummary, classify, profile_revision
from pressluft.runtime import Runtime
from tests.support.jobs import job, log_lines, until, until_ended
from tests.support.sshd import SSHNode
from tests.support.workers import fn_worker

FIXTURES = Path(__file__).parent / "fixtures" / "ansible"
ALLOWED = frozenset(
    {"hello.yml", "broken.yml", "slow.yml", "unhealthy.yml", "vars.yml", "inventory.yml"}
)


@pytest.fixture
def ansible_dir(tmp_path: Path) -> Path:
    """The test playbooks with Pressluft's real ansible.cfg."""
    root = tmp_path / "ansible"
    shutil.copytree(FIXTURES, root)
    shutil.copy(ANSIBLE_DIR / "ansible.cfg", root / "ansible.cfg")
    return root


@pytest.fixture
def ssh_node(tmp_path: Path) -> Iterator[SSHNode]:
    node = SSHNode(tmp_path / "sshd").start()
    try:
        yield node
    finally:
        node.stop()


def _register_playbook_job(runtime: Runtime, ansible_dir: Path) -> None:
    async def handler(ctx: LocalPort) -> None:
        playbook = str(ctx.claim.payload["playbook"])
        extra = {"greeting": "hi", "marker": str(ansible_dir.parent / "marker"), "nap": "0"}
        extra.update(ctx.claim.payload.get("vars", {}))
        summary, revision = await run_node_playbook(
            ctx,
            playbook,
            extra_vars=extra,
            allowlist=ALLOWED,
            ansible_dir=ansible_dir,
            task_codes=lambda task: "SITE_HEALTH_FAILED" if task.startswith("Health") else None,
        )
        ctx.log(f"applied {revision}, changed {summary.changed}", "system")

    runtime.jobs.register(
        fn_worker("test_playbook", handler, timeout_seconds=600, timeout_code="ANSIBLE_TIMEOUT")
    )


async def _ready_node(client: httpx.AsyncClient, runtime: Runtime, sshd: SSHNode) -> str:
    reply = await client.post(
        "/api/nodes",
        json={
            "provider": "ssh",
            "name": "web-1",
            "host": "127.0.0.1",
            "ssh_port": sshd.port,
            "ssh_user": sshd.user,
        },
    )
    node_id = str(reply.json()["node_id"])
    node = (await client.get(f"/api/nodes/{node_id}")).json()
    sshd.authorize(node["public_key"])
    checked = (await client.post(f"/api/nodes/{node_id}/check")).json()
    assert (await until_ended(runtime, checked["job_id"])).status == "succeeded"
    return node_id


async def _enqueue(
    runtime: Runtime,
    node_id: str,
    playbook: str,
    seconds: int = 600,
    nap: str = "0",
    extra: dict[str, Any] | None = None,
) -> str:
    from pressluft.events import Meta
    from pressluft.jobs.queue import JobSpec, enqueue

    spec = JobSpec(
        job_type="test_playbook",
        node_id=node_id,
        payload={"playbook": playbook, "vars": {"nap": nap, **(extra or {})}},
        timeout_seconds=seconds,
    )
    return await runtime.db.write(lambda tx: enqueue(tx, spec, Meta(actor="test:ansible")))


async def _log_text(runtime: Runtime, job_id: str) -> str:
    return "\n".join(t for _, _, t in await log_lines(runtime, job_id))


async def _run(
    runtime: Runtime, node_id: str, playbook: str, **options: Any
) -> tuple[JobView, str]:
    """Enqueue `playbook`, wait for the job to end; its view and whole log."""
    job_id = await _enqueue(runtime, node_id, playbook, **options)
    view = await until_ended(runtime, job_id, within=120)
    return view, await _log_text(runtime, job_id)


def _processes_with(text: str) -> list[str]:
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True
    )
    return [line for line in out.stdout.splitlines() if text in line and "ps -ww" not in line]


def _key_body(runtime_key: bytes) -> list[str]:
    lines = [line for line in runtime_key.decode().splitlines() if "-----" not in line]
    return [line for line in lines if len(line) >= 20]


@pytest.mark.spec("NOD-10", "DMN-17")
async def test_a_playbook_runs_as_a_job_and_leaves_nothing_behind(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    view, text = await _run(runtime, node_id, "hello.yml")
    job_id = view.id
    assert view.status == "succeeded", text
    assert "syntax check: hello.yml" in text
    assert "TASK [Say hello]" in text and "ok: [node]" in text, text  # the runner's events
    assert "recap: rc=0 status=successful changed=1" in text
    assert "applied sha256:" in text
    assert "Warning" not in text, text  # ansible-core's own deprecation noise is filtered
    assert (ansible_dir.parent / "marker").exists()
    # Nothing left: the attempt's work dir (with the key file), processes, records.
    assert not (runtime.config.data_dir / "jobs" / job_id).exists()
    assert not list((runtime.config.data_dir / "run").glob("*.json"))
    assert not _processes_with(str(runtime.config.data_dir))  # no process of the run


@pytest.mark.spec("NOD-32")
async def test_extra_vars_reach_the_playbook_as_written(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    sent: dict[str, Any] = {
        "v_template": "{{ 7 * 6 }}",
        "v_lookup": "{{ lookup('pipe', 'id') }}",
        "v_octal": "0012",
        "v_decimal": "1.50",
        "v_word": "yes",
        "v_null": "null",
        "v_text": 'Zoë\'s "café" 😀 \\ tab\tline\nsep\u2028nel\x85del\x7fctl\x01end',
        "v_number": 7,
        "v_nested": {"k" * 1100: ["{{ 1 + 1 }}", "0012", 1e16, 2.5, None, True]},
    }
    view, text = await _run(runtime, node_id, "vars.yml", extra=sent)
    assert view.status == "succeeded", text
    seen = json.loads((ansible_dir.parent / "marker").read_text())
    assert seen == {
        "template": "{{ 7 * 6 }}",  # never evaluated
        "lookup": "{{ lookup('pipe', 'id') }}",
        "octal": "0012",  # strings stay strings, whatever they look like
        "decimal": "1.50",
        "word": "yes",
        "nothing": "null",
        "text": sent["v_text"],
        "number": 7,
        "nested": sent["v_nested"],  # containers too, at any depth; floats stay floats
        "inline": "a {{ 7 * 6 }} and 0012",
    }


#: A data dir whose path Ansible would evaluate, were the inventory's values templated.
PAYLOAD_DIR = "data {{ lookup('pipe', 'id') }}"


@pytest.mark.spec("NOD-33")
@pytest.mark.parametrize("data_dir", [PAYLOAD_DIR], indirect=True)
async def test_inventory_values_are_never_templated(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    """The inventory holds paths under the data dir (the key, known_hosts): with a
    `{{ lookup('pipe', 'id') }}` in that path, the playbook still connects with the
    key at that very path and sees every value as written."""
    assert PAYLOAD_DIR in str(runtime.config.data_dir)
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    view, text = await _run(runtime, node_id, "inventory.yml")
    assert view.status == "succeeded", text
    seen = json.loads((ansible_dir.parent / "marker").read_text())
    work = runtime.config.data_dir / "jobs" / view.id / "attempt-1" / "ansible"
    assert seen["key_file"] == str(work / "node_key")  # as written: `id` never ran
    assert str(work / "known_hosts") in " ".join(shlex.split(seen["common_args"]))
    assert "uid=" not in json.dumps(seen) and "uid=" not in text
    assert (seen["user"], int(seen["port"])) == (ssh_node.user, ssh_node.port)


@pytest.mark.spec("NOD-11")
async def test_a_syntax_error_fails_for_good_before_anything_runs(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    view, text = await _run(runtime, node_id, "broken.yml")
    assert (view.status, view.error_code, len(view.attempts)) == (
        "failed",
        "ANSIBLE_SYNTAX_ERROR",
        1,
    )
    assert "running broken.yml" not in text  # the preflight stopped it


@pytest.mark.spec("NOD-12")
async def test_an_unreachable_node_is_retried_with_the_ansible_code(
    client: httpx.AsyncClient,
    runtime: Runtime,
    ssh_node: SSHNode,
    ansible_dir: Path,
    clock: FrozenClock,
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    ssh_node.stop()  # the server went away after it was checked
    job_id = await _enqueue(runtime, node_id, "hello.yml")

    async def attempted() -> bool:
        view = await job(runtime, job_id)
        return bool(view.attempts) and view.attempts[0].outcome is not None

    await until(attempted, within=120)
    view = await job(runtime, job_id)
    assert (view.status, view.attempts[0].error_code) == ("queued", "ANSIBLE_HOST_UNREACHABLE")
    assert not (runtime.config.data_dir / "jobs" / job_id).exists()
    # Retried after the backoff (1 min, then 5 min), then failed for good.
    for backoff, attempts in ((60, 2), (300, 3)):
        due = parse_ts(view.run_after or "") - clock.now()
        assert due.total_seconds() == backoff
        clock.advance(backoff)

        async def ended(attempts: int = attempts) -> bool:
            view = await job(runtime, job_id)
            return len(view.attempts) == attempts and view.attempts[-1].outcome is not None

        await until(ended, within=120)
        view = await job(runtime, job_id)
    assert (view.status, view.error_code) == ("failed", "ANSIBLE_HOST_UNREACHABLE")
    assert [a.error_code for a in view.attempts] == ["ANSIBLE_HOST_UNREACHABLE"] * 3


@pytest.mark.spec("NOD-13")
async def test_timeout_and_cancel_stop_the_run_and_leave_no_process(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    secret_id = await runtime.db.read(
        lambda conn: conn.execute(
            "SELECT key_secret_id FROM nodes WHERE id = ?", (node_id,)
        ).fetchone()[0]
    )
    private = await runtime.db.read(lambda conn: runtime.vault.open(conn, secret_id))

    # Timeout: killed, ANSIBLE_TIMEOUT (retryable: back in the queue). The remote
    # command is the node's business (it ends by itself: keep it short).
    # Unique naps: a node-side sleep of an earlier run may still be going.
    first, second = (f"{random.uniform(30, 45):.6f}" for _ in range(2))
    # 20 s: the syntax check, ansible's start-up and the login come first.
    job_id = await _enqueue(runtime, node_id, "slow.yml", seconds=20, nap=first)

    async def napping(seconds: str) -> bool:
        return bool(_processes_with(f"sleep {seconds}"))

    await until(lambda: napping(first), within=60)
    ours = str(runtime.config.data_dir)
    assert _processes_with(ours)  # the playbook runs from the attempt work dir
    listing = "\n".join(_processes_with(""))
    assert not [line for line in _key_body(private) if line in listing]  # never in `ps`
    assert first not in listing.replace(f"sleep {first}", "")  # extra vars: a file, not argv

    async def attempted() -> bool:
        view = await job(runtime, job_id)
        return bool(view.attempts) and view.attempts[0].outcome is not None

    await until(attempted, within=60)
    view = await job(runtime, job_id)
    assert view.attempts[0].error_code == "ANSIBLE_TIMEOUT" and view.status == "queued"
    assert not _processes_with(ours)
    assert not (runtime.config.data_dir / "jobs" / job_id).exists()
    cancel_queued = await client.post(f"/api/jobs/{job_id}/cancel")
    assert cancel_queued.json()["status"] == "cancelled"

    # Cancel: the running playbook is stopped within the cancel window.
    job_id = await _enqueue(runtime, node_id, "slow.yml", nap=second)
    try:
        await until(lambda: napping(second), within=120)
    except AssertionError:
        view = await job(runtime, job_id)
        lines = await _log_text(runtime, job_id)
        raise AssertionError(
            f"the playbook never reached its sleep: {view.status}\n{lines}"
        ) from None
    reply = await client.post(f"/api/jobs/{job_id}/cancel")
    assert reply.json()["status"] == "cancelled"
    assert not _processes_with(ours)
    assert not (runtime.config.data_dir / "jobs" / job_id).exists()
    run_dir = runtime.config.data_dir / "run"
    assert not run_dir.exists() or os.listdir(run_dir) == []


@pytest.mark.spec("NOD-14")
async def test_ansible_refuses_a_changed_host_key(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    ssh_node.new_host_key()  # pinned at the check; now someone else answers
    view, text = await _run(runtime, node_id, "hello.yml")
    assert (view.status, view.error_code, len(view.attempts)) == (
        "failed",
        "HOST_KEY_MISMATCH",
        1,
    ), text
    assert not (ansible_dir.parent / "marker").exists()  # nothing ran on the impostor


@pytest.mark.spec("NOD-28")
def test_the_profile_revision_covers_the_playbook_and_the_roles_it_uses(tmp_path: Path) -> None:
    playbooks, roles = tmp_path / "playbooks", tmp_path / "roles"
    playbooks.mkdir()
    for role in ("used", "imported", "other"):
        (roles / role / "tasks").mkdir(parents=True)
        (roles / role / "tasks" / "main.yml").write_text("---\n[]\n")
    playbook = playbooks / "p.yml"
    playbook.write_text(
        "---\n- hosts: target\n  roles:\n    - role: used\n  tasks:\n"
        "    - ansible.builtin.import_role:\n        name: imported\n"
    )
    first = profile_revision(playbook, roles)
    (roles / "other" / "tasks" / "main.yml").write_text("---\n- debug: {}\n")
    assert profile_revision(playbook, roles) == first  # another playbook's role
    for role in ("used", "imported"):
        (roles / role / "defaults").mkdir()
        (roles / role / "defaults" / "main.yml").write_text(f"---\n{role}: 1\n")
        changed = profile_revision(playbook, roles)
        assert changed != first
        first = changed


@pytest.mark.spec("NOD-30")
async def test_a_playbooks_own_failing_task_gets_its_own_code(
    client: httpx.AsyncClient, runtime: Runtime, ssh_node: SSHNode, ansible_dir: Path
) -> None:
    _register_playbook_job(runtime, ansible_dir)
    node_id = await _ready_node(client, runtime, ssh_node)
    job_id = await _enqueue(runtime, node_id, "unhealthy.yml")

    async def attempted() -> bool:
        view = await job(runtime, job_id)
        return bool(view.attempts) and view.attempts[0].outcome is not None

    await until(attempted, within=120)
    view = await job(runtime, job_id)
    assert view.attempts[0].error_code == "SITE_HEALTH_FAILED"
    log = await _log_text(runtime, job_id)
    assert "SITE_HEALTH_FAILED: task failed: Health check example" in log, log[-2000:]
    # A play that fails otherwise keeps the reference's code.
    other = await _enqueue(runtime, node_id, "broken.yml")
    assert (await until_ended(runtime, other, within=120)).error_code == "ANSIBLE_SYNTAX_ERROR"


RETRYABLE_ANSIBLE = frozenset(
    {"ANSIBLE_PLAY_ERROR", "ANSIBLE_HOST_FAILED", "ANSIBLE_HOST_UNREACHABLE", "ANSIBLE_TIMEOUT"}
)


@pytest.mark.spec("NOD-31")
@pytest.mark.parametrize(
    ("rc", "status", "stats", "code"),
    [
        (0, "successful", {"h": {"ok": 1}}, None),
        (1, "failed", {}, "ANSIBLE_PLAY_ERROR"),
        (2, "failed", {"h": {"failures": 1}}, "ANSIBLE_HOST_FAILED"),
        (2, "failed", {"h": {"dark": 1}}, "ANSIBLE_HOST_UNREACHABLE"),
        (4, "failed", {}, "ANSIBLE_HOST_UNREACHABLE"),
        (5, "failed", {}, "ANSIBLE_SYNTAX_ERROR"),
        (250, "failed", {}, "ANSIBLE_UNEXPECTED_ERROR"),
        (3, "failed", {}, "ANSIBLE_UNKNOWN_EXIT"),
        (-9, "timeout", {}, "ANSIBLE_TIMEOUT"),
    ],
)
def test_the_exit_table(
    rc: int, status: str, stats: dict[str, dict[str, int]], code: str | None
) -> None:
    # The real runs (syntax error, unreachable, timeout) are above; this is the whole table.
    assert classify(PlaybookSummary(rc=rc, status=status, stats=stats)) == code
    if code is not None:
        assert retryable(code) == (code in RETRYABLE_ANSIBLE)
