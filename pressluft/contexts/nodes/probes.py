"""What the nodes context does on a node or its engine directly, through the
adapters: a live node's facts over SSH (no job, no lock, 10 s deadline) and
where it is reached; a new node's key pair; the machine providers the settings
configure and their calls, classified as job failures; a playbook run on a job's
node (`run_node_playbook`, the Ansible workers' common path, other contexts' too)
and one command as root on a job's node (`node_command`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import shlex
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors

import pressluft.contexts.nodes.failures  # noqa: F401 - registers the codes raised here
from pressluft.contexts.nodes.errors import NodeNotReady, NodeUnreachable
from pressluft.contexts.nodes.loaders import NODE_ACCESS, NodeAccess
from pressluft.contexts.nodes.views import NodeFacts, live_node
from pressluft.db import Database
from pressluft.jobs.failures import JobCancelledError, JobFailure
from pressluft.jobs.process import RUN_MARKER, kill_marked
from pressluft.jobs.workers import WorkerPort
from pressluft.runners.ansible import (
    ANSIBLE_DIR,
    PlaybookRun,
    PlaybookSummary,
    classify,
    profile_revision,
    run_playbook,
)
from pressluft.runners.docker import LimitNotEnforced
from pressluft.runners.keys import KeyPair, generate_key_pair
from pressluft.runners.providers import (
    DockerProvider,
    Endpoint,
    ImageMissing,
    ProviderNotConfigured,
    Providers,
    resolve_docker_host,
)
from pressluft.runners.ssh import (
    AuthFailed,
    CommandResult,
    Facts,
    HostKeyMismatch,
    NodeAddress,
    SSHQueryError,
    facts,
    run_privileged,
    wait_for_banner,
)
from pressluft.vault import Vault

__all__ = [
    "DockerProvider",
    "KeyPair",
    "NodeAddress",
    "Providers",
    "classified",
    "configured_providers",
    "machine_call",
    "new_key_pair",
    "node_address",
    "node_command",
    "node_facts",
    "port_address",
    "run_node_playbook",
    "wait_for_ssh",
]

#: How long a new or restarted machine may take until its sshd answers.
SSH_UP_SECONDS = 120


def configured_providers(docker_host: str, node_image: str, lab_systemd: bool) -> Providers:
    """The providers of the `docker_host`, `node_image` and `lab_systemd` settings."""
    return Providers(resolve_docker_host(docker_host), node_image or None, lab_systemd)


def new_key_pair(node_name: str) -> KeyPair:
    """A new node's ed25519 key pair (its private half is sealed in the vault)."""
    return generate_key_pair(f"pressluft-{node_name}")


def node_address(conn: sqlite3.Connection, vault: Vault, node_id: str) -> NodeAddress | None:
    """How to reach a live node (its key opened from the vault); None if it is gone."""
    row = conn.execute(
        "SELECT host, ssh_port, ssh_user, key_secret_id, host_key FROM nodes"
        " WHERE id = ? AND status != 'decommissioned'",
        (node_id,),
    ).fetchone()
    if row is None or row[3] is None:
        return None
    host, port, user, secret_id, host_key = row
    return NodeAddress(host, int(port), user, vault.open(conn, secret_id), host_key)


async def node_facts(db: Database, vault: Vault, node_id: str, now: str) -> NodeFacts:
    """A direct query (no job, no lock, 10 s deadline): what the node is now."""

    def address(conn: sqlite3.Connection) -> NodeAddress | None:
        live_node(conn, node_id)
        return node_address(conn, vault, node_id)

    found = await db.read(address)
    if found is None or found.host_key is None:
        raise NodeNotReady(
            "the node's host key is not pinned yet",
            details={"hint": f"check the node first: POST /api/nodes/{node_id}/check"},
        )
    try:
        result: Facts = await facts(found)
    except HostKeyMismatch as exc:
        raise NodeNotReady(
            str(exc),
            details={"reason": "host_key_mismatch", "hint": "see the node's readiness"},
        ) from exc
    except SSHQueryError as exc:
        raise NodeUnreachable(
            f"the node did not answer: {exc}", details={"reason": exc.reason}
        ) from exc
    return NodeFacts(node_id=node_id, collected_at=now, **dataclasses.asdict(result))


