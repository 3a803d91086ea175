"""Backup benchmark: a Pressluft backup of a site against a bare ssh | gzip | S3 upload.

Everything runs in one run, on one lab node, against one S3 server: a real
`pressluft dev` daemon on a private dockerd with a provisioned lab node (1 CPU,
1 GiB) and one WordPress site (`tests/support/live.py`), and moto's S3 server on
loopback checking credentials (`tests/support/s3.py`); scratch files under
.artifacts/bench. Pressluft's backups run restic on the control plane, streaming
the node's database dump and file archive over SSH.

Setup (untimed): the backup target is set through the API (bucket `bench`,
prefix `pressluft`); a `db` backup of the still empty site makes its repository
(restic init, ~3 s once per site: reported on its own); then the site gets
- UPLOAD_FILES files of 1 MiB of random bytes (incompressible) written as the
  environment's user into `shared/uploads/bench/` (200 MiB);
- a table `wp_bench` in the environment's database: DB_ROWS rows of ~10 KiB, each
  half repetitive text (a sentence with the row number, repeated: gzip/zstd shrink
  it ~50x) and half base64 of random bytes (shrinks to ~3/4): a dump of ~50 MiB.

Measured:
1. Pressluft: a `full` backup through the API (`POST /api/environments/{id}/backups`),
   timed from the POST to the job's end (the job polled every 0.1 s). The first
   backup of the filled site is reported on its own (cold: all of its data is new
   to the repository); then WARM_ROUNDS more (warm: restic finds every chunk already stored, only
   reads, chunks and hashes the streams), reported as their median.
2. bare peer, in the same run (interleaved with the warm rounds, PEER_ROUNDS times):
   from this process, with the node's key and pinned host key read from the
   daemon's vault, OpenSSH's `ssh` to the node's published SSH port runs
   `mysqldump --single-transaction --hex-blob --routines --triggers DB | gzip` and
   then `tar -c <current release> shared/uploads | gzip`, each piped into boto3's
   `upload_fileobj` (multipart, streamed) into the same bucket (prefix `bare/`),
   one after the other as Pressluft's two streams are; timed as the two pipelines'
   wall time; the median of the rounds.
3. restore: a `full` restore of the last backup through the API (`POST
   /api/environments/{id}/restore`: verify both objects, a pre-restore backup,
   stage, switch, health checks), POST to the job's end. Reported, no goal.
4. storage: after the ten full backups (1 cold + 9 warm by default) of the unchanged
   site, the bytes of every object under the site's repository prefix, against ten
   times one gzip'd dump + tar of the peer (what ten plain nightly copies cost; the
   repository also holds the db backup of the empty site, a few hundred KiB).

Goal (issue 23, backups): the cold backup <= 1.3x the bare peer (the peer has no
deduplication, so the cold backup — which stores everything, like the peer — is
the fair comparison; warm / bare is reported). Exits 1 when it is missed.
"""

# ruff: noqa: E402 (sys.path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script: the repository root goes on sys.path for tests.support.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

import httpx

GOAL = 1.3
BUCKET = "bench"
PREFIX = "pressluft"
UPLOAD_FILES = 200  # of 1 MiB each
DB_ROWS = 5000  # of ~10 KiB each
WARM_ROUNDS = 9  # after the cold one: ten backups of the unchanged site
PEER_ROUNDS = 3
JOB_WITHIN = 1800.0


