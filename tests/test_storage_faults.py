"""A database that cannot be written, with real processes: a write lock held by a
second process, a read-only and a full file system under the data dir (a tmpfs
mounted by the test). The daemon says so (health, 503 + Retry-After), keeps its
queue alive, recovers when the disk does, and refuses to start on such a disk."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import Daemon, free_port, run_cli

pytestmark = pytest.mark.daemon


class Tmpfs:
    """A small tmpfs mounted for one test (root only: `make test` runs as root)."""

    def __init__(self, path: Path, size_mib: int) -> None:
        if os.geteuid() != 0:
            raise AssertionError("these tests mount a tmpfs: run them as root (make test does)")
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(path)],
            check=True,
        )

    def remount(self, option: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{option}", str(self.path)], check=True)

    def fill(self) -> Path:
        """Take every free byte (the daemon's files can no longer grow)."""
        filler = self.path / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (1024 * 1024, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    fs = Tmpfs(tmp_path / "fs", size_mib=96)
    try:
        yield fs
    finally:
        fs.unmount()


def _serve(tmp_path: Path, data_dir: Path, *extra: str) -> Daemon:
    return Daemon(
        tmp_path / "work",
        mode="serve",
        args=("--data-dir", str(data_dir), *extra),
        env={"PRESSLUFT_DB_BUSY_TIMEOUT_MS": "300"},
    )


def _wait(predicate: object, timeout: float = 60, what: str = "condition") -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _metric(http: httpx.Client, name: str) -> float:
    total = 0.0
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _job_ends(http: httpx.Client, job_id: str) -> str:
    ended = {"succeeded", "failed", "cancelled"}
    status = ""

    def done() -> bool:
        nonlocal status
        status = http.get(f"/api/jobs/{job_id}").json()["status"]
        return status in ended

    _wait(done, what=f"job {job_id} to end")
    return status


def _health_fails(http: httpx.Client, failing: bool = True) -> httpx.Response:
    """The health answer once it reports the failure (or, not `failing`, once it
    no longer does): a probe's answer is reused for a second."""
    answer = http.get("/api/health")
    deadline = time.monotonic() + 30
    while (answer.status_code == 200) == failing and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = http.get("/api/health")
    return answer


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["details"]["hint"]
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.spec("JOB-39", "DMN-10", "DMN-16")
def test_a_write_lock_held_by_another_process_does_not_stop_the_queue(tmp_path: Path) -> None:
    daemon = _serve(tmp_path, tmp_path / "data")
    with daemon, httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http:
        first = http.post("/api/diagnostics/jobs", json={"job_type": "noop"}).json()["job_id"]
        assert _job_ends(http, first) == "succeeded"
        # A second process takes the write lock and keeps it for several claim polls.
        holder = sqlite3.connect(daemon.data_dir / "pressluft.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            health = _health_fails(http)
            _assert_unavailable(health)
            checks = health.json()["details"]["checks"]
            assert checks["database"]["status"] == "fail"
            assert "locked" in checks["database"]["detail"]
            _assert_unavailable(
                http.patch("/api/settings", json={"control_plane_domain": "a.example.com"})
            )
            _wait(
                lambda: _metric(http, "pressluft_job_claim_failures_total") >= 2,
                what="the workers to fail a claim twice",
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # The lock is gone: the queue works on, nothing restarted, health is back.
        job = http.post("/api/diagnostics/jobs", json={"job_type": "noop"}).json()["job_id"]
        assert _job_ends(http, job) == "succeeded"
        assert http.get("/api/health").status_code == 200
        assert (
            http.patch("/api/settings", json={"control_plane_domain": "a.example.com"}).status_code
            == 200
        )
        assert _metric(http, "pressluft_service_restarts_total") == 0


@pytest.mark.spec("DMN-10", "DMN-16", "JOB-39")
def test_a_full_disk_is_503_and_the_daemon_recovers(tmp_path: Path, tmpfs: Tmpfs) -> None:
    # (A file system cannot be remounted read-only while the daemon holds its
    # database open for writing; the read-only case is the start's, below.)
    daemon = _serve(tmp_path, tmpfs.path / "data")
    with daemon, httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http:
        assert _health_fails(http, failing=False).status_code == 200
        running = http.post(
            "/api/diagnostics/jobs", json={"job_type": "sleep", "seconds": 3, "lines": 2}
        ).json()["job_id"]
        filler = tmpfs.fill()
        health = _health_fails(http)
        _assert_unavailable(health)
        checks = health.json()["details"]["checks"]
        assert checks["disk"]["status"] == "fail"
        assert "MiB free" in checks["disk"]["detail"]
        refused = None
        for i in range(200):  # free pages in the WAL may take a few writes first
            answer = http.patch("/api/settings", json={"control_plane_domain": f"h{i}.example.com"})
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 503:
                refused = answer
                break
        assert refused is not None, "a full disk never refused a write"
        _assert_unavailable(refused)
        _assert_unavailable(http.post("/api/diagnostics/jobs", json={"job_type": "noop"}))
        time.sleep(1)  # the running job meets the full disk too
        filler.unlink()
        assert _health_fails(http, failing=False).status_code == 200
        assert _job_ends(http, running) == "succeeded"
        assert (
            http.patch("/api/settings", json={"control_plane_domain": "b.example.com"}).status_code
            == 200
        )
        job = http.post("/api/diagnostics/jobs", json={"job_type": "noop"}).json()["job_id"]
        assert _job_ends(http, job) == "succeeded"
        assert 'status="500"' not in http.get("/metrics").text
    assert run_cli("events", "verify", env=_cli_env(daemon)).returncode == 0


def _cli_env(daemon: Daemon) -> dict[str, str]:
    return {**daemon.env, "PRESSLUFT_DATA_DIR": str(daemon.data_dir)}


@pytest.mark.spec("DMN-15")
def test_a_daemon_refuses_to_start_on_a_database_it_cannot_write(
    tmp_path: Path, tmpfs: Tmpfs
) -> None:
    daemon = _serve(tmp_path, tmpfs.path / "data")
    with daemon:
        daemon.admin_credentials()  # a user, so the data dir is in use
    env = _cli_env(daemon)

    tmpfs.remount("ro")
    for argv in (
        ("serve", "--data-dir", str(daemon.data_dir), "--port", str(free_port())),
        (
            "admin",
            "create",
            "--email",
            "second@example.com",
            "--password",
            "a long enough test password",
        ),
    ):
        result = run_cli(*argv, env=env)
        assert result.returncode != 0, result
        assert "Traceback" not in result.stderr + result.stdout
        assert f"cannot write to the data dir {daemon.data_dir}" in result.stderr, result.stderr
        assert "read-only" in result.stderr.lower() or "readonly" in result.stderr.lower()
    tmpfs.remount("rw")

    # A second process holds the database's write lock past the busy timeout.
    holder = sqlite3.connect(daemon.data_dir / "pressluft.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        locked_env = {**env, "PRESSLUFT_DB_BUSY_TIMEOUT_MS": "300"}
        result = run_cli("serve", "--port", str(free_port()), env=locked_env)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr + result.stdout
        assert "locked" in result.stderr, result.stderr
        result = run_cli(
            "admin",
            "create",
            "--email",
            "third@example.com",
            "--password",
            "a long enough test password",
            env=locked_env,
        )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr + result.stdout
        assert "locked" in result.stderr, result.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with _serve(tmp_path, daemon.data_dir):
        pass  # starts once the disk and the lock are back