async def port_address(ctx: WorkerPort, access: NodeAccess) -> NodeAddress:
    """A live node's address, its key opened through the worker's port."""
    key = await ctx.secret(access.key_secret_id)
    return NodeAddress(access.host, access.port, access.user, key.encode(), access.host_key)


async def job_node_address(ctx: WorkerPort) -> NodeAddress:
    """The job's node as a direct query reaches it (its key opened through the port);
    JobFailure when it is gone or its host key is not pinned."""
    if ctx.node_id is None:
        raise JobFailure("HANDLER_ERROR", "a node query needs a node")
    access = await ctx.load(NODE_ACCESS, ctx.node_id)
    if access is None:
        raise JobFailure("NODE_NOT_CHECKED", "the node is decommissioned")
    if access.host_key is None:
        raise JobFailure(
            "NODE_NOT_CHECKED", "the node's host key is not pinned yet: check the node first"
        )
    return await port_address(ctx, access)


async def node_command(
    ctx: WorkerPort, argv: list[str], stdin: str | None = None, deadline: float = 30.0
) -> CommandResult:
    """Run one command as root on the job's node over SSH (no playbook: for a step that
    is one command, e.g. a cache purge). JobFailure `NODE_NOT_CHECKED` without a pinned
    host key, `HOST_KEY_MISMATCH`, `NODE_AUTH_FAILED` or `NODE_UNREACHABLE` as a readiness
    query would say."""
    address = await job_node_address(ctx)
    try:
        return await run_privileged(address, argv, stdin, deadline)
    except HostKeyMismatch as exc:
        raise JobFailure("HOST_KEY_MISMATCH", str(exc)) from exc
    except AuthFailed as exc:
        raise JobFailure("NODE_AUTH_FAILED", str(exc)) from exc
    except SSHQueryError as exc:
        raise JobFailure("NODE_UNREACHABLE", f"the node did not answer: {exc}") from exc


async def node_script(
    ctx: WorkerPort,
    argv: list[str],
    failure_code: str,
    stdin: str | None = None,
    deadline: float = 120.0,
) -> str:
    """`node_command`, its stdout: a non-zero exit is JobFailure `failure_code` naming
    the command and its last stderr line (the last ten in the job's log)."""
    result = await node_command(ctx, argv, stdin, deadline)
    if result.exit_status != 0:
        lines = result.stderr.strip().splitlines()
        for line in lines[-10:]:
            ctx.log(line, "stderr")
        raise JobFailure(
            failure_code,
            f"{' '.join(argv[:2])} exited {result.exit_status}: {(lines or ['no output'])[-1]}",
        )
    return result.stdout


