"""Provisioning benchmark: the node-provision playbook run bare and as a Pressluft job.

Everything runs against lab nodes (containers from the offline node image, 1 CPU,
1 GiB each) on a private Docker engine started for the run, with the daemon's
runtime in this process (a scratch data dir under .artifacts/bench, `workers` = 4):

1. overhead: one lab node, provisioned once untimed (the first run changes the
   node), then ROUNDS rounds of two no-change runs of `node-provision.yml`:
   - bare: `ansible-playbook` (the executable Pressluft runs) with the same
     ansible.cfg, inventory, key, pinned known_hosts, ssh options, extra-vars
     file and environment the job materializes (`pressluft.runners.ansible`),
     timed as the subprocess's wall time;
   - Pressluft: `node_provision` through the full job path — enqueue, a worker
     claims it under the node's lock, the handler's events, ansible-runner (its
     `--syntax-check` preflight, then the run) with every output line stored as a
     job log line — timed from the enqueue call to the job's terminal state.
   The two alternate (which goes first swaps every round); the ratio is the
   median of the per-round ratios (Pressluft / bare).
2. parallel: fresh nodes' first provisioning through Pressluft — 1 node alone,
   then 3 nodes at once (3 jobs, 3 worker slots); wall time from the first
   enqueue to the last job's end, and the time to make the nodes ready.

Goal (issue "Nodes"): Pressluft / bare <= 1.15x. Exits 1 when it is missed.
The node image comes from `pressluft node-image build` (cached in
$PRESSLUFT_NODE_IMAGE_CACHE or ~/.cache/pressluft/node-images; a first build
takes a while and needs the network).
"""

# ruff: noqa: E402 (sys.path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: the repository root goes on sys.path for tests.support.dockerd.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import uvloop

from pressluft.affinity import release_current_thread
from pressluft.config import resolve
from pressluft.contexts.nodes.commands import (
    RegisterDockerNode,
    provision_command,
    register_command,
)
from pressluft.contexts.nodes.probes import node_address
from pressluft.contexts.nodes.service import Nodes
from pressluft.contexts.nodes.views import get_node
from pressluft.contexts.nodes.workers import PROVISION_PLAYBOOK, PROVISION_TIMEOUT_SECONDS
from pressluft.contexts.operations.jobs import wait_for_end
from pressluft.events import Meta
from pressluft.executables import find_ansible_playbook
from pressluft.runners.ansible import ANSIBLE_DIR, PlaybookRun, _prepare
from pressluft.runners.docker import DockerLab, Limits, Published
from pressluft.runners.ssh import NodeAddress
from pressluft.runtime import Runtime
from tests.support.dockerd import PrivateDockerd

META = Meta(actor="bench")
CACHE = Path(
    os.environ.get("PRESSLUFT_NODE_IMAGE_CACHE", Path.home() / ".cache/pressluft/node-images")
)
LIMITS = Limits(memory_mb=1024, cpus=1, pids=1024)
WORKERS = 4
GOAL = 1.15


@dataclass(frozen=True)
class Run:
    seconds: float
    changed: int
    #: A job's `--syntax-check` preflight (between its log lines), in seconds.
    preflight: float | None = None


# -- the lab ------------------------------------------------------------------------------


