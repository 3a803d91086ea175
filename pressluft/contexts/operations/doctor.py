"""`pressluft doctor`: is this machine and data dir ready to run Pressluft?

Reports ansible-playbook (found, version), the playbooks jobs will run (the
package's `ansible/`: Pressluft's manifest and every playbook it names, each
parsing and finding its roles), the ssh client, restic (backups), the Docker engine
`pressluft dev` would use and its node image (only docker lab nodes need them),
SQLite's version, the
database (integrity, schema version, event chain) and free disk space.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pressluft.contexts.operations.probes import ANSIBLE_DIR, probe_docker, probe_playbooks
from pressluft.db.connection import SQLITE_MIN_VERSION, open_sync
from pressluft.db.migrate import Sources, current_version, latest_version
from pressluft.events.chain import verify_chain
from pressluft.executables import find_ansible_playbook

__all__ = ["DoctorResult", "run_checks"]

Status = Literal["ok", "fail", "warn", "info"]
LOW_DISK_BYTES = 1 << 30


@dataclass(frozen=True)
class DoctorResult:
    name: str
    status: Status
    detail: str


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def _ansible() -> DoctorResult:
    path = find_ansible_playbook()
    if path is None:
        return DoctorResult("ansible-playbook", "fail", "not found; install ansible-core")
    version = _first_line([path, "--version"]) or "version unknown"
    return DoctorResult("ansible-playbook", "ok", f"{version} ({path})")


def _playbooks(ansible_dir: Path) -> DoctorResult:
    check = probe_playbooks(ansible_dir)
    return DoctorResult("playbooks", "ok" if check.ok else "fail", check.detail)


def _ssh() -> DoctorResult:
    path = shutil.which("ssh")
    if path is None:
        return DoctorResult("ssh client", "fail", "not found; install openssh-client")
    return DoctorResult("ssh client", "ok", _first_line([path, "-V"]) or path)


def _restic() -> DoctorResult:
    path = shutil.which("restic")
    if path is None:
        return DoctorResult(
            "restic", "warn", "not found: backups cannot run; install restic (Debian: restic)"
        )
    return DoctorResult("restic", "ok", _first_line([path, "version"]) or path)


def _docker(setting: str) -> list[DoctorResult]:
    """The engine named by `setting` and its node image.

    `auto` (the default) is the engine `pressluft dev` would use; an engine there
    is optional (only docker lab nodes need one), so not finding or reaching it is
    information. An engine the operator named (`--docker-host URL`) is the one they
    mean to use: not reaching it fails the check.
    """
    named = setting not in ("", "auto")
    engine = probe_docker(setting)
    url, image = engine.url, engine.image
    if url is None:
        detail = "none found" if setting == "auto" else "none configured"
        return [DoctorResult("docker engine", "info", f"{detail}; only docker lab nodes need it")]
    if engine.error is not None:
        reason = engine.error
        if named:
            return [DoctorResult("docker engine", "fail", f"{url} not reachable ({reason})")]
        return [
            DoctorResult(
                "docker engine",
                "info",
                f"{url} not reachable ({reason}); only docker lab nodes need it",
            )
        ]
    node_image = (
        DoctorResult("node image", "ok", f"{image} present")
        if engine.image_present
        else DoctorResult(
            "node image",
            "info",
            f"{image} missing; lab nodes need it: pressluft node-image build --docker-host {url}",
        )
    )
    return [
        DoctorResult("docker engine", "ok", f"{url} reachable, version {engine.version}"),
        node_image,
    ]


def _sqlite() -> DoctorResult:
    need = ".".join(map(str, SQLITE_MIN_VERSION))
    if sqlite3.sqlite_version_info < SQLITE_MIN_VERSION:
        return DoctorResult("sqlite", "fail", f"{sqlite3.sqlite_version} is older than {need}")
    return DoctorResult("sqlite", "ok", f"{sqlite3.sqlite_version} (needs {need}+)")


def _database(data_dir: Path, migrations: Sources) -> list[DoctorResult]:
    path = data_dir / "pressluft.db"
    if not path.is_file():
        return [
            DoctorResult("database", "warn", f"no database yet at {path}; the daemon creates it")
        ]
    results: list[DoctorResult] = []
    try:
        conn = open_sync(path, "reader")
    except sqlite3.Error as exc:
        return [DoctorResult("database", "fail", f"cannot open {path}: {exc}")]
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        results.append(
            DoctorResult("database integrity", "ok" if check == "ok" else "fail", str(check))
        )
        version, latest = current_version(conn), latest_version(migrations)
        if version == latest:
            results.append(DoctorResult("schema version", "ok", f"{version} (current)"))
        elif version < latest:
            results.append(
                DoctorResult(
                    "schema version", "fail", f"{version} < {latest}: run `pressluft migrate`"
                )
            )
        else:
            results.append(
                DoctorResult("schema version", "fail", f"{version} > {latest}: upgrade Pressluft")
            )
        if version >= 1:
            conn.execute("BEGIN")
            chain = verify_chain(conn)
            conn.execute("COMMIT")
            if chain.ok:
                results.append(
                    DoctorResult("event log", "ok", f"{chain.checked} events, chain intact")
                )
            else:
                results.append(
                    DoctorResult(
                        "event log", "fail", f"broken at seq {chain.first_bad_seq}: {chain.reason}"
                    )
                )
    except sqlite3.Error as exc:
        results.append(DoctorResult("database", "fail", f"cannot read: {exc}"))
    finally:
        conn.close()
    return results


def _disk(data_dir: Path) -> DoctorResult:
    probe = data_dir if data_dir.exists() else data_dir.parent
    while not probe.exists():
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    free_gib = usage.free / (1 << 30)
    status: Status = "warn" if usage.free < LOW_DISK_BYTES else "ok"
    return DoctorResult("disk space", status, f"{free_gib:.1f} GiB free at {probe}")


def run_checks(
    data_dir: Path,
    docker_host: str = "auto",
    migrations: Sources = (),
    ansible_dir: Path | None = None,
) -> list[DoctorResult]:
    """`ansible_dir`: the playbooks to check; the package's (what jobs run) unless told."""
    return [
        DoctorResult("data dir", "info", str(data_dir)),
        _sqlite(),
        *_database(data_dir, migrations),
        _disk(data_dir),
        _ansible(),
        _playbooks(ansible_dir or ANSIBLE_DIR),
        _ssh(),
        _restic(),
        *_docker(docker_host),
    ]