async def install_node_script(ctx: WorkerPort, path: str, source: str) -> None:
    """The root-owned script at `path` on the job's node as `source` says (0755),
    written only when missing or changed (by SHA-256)."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    found = await node_script(
        ctx, ["sh", "-c", f"sha256sum {shlex.quote(path)} 2>/dev/null || true"], "NODE_UNREACHABLE"
    )
    if found.split()[:1] == [digest]:
        return
    parent = path.rsplit("/", 1)[0]
    await node_script(ctx, ["install", "-d", "-m", "0755", "-o", "root", "-g", "root", parent],
                      "NODE_UNREACHABLE")  # fmt: skip
    await node_script(ctx, ["install", "-m", "0755", "-o", "root", "-g", "root", "/dev/stdin",
                            path], "NODE_UNREACHABLE", stdin=source)  # fmt: skip
    ctx.log(f"installed {path} on the node")


async def run_node_playbook(
    ctx: WorkerPort,
    playbook: str,
    *,
    extra_vars: dict[str, object] | None = None,
    allowlist: frozenset[str],
    ansible_dir: Path = ANSIBLE_DIR,
    task_codes: Callable[[str], str | None] | None = None,
) -> tuple[PlaybookSummary, str]:
    """Run `playbook` against the job's node (the Ansible workers' common path).

    Returns the summary and the profile revision it applied; raises JobFailure
    with the classified code — or, when a task failed that `task_codes` maps (by
    name) to a code of the playbook's own, that code — or JobCancelledError.
    Whatever happens, no process of the run is left and the key file goes with the
    attempt's work dir.
    """
    node_id = ctx.node_id
    if node_id is None:
        raise JobFailure("HANDLER_ERROR", "an Ansible job needs a node")
    access = await ctx.load(NODE_ACCESS, node_id)
    if access is None:
        raise JobFailure("NODE_NOT_CHECKED", "the node is decommissioned")
    if access.host_key is None:
        raise JobFailure(
            "NODE_NOT_CHECKED", "the node's host key is not pinned yet: check the node first"
        )
    address = await port_address(ctx, access)
    revision = profile_revision(ansible_dir / "playbooks" / playbook, ansible_dir / "roles")
    ctx.log(f"profile revision {revision}", "system")
    work_dir = ctx.work_dir
    run = PlaybookRun(
        playbook=playbook,
        node=address,
        extra_vars=dict(extra_vars or {}),
        correlation_id=ctx.correlation_id,
        ansible_dir=ansible_dir,
        allowlist=allowlist,
        environment={RUN_MARKER: str(work_dir)},
    )
    try:
        summary = await run_playbook(
            run, work_dir, ctx.log, ctx.cancelled, stray=lambda: kill_marked(work_dir)
        )
    finally:  # whatever the run left, it goes now
        await asyncio.shield(asyncio.to_thread(kill_marked, work_dir))
    if ctx.cancelled.is_set():  # however the runner saw it end
        raise JobCancelledError("cancelled; the playbook was stopped")
    ctx.log(
        f"recap: rc={summary.rc} status={summary.status} changed={summary.changed}"
        f" failed={summary.failures} unreachable={summary.unreachable}"
        f" tasks={len(summary.tasks)}",
        "system",
    )
    if summary.status == "canceled":
        raise JobCancelledError("cancelled; the playbook was stopped")
    code = classify(summary)
    if code is not None:
        if task_codes is not None and code != "HOST_KEY_MISMATCH":
            for task in (t.task for t in summary.tasks if t.status == "failed"):
                own = task_codes(task)
                if own is not None:
                    raise JobFailure(own, f"task failed: {task}")
        raise JobFailure(code, f"ansible-playbook exited {summary.rc} ({summary.status})")
    return summary, revision


def classified(exc: BaseException) -> JobFailure:
    """A provider's failure as the job failure it is (its code says what to do)."""
    if isinstance(exc, ProviderNotConfigured):
        return JobFailure("PROVIDER_UNAVAILABLE", str(exc))
    if isinstance(exc, ImageMissing):
        return JobFailure("NODE_IMAGE_MISSING", str(exc))
    if isinstance(exc, LimitNotEnforced):
        return JobFailure("LIMIT_NOT_ENFORCED", str(exc))
    if isinstance(exc, LookupError):  # the node's container is gone (removed outside)
        return JobFailure(
            "CONTAINER_MISSING", f"{exc}: decommission the node and register a new one"
        )
    return JobFailure("DOCKER_ERROR", f"the Docker engine failed: {exc}")


async def machine_call(fn: Callable[..., Any], *args: Any) -> Any:
    """A blocking provider call in a thread, its failures classified."""
    try:
        return await asyncio.to_thread(fn, *args)
    except (ProviderNotConfigured, ImageMissing, LimitNotEnforced, docker.errors.DockerException,
            LookupError, RuntimeError, OSError) as exc:  # fmt: skip
        raise classified(exc) from exc


async def wait_for_ssh(ctx: WorkerPort, endpoint: Endpoint) -> None:
    """Until a new or restarted machine's sshd answers (NODE_UNREACHABLE after a while)."""
    ctx.log(f"waiting for sshd on {endpoint.host}:{endpoint.ssh_port}")
    if not await wait_for_banner(endpoint.host, endpoint.ssh_port, SSH_UP_SECONDS):
        raise JobFailure(
            "NODE_UNREACHABLE", f"no SSH banner on port {endpoint.ssh_port} in {SSH_UP_SECONDS} s"
        )