def build_image(docker_url: str) -> str:
    """`pressluft node-image build` into the engine (cached); returns the image tag."""
    cli = Path(sys.executable).parent / "pressluft"
    argv = [str(cli), "node-image", "build", "--cache-dir", str(CACHE), "--docker-host"]
    built = subprocess.run(
        [*argv, docker_url], capture_output=True, text=True, timeout=1800, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(f"node-image build failed:\n{built.stderr[-3000:]}")
    return built.stdout.strip()


@dataclass(frozen=True)
class LabNode:
    node_id: str  # Pressluft's
    lab_id: str  # the container's pressluft.node_id label
    name: str
    ports: Published


async def ready_lab_node(runtime: Runtime, lab: DockerLab, image: str, name: str) -> LabNode:
    """A lab node ready to be provisioned: registered as `provider: docker` (its
    `node_create` job creates the container from the image, authorizes the key,
    waits for sshd and checks it)."""
    request = RegisterDockerNode(
        name=name, memory_mb=LIMITS.memory_mb, cpus=LIMITS.cpus, pids=LIMITS.pids
    )
    accepted = await runtime.db.write(
        register_command(request, runtime.vault, runtime.service("nodes", Nodes).providers, META)
    )
    node_id = accepted.node_id
    status = await wait_for_end(runtime.db, runtime.job_changes, accepted.job_id, 300)
    node = await runtime.db.read(lambda conn: get_node(conn, node_id))
    if status != "succeeded" or not node.readiness.is_ready:
        raise RuntimeError(f"node {name} is not ready: {status}, {node.readiness.reason_codes}")
    ports = await asyncio.to_thread(lab.published, node_id)
    return LabNode(node_id=node_id, lab_id=node_id, name=name, ports=ports)


# -- the two ways to provision ------------------------------------------------------------

_JOB_RECAP = re.compile(r"recap: rc=(\d+) status=(\S+) changed=(\d+)")
_BARE_RECAP = re.compile(r"^node\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.M)


async def pressluft_provision(runtime: Runtime, node_id: str) -> Run:
    """`node_provision` as a job: from the enqueue call to the job's terminal state."""
    started = time.perf_counter()
    accepted = await runtime.db.write(provision_command(node_id, META))
    status = await wait_for_end(
        runtime.db, runtime.job_changes, accepted.job_id, PROVISION_TIMEOUT_SECONDS
    )
    elapsed = time.perf_counter() - started
    rows: list[tuple[str, str]] = await runtime.db.read(
        lambda conn: conn.execute(
            "SELECT at, text FROM job_logs WHERE job_id = ? ORDER BY seq", (accepted.job_id,)
        ).fetchall()
    )
    lines = [text for _, text in rows]
    recap = next((m for m in map(_JOB_RECAP.search, lines) if m), None)
    if status != "succeeded" or recap is None:
        tail = "\n".join(lines[-60:])
        raise RuntimeError(f"provisioning job {accepted.job_id} ended {status}:\n{tail}")
    marks = {}
    for at, text in rows:
        for mark in ("syntax check:", "running "):
            if text.startswith(mark):
                marks.setdefault(mark, datetime.fromisoformat(at))
    preflight = None
    if len(marks) == 2:
        preflight = (marks["running "] - marks["syntax check:"]).total_seconds()
    return Run(elapsed, int(recap.group(3)), preflight)


def _bare(address: NodeAddress, work_dir: Path) -> Run:
    """`ansible-playbook` with what the job materializes (inventory, key, known_hosts,
    ssh options, extra-vars file, environment); the subprocess's wall time."""
    release_current_thread()  # like the job's runner thread: not pinned to the loop's CPU
    executable = find_ansible_playbook()
    if executable is None:
        raise RuntimeError("ansible-playbook is missing")
    run = PlaybookRun(
        playbook=PROVISION_PLAYBOOK, node=address, allowlist=frozenset({PROVISION_PLAYBOOK})
    )
    work_dir.mkdir(mode=0o700)
    try:  # the key goes with the work dir, as the job's does
        base, inventory, env = _prepare(run, work_dir)
        (base / "inventory.json").write_text(json.dumps(inventory))
        argv = [executable, "-i", str(base / "inventory.json")]
        argv += ["-e", f"@{base / 'extravars.yml'}"]
        argv.append(str(ANSIBLE_DIR / "playbooks" / PROVISION_PLAYBOOK))
        log_path = base / "ansible-playbook.log"
        with log_path.open("wb") as log:
            started = time.perf_counter()
            done = subprocess.run(
                argv,
                cwd=ANSIBLE_DIR,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=PROVISION_TIMEOUT_SECONDS,
                check=False,
            )
            elapsed = time.perf_counter() - started
        output = log_path.read_text(errors="replace")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    recap = _BARE_RECAP.search(output)
    if done.returncode != 0 or recap is None:
        raise RuntimeError(f"ansible-playbook exited {done.returncode}:\n{output[-4000:]}")
    return Run(elapsed, int(recap.group(1)))


async def bare_provision(runtime: Runtime, node_id: str, work_dir: Path) -> Run:
    # The node's address as the job reads it (key from the vault, pinned host key).
    address = await runtime.db.read(lambda conn: node_address(conn, runtime.vault, node_id))
    if address is None or address.host_key is None:
        raise RuntimeError("the node is not checked")
    result: list[Run | BaseException] = []

    def work() -> None:  # a thread of its own, as the job's runner has
        try:
            result.append(_bare(address, work_dir))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=work, name="bare-ansible", daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join)
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class Results:
    bare: list[Run]
    ours: list[Run]
    ready: dict[int, float]
    wall: dict[int, float]
    per_job: dict[int, list[Run]]


def _runtime(data_dir: Path, docker_url: str, image: str) -> Runtime:
    overrides = {
        "data_dir": str(data_dir),
        "workers": str(WORKERS),
        "docker_host": docker_url,
        "node_image": image,
    }
    config, _ = resolve("serve", overrides, environ={})
    return Runtime(config)


async def fresh_nodes(
    runtime: Runtime, lab: DockerLab, image: str, count: int, results: Results
) -> None:
    """`count` fresh nodes made ready, then their first provisioning at the same time."""
    started = time.perf_counter()
    names = [f"bench-{count}x-{i}" for i in range(count)]
    nodes = await asyncio.gather(*(ready_lab_node(runtime, lab, image, n) for n in names))
    results.ready[count] = time.perf_counter() - started
    print(f"  {count} fresh node(s) ready in {results.ready[count]:.1f} s; provisioning…")
    started = time.perf_counter()
    runs = await asyncio.gather(*(pressluft_provision(runtime, n.node_id) for n in nodes))
    results.wall[count] = time.perf_counter() - started
    results.per_job[count] = list(runs)
    for node in nodes:
        await asyncio.to_thread(lab.destroy, node.lab_id)


async def bench(work: Path, docker_url: str, image: str, rounds: int, parallel: int) -> Results:
    runtime = _runtime(work / "data", docker_url, image)
    if runtime.config.workers < parallel:
        raise RuntimeError(f"workers = {runtime.config.workers} < {parallel} parallel jobs")
    lab = DockerLab(docker_url)
    results = Results(bare=[], ours=[], ready={}, wall={}, per_job={})
    await runtime.start()
    try:
        node = await ready_lab_node(runtime, lab, image, "bench-rounds")
        print("warm-up: first provisioning of the rounds node (untimed)…")
        warm = await pressluft_provision(runtime, node.node_id)
        print(f"  {warm.seconds:.1f} s, {warm.changed} change(s)")
        for r in range(rounds):
            order = ("bare", "pressluft") if r % 2 == 0 else ("pressluft", "bare")
            for side in order:
                if side == "bare":
                    run = await bare_provision(runtime, node.node_id, work / f"bare-{r}")
                    results.bare.append(run)
                else:
                    run = await pressluft_provision(runtime, node.node_id)
                    results.ours.append(run)
                print(f"  round {r + 1} {side:<9} {run.seconds:6.1f} s, changed={run.changed}")
        await asyncio.to_thread(lab.destroy, node.lab_id)
        for count in sorted({1, parallel}):
            await fresh_nodes(runtime, lab, image, count, results)
    finally:
        try:
            for state in await asyncio.to_thread(lab.managed):
                await asyncio.to_thread(lab.destroy, state.node_id)
            lab.close()
        finally:
            await runtime.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=3, help="fresh nodes provisioned at once")
    args = parser.parse_args()

    base = ROOT / ".artifacts" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="provision-", dir=base))
    print(f"scratch dir: {work}")
    began = time.perf_counter()
    dockerd = PrivateDockerd().start()  # no iptables, no default bridge
    try:
        image = build_image(dockerd.url)
        print(f"node image {image}; {os.cpu_count()} CPUs, {WORKERS} workers,", end=" ")
        print(f"lab nodes of {LIMITS.cpus:g} CPU / {LIMITS.memory_mb} MiB; {args.rounds} rounds\n")
        results = uvloop.run(bench(work, dockerd.url, image, args.rounds, args.parallel))
    finally:
        dockerd.stop()
        shutil.rmtree(work, ignore_errors=True)

    ratios = [o.seconds / b.seconds for o, b in zip(results.ours, results.bare, strict=True)]
    ratio = statistics.median(ratios)
    met = ratio <= GOAL
    width = 56
    print(f"\n{'measurement':<{width}} {'value':>10} {'goal':>9}")
    bare_s = statistics.median(r.seconds for r in results.bare)
    ours_s = statistics.median(r.seconds for r in results.ours)
    preflights = [r.preflight for r in results.ours if r.preflight is not None]
    print(f"{'bare ansible-playbook, no-change run (median)':<{width}} {bare_s:>8.1f} s")
    print(f"{'pressluft node_provision job, no-change run (median)':<{width}} {ours_s:>8.1f} s")
    if preflights:
        label = "  of which the job's --syntax-check preflight (median)"
        print(f"{label:<{width}} {statistics.median(preflights):>8.1f} s")
    verdict = "" if met else "MISSED"
    label = f"  ratio pressluft / bare (median of {len(ratios)} rounds)"
    print(f"{label:<{width}} {ratio:>9.2f}x {'<=' + str(GOAL) + 'x':>9} {verdict}")
    for count in sorted(results.wall):
        nodes = "1 node alone" if count == 1 else f"{count} nodes in parallel"
        label = f"{nodes}: ready (create, register, check)"
        print(f"{label:<{width}} {results.ready[count]:>8.1f} s")
        label = f"{nodes}: first provisioning, wall"
        print(f"{label:<{width}} {results.wall[count]:>8.1f} s")
    print("\nper-round seconds, bare:     ", [round(r.seconds, 1) for r in results.bare])
    print("per-round seconds, pressluft:", [round(r.seconds, 1) for r in results.ours])
    print("per-round ratios:            ", [round(r, 3) for r in ratios])
    print("changed per no-change run:   ", [r.changed for r in results.bare + results.ours])
    for count, runs in sorted(results.per_job.items()):
        seconds = [round(r.seconds, 1) for r in runs]
        print(f"fresh x{count}, per job seconds / changes:", seconds, [r.changed for r in runs])
    print(f"total bench time {time.perf_counter() - began:.0f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