@dataclass(frozen=True)
class Backup:
    seconds: float
    backup_id: str
    job_id: str
    #: Per stream, from the job's log: name -> (seconds, bytes).
    streams: dict[str, tuple[float, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Peer:
    seconds: float
    db_seconds: float
    files_seconds: float
    #: What was uploaded (gzip'd): dump, tar.
    db_bytes: int
    files_bytes: int


@dataclass
class Results:
    cold: Backup | None = None
    warm: list[Backup] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    init: Backup | None = None
    restore_seconds: float = 0.0
    restore_log: str = ""
    stored_bytes: int = 0
    backups: int = 0


# -- the site's data --------------------------------------------------------------------


def fill_site(live: Any) -> tuple[str, str]:
    """UPLOAD_FILES MiB of random uploads and a ~50 MiB table; (files, rows) as found."""
    short = live.environment_id.replace("-", "")[:12]
    user = db = f"wp_{short}"
    root = f"/var/www/sites/{live.site_id}/{live.environment_id}"
    target = f"{root}/shared/uploads/bench"
    script = (
        f"mkdir -p {target} && for i in $(seq 1 {UPLOAD_FILES}); do "
        f"head -c 1048576 /dev/urandom > {target}/random-$i.bin; done && ls {target} | wc -l"
    )
    rc, out = live.exec("runuser", "-u", user, "--", "sh", "-c", script)
    if rc != 0:
        raise RuntimeError(f"writing the uploads failed: {out}")
    files = out.strip()
    text = "CONCAT('Row ', seq, ': the quick brown fox jumps over the lazy dog, again. ')"
    sql = (
        "DROP TABLE IF EXISTS wp_bench; "
        "CREATE TABLE wp_bench (id BIGINT UNSIGNED NOT NULL PRIMARY KEY,"
        " words LONGTEXT NOT NULL, noise LONGTEXT NOT NULL) ENGINE=InnoDB"
        " DEFAULT CHARSET=utf8mb4; "
        f"INSERT INTO wp_bench SELECT seq, REPEAT({text}, 80),"
        " CONCAT(TO_BASE64(RANDOM_BYTES(1024)), TO_BASE64(RANDOM_BYTES(1024)),"
        " TO_BASE64(RANDOM_BYTES(1024)), TO_BASE64(RANDOM_BYTES(1024)))"
        f" FROM seq_1_to_{DB_ROWS}; "
        "SELECT COUNT(*), SUM(LENGTH(words) + LENGTH(noise)) FROM wp_bench"
    )
    rc, out = live.exec("mariadb", "--batch", "--skip-column-names", db, "-e", sql)
    if rc != 0:
        raise RuntimeError(f"filling the database failed: {out}")
    return files, out.strip()


# -- Pressluft ----------------------------------------------------------------------------


def wait_job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_WITHIN
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise RuntimeError(f"job {job_id} did not end within {JOB_WITHIN:.0f} s")


def job_log(api: httpx.Client, job_id: str) -> str:
    return api.get(f"/api/jobs/{job_id}/log").text


_STORED = re.compile(r"stored (\S+): (\d+) bytes in ([\d.]+) s")


def pressluft_backup(live: Any, scope: str = "full") -> Backup:
    with live.api() as api:
        started = time.perf_counter()
        reply = api.post(f"/api/environments/{live.environment_id}/backups", json={"scope": scope})
        if reply.status_code != 202:
            raise RuntimeError(f"backup refused: {reply.status_code} {reply.text}")
        accepted = reply.json()
        job = wait_job(api, accepted["job_id"])
        seconds = time.perf_counter() - started
        log = job_log(api, accepted["job_id"])
    if job["status"] != "succeeded":
        raise RuntimeError(f"backup job {job['status']}: {job}\n{log[-3000:]}")
    streams = {m[1]: (float(m[3]), int(m[2])) for m in _STORED.finditer(log)}
    return Backup(seconds, accepted["backup_id"], accepted["job_id"], streams)


def pressluft_restore(live: Any, backup_id: str) -> tuple[float, str]:
    with live.api() as api:
        slug = api.get(f"/api/environments/{live.environment_id}").json()["slug"]
        started = time.perf_counter()
        reply = api.post(
            f"/api/environments/{live.environment_id}/restore",
            params={"confirm": slug},
            json={"backup_id": backup_id, "scope": "full"},
        )
        if reply.status_code != 202:
            raise RuntimeError(f"restore refused: {reply.status_code} {reply.text}")
        job_id = reply.json()["job_id"]
        job = wait_job(api, job_id)
        seconds = time.perf_counter() - started
        log = job_log(api, job_id)
    if job["status"] != "succeeded":
        raise RuntimeError(f"restore job {job['status']}: {job}\n{log[-3000:]}")
    return seconds, log


# -- the bare peer ------------------------------------------------------------------------


@dataclass(frozen=True)
class SSH:
    """OpenSSH to the node as the daemon reaches it (its key, its pinned host key)."""

    argv: tuple[str, ...]
    sudo: bool

    def command(self, script: str) -> list[str]:
        shell = f"bash -c {shlex.quote('set -o pipefail; ' + script)}"
        return [*self.argv, f"sudo -n {shell}" if self.sudo else shell]


def node_ssh(live: Any, work: Path) -> SSH:
    from pressluft.contexts.nodes.probes import node_address

    with live.db() as conn:
        address = node_address(conn, live.vault(), str(live.node["id"]))
    if address is None or address.host_key is None:
        raise RuntimeError("the node is not checked")
    key = work / "node-key"
    key.write_bytes(address.private_key)
    key.chmod(0o600)
    known = work / "known_hosts"
    known.write_text(f"[{address.host}]:{address.port} {address.host_key}\n")
    argv = (
        "ssh", "-F", "/dev/null", "-i", str(key), "-p", str(address.port),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
        f"{address.user}@{address.host}",
    )  # fmt: skip
    return SSH(argv, sudo=address.user != "root")


class _Counted:
    """A file object counting what is read through it (for boto3's upload)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def _piped(ssh: SSH, script: str, s3: Any, key: str) -> tuple[float, int]:
    """`ssh node script` into an S3 upload: seconds and bytes uploaded."""
    started = time.perf_counter()
    proc = subprocess.Popen(ssh.command(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None
    assert stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(stderr.read()))
    reader.start()
    body = _Counted(stdout)
    try:
        s3.upload_fileobj(body, BUCKET, key)
    finally:
        returncode = proc.wait()
        reader.join()
    if returncode != 0:
        raise RuntimeError(f"peer `{script}` exited {returncode}: {b''.join(errors)[-2000:]!r}")
    return time.perf_counter() - started, body.count


def peer_backup(live: Any, ssh: SSH, s3: Any) -> Peer:
    short = live.environment_id.replace("-", "")[:12]
    root = f"/var/www/sites/{live.site_id}/{live.environment_id}"
    dump = f"mysqldump --single-transaction --hex-blob --routines --triggers wp_{short} | gzip"
    # As the node's script: without the page cache's files, and a file changed while
    # read (GNU tar's exit status 1) is no failure.
    tar = (
        f'cd {root} && {{ tar -c --exclude=shared/uploads/cache "$(readlink current)"'
        " shared/uploads || [ $? -eq 1 ]; } | gzip"
    )
    db_seconds, db_bytes = _piped(ssh, dump, s3, "bare/db.sql.gz")
    files_seconds, files_bytes = _piped(ssh, tar, s3, "bare/files.tar.gz")
    return Peer(db_seconds + files_seconds, db_seconds, files_seconds, db_bytes, files_bytes)


def stored_bytes(s3: Any, prefix: str) -> int:
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        total += sum(int(item["Size"]) for item in page.get("Contents", []))
    return total


# -- the benchmark ------------------------------------------------------------------------


def bench(live: Any, server: Any, work: Path, warm_rounds: int, peer_rounds: int) -> Results:
    results = Results()
    server.create_bucket(BUCKET)
    with live.api() as api:
        reply = api.put(
            "/api/backup-target",
            json={
                "endpoint": server.endpoint,
                "region": server.region,
                "bucket": BUCKET,
                "prefix": PREFIX,
                "access_key_id": server.access_key_id,
                "secret_access_key": server.secret_access_key,
            },
        )
        if reply.status_code != 200:
            raise RuntimeError(f"backup target refused: {reply.status_code} {reply.text}")
    # The site's repository is made once (restic init: ~3 s of key calibration and
    # derivation), by a backup of the database before the site is filled: reported,
    # not part of the cold backup, which a site pays on every first backup of new data.
    results.init = pressluft_backup(live, "db")
    print(f"  repository made by a db backup of the empty site: {results.init.seconds:.1f} s")
    print("filling the site (untimed)…")
    files, rows = fill_site(live)
    print(f"  {files} uploads of 1 MiB; wp_bench rows / text bytes: {rows}")
    ssh = node_ssh(live, work)
    s3 = server.client()

    def peer() -> None:
        run = peer_backup(live, ssh, s3)
        results.peers.append(run)
        print(
            f"  bare peer       {run.seconds:6.1f} s (dump {run.db_seconds:.1f} s, "
            f"{run.db_bytes} B gz; tar {run.files_seconds:.1f} s, {run.files_bytes} B gz)"
        )

    def show(kind: str, run: Backup) -> None:
        parts = ", ".join(f"{n} {s:.1f} s" for n, (s, _) in run.streams.items())
        print(f"  pressluft {kind:<5} {run.seconds:6.1f} s ({parts})")

    peer()  # the node's page cache warm for both sides alike
    results.cold = pressluft_backup(live)
    show("cold", results.cold)
    for r in range(warm_rounds):
        if r < peer_rounds - 1:
            peer()
        run = pressluft_backup(live)
        results.warm.append(run)
        show("warm", run)
    results.backups = 1 + len(results.warm)
    results.stored_bytes = stored_bytes(s3, f"{PREFIX}/sites/{live.site_id}/")
    last = results.warm[-1] if results.warm else results.cold
    print("restoring the last backup…")
    results.restore_seconds, results.restore_log = pressluft_restore(live, last.backup_id)
    print(f"  restore {results.restore_seconds:.1f} s")
    return results


def report(results: Results) -> bool:
    """Print the table; whether the goal is met."""
    assert results.cold is not None
    assert results.peers
    bare = statistics.median(p.seconds for p in results.peers)
    cold = results.cold.seconds
    nan = float("nan")
    warm = statistics.median(w.seconds for w in results.warm) if results.warm else nan
    met = cold / bare <= GOAL
    width = 58
    print(f"\n{'measurement':<{width}} {'value':>12} {'goal':>8}")
    print(f"{'bare ssh | gzip | S3 upload, dump + tar (median)':<{width}} {bare:>10.1f} s")
    if results.init is not None:
        label = "pressluft db backup of the empty site, making its repository"
        print(f"{label:<{width}} {results.init.seconds:>10.1f} s")
    print(f"{'pressluft full backup, cold (all data new)':<{width}} {cold:>10.1f} s")
    label = f"pressluft full backup, warm (median of {len(results.warm)})"
    print(f"{label:<{width}} {warm:>10.1f} s")
    for kind, runs in (("cold", [results.cold]), ("warm", results.warm)):
        for name in ("db.sql", "files.tar"):
            value = statistics.median(b.streams.get(name, (nan, 0))[0] for b in runs)
            print(f"{f'  {kind}: stream {name} (job log)':<{width}} {value:>10.1f} s")
        rest = statistics.median(b.seconds - sum(s for s, _ in b.streams.values()) for b in runs)
        label = f"  {kind}: the rest (restic runs besides, SSH, job)"
        print(f"{label:<{width}} {rest:>10.1f} s")
    verdict = "" if met else "MISSED"
    goal = f"<={GOAL}x"
    print(f"{'  ratio cold / bare':<{width}} {cold / bare:>11.2f}x {goal:>8} {verdict}")
    print(f"{'  ratio warm / bare':<{width}} {warm / bare:>11.2f}x")
    label = "pressluft full restore (verify, pre-backup, stage, switch)"
    print(f"{label:<{width}} {results.restore_seconds:>10.1f} s")
    one = statistics.median(p.db_bytes + p.files_bytes for p in results.peers)
    label = f"bucket bytes of {results.backups} pressluft backups (unchanged site)"
    print(f"{label:<{width}} {results.stored_bytes / 2**20:>8.1f} MiB")
    label = f"{results.backups} x one gzip'd dump + tar of the peer"
    print(f"{label:<{width}} {results.backups * one / 2**20:>8.1f} MiB")
    print(f"{'  ratio':<{width}} {results.stored_bytes / (results.backups * one):>11.2f}x")
    print("\nper-round seconds, bare:          ", [round(p.seconds, 1) for p in results.peers])
    print("per-round seconds, pressluft warm:", [round(w.seconds, 1) for w in results.warm])
    streams = [results.cold, *results.warm]
    for name in ("db.sql", "files.tar"):
        values = [round(b.streams[name][0], 1) for b in streams if name in b.streams]
        print(f"pressluft {name:<9} stream seconds: {values}")
    print("per-round seconds, peer dump:      ", [round(p.db_seconds, 1) for p in results.peers])
    print("per-round seconds, peer tar:       ", [round(p.files_seconds, 1) for p in results.peers])
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--warm-rounds", type=int, default=WARM_ROUNDS)
    parser.add_argument("--peer-rounds", type=int, default=PEER_ROUNDS)
    args = parser.parse_args()
    if args.warm_rounds < 2 or args.peer_rounds < 1:
        parser.error("at least 2 warm rounds and 1 peer round")

    from tests.support.bind import BindServer
    from tests.support.live import start_live_site, stop_live_site
    from tests.support.s3 import S3Server

    base = ROOT / ".artifacts" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="backup-", dir=base))
    print(f"scratch dir: {work}; {os.cpu_count()} CPUs")
    began = time.perf_counter()
    dns = BindServer(work / "bind").start()
    try:
        server = S3Server(work / "s3").start()
        try:
            print("starting the live site (daemon, lab node, WordPress; untimed)…")
            live = start_live_site(work / "live", dns)
            try:
                results = bench(live, server, work, args.warm_rounds, args.peer_rounds)
            finally:
                stop_live_site(live)
        finally:
            server.stop()
    finally:
        dns.stop()
        shutil.rmtree(work, ignore_errors=True)
    met = report(results)
    print(f"total bench time {time.perf_counter() - began:.0f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
