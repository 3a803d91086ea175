"""Jobs against a real `pressluft serve`: SIGKILL mid-job and rescue; cancelling a process tree."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, run_cli
from tests.support.jobs import any_alive, recorded_groups


def _wait(predicate: Any, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def _sleep(http: httpx.Client, seconds: float, lines: int) -> str:
    """Enqueue a `sleep` diagnostic job; its id."""
    reply = http.post(
        "/api/diagnostics/jobs", json={"job_type": "sleep", "seconds": seconds, "lines": lines}
    )
    assert reply.status_code == 202, reply.text
    return str(reply.json()["job_id"])


def _stdout(http: httpx.Client, job_id: str) -> list[tuple[int, str]]:
    lines = http.get(f"/api/jobs/{job_id}/log", params={"limit": 5000}).json()["lines"]
    return [(line["attempt"], line["text"]) for line in lines if line["stream"] == "stdout"]


@pytest.mark.spec("JOB-17")
def test_sigkill_mid_job_then_restart_rescues_and_completes_it(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "serve").start().wait_ready()
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http:
            job_id = _sleep(http, 4, 8)
            seen = _wait(lambda: (s := _stdout(http, job_id)) and len(s) >= 3 and s)
            groups = recorded_groups(daemon.data_dir / "run")
            assert groups and any_alive(groups)
    finally:
        daemon.send(signal.SIGKILL)
        daemon.wait()

    restarted = Daemon(tmp_path, "serve", port=daemon.port).start().wait_ready()
    try:
        with httpx.Client(base_url=restarted.url, headers=restarted.auth(), timeout=30) as http:
            final = _wait(
                lambda: (
                    (j := http.get(f"/api/jobs/{job_id}").json())["status"]
                    in ("succeeded", "failed", "cancelled")
                    and j
                )
            )
            assert final["status"] == "succeeded"
            assert [a["outcome"] for a in final["attempts"]] == ["lease_expired", "succeeded"]
            assert not any_alive(groups)  # the crashed daemon's processes were killed
            lines = _stdout(http, job_id)
            first = [line for line in lines if line[0] == 1]
            assert first[: len(seen)] == seen  # every line stored before the kill is kept
            assert [t for a, t in lines if a == 2] == [f"line {i}/8" for i in range(1, 9)]
            log = http.get(f"/api/jobs/{job_id}/log").json()["lines"]
            assert any("lost its worker (daemon_restarted)" in line["text"] for line in log)
    finally:
        assert restarted.stop() == 0
    env = {**restarted.env, "PRESSLUFT_DATA_DIR": str(restarted.data_dir)}
    verify = run_cli("events", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    replay = run_cli("replay", "--verify", env=env)
    assert replay.returncode == 0, replay.stdout + replay.stderr


@pytest.mark.spec("JOB-14")
def test_cancel_stops_a_running_job_and_every_process_it_started(tmp_path: Path) -> None:
    with (
        Daemon(tmp_path, "serve") as daemon,
        httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http,
    ):
        job_id = _sleep(http, 600, 600)
        _wait(lambda: _stdout(http, job_id))
        groups = recorded_groups(daemon.data_dir / "run")
        assert any_alive(groups)
        cancelled = http.post(f"/api/jobs/{job_id}/cancel")
        # The answer waits up to 5 s for the job to end; "cancelled" means it did.
        assert cancelled.json() == {"success": True, "status": "cancelled", "job_id": job_id}
        assert not any_alive(groups)
        detail = http.get(f"/api/jobs/{job_id}").json()
        assert detail["status"] == "cancelled"
        again = http.post(f"/api/jobs/{job_id}/cancel")
        assert (again.status_code, again.json()["code"]) == (409, "job_not_cancellable")


@pytest.mark.spec("JOB-36")
def test_a_job_process_inherits_only_its_stdio(tmp_path: Path) -> None:
    inherited = os.open(tmp_path / "handed-down", os.O_RDWR | os.O_CREAT)  # as from a parent
    try:
        with (
            Daemon(tmp_path, "serve", pass_fds=(inherited,)) as daemon,
            httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http,
        ):
            job_id = _sleep(http, 600, 600)
            _wait(lambda: _stdout(http, job_id))
            [pid] = recorded_groups(daemon.data_dir / "run")  # the group leader: the job's process
            fds = {
                int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
            }
            assert sorted(fds) == [0, 1, 2], fds
            http.post(f"/api/jobs/{job_id}/cancel")
    finally:
        os.close(inherited)


@pytest.mark.spec("JOB-36", "JOB-17")
def test_a_restart_binds_its_port_while_the_crashed_daemons_job_runs_on(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, "serve").start().wait_ready()
    try:
        with httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http:
            # Silent for 600 s: no write to the dead daemon's pipe ends it early.
            job_id = _sleep(http, 600, 1)
            _wait(lambda: http.get(f"/api/jobs/{job_id}").json()["status"] == "running")
            groups = _wait(lambda: recorded_groups(daemon.data_dir / "run"))
    finally:
        daemon.send(signal.SIGKILL)
        daemon.wait()
    assert any_alive(groups)
    try:
        with (
            Daemon(tmp_path, "serve", port=daemon.port) as restarted,
            httpx.Client(base_url=restarted.url, headers=restarted.auth(), timeout=30) as http,
        ):
            assert not any_alive(groups)  # killed at start-up
            job = http.get(f"/api/jobs/{job_id}").json()
            assert job["attempts"][0]["outcome"] == "lease_expired"
            http.post(f"/api/jobs/{job_id}/cancel")
    finally:
        for group in groups:  # should the restart have failed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


@pytest.mark.spec("DMN-5")
def test_a_deleted_lock_file_lets_no_second_daemon_onto_the_data_dir(tmp_path: Path) -> None:
    first = Daemon(tmp_path, "serve").start().wait_ready()
    second: Daemon | None = None
    try:
        with httpx.Client(base_url=first.url, headers=first.auth(), timeout=30) as http:
            job_id = _sleep(http, 600, 600)
            _wait(lambda: _stdout(http, job_id))
            groups = recorded_groups(first.data_dir / "run")
            assert groups and any_alive(groups)
            lock_file = first.data_dir / "pressluft.lock"
            assert lock_file.read_text().startswith(f"pid {first.proc.pid if first.proc else 0} ")
            lock_file.unlink()  # it looks stale to someone

            second = Daemon(tmp_path, "serve").start()
            assert second.data_dir == first.data_dir
            try:
                assert second.wait(timeout=60) == 3
            except subprocess.TimeoutExpired:
                raise AssertionError(f"a second daemon runs:\n{second.output()}") from None
            out = second.output()
            assert f"in use by pid {first.proc.pid if first.proc else 0}" in out
            assert "Traceback" not in out
            env = {**first.env, "PRESSLUFT_DATA_DIR": str(first.data_dir)}
            migrate = run_cli("migrate", env=env)
            assert migrate.returncode == 3, migrate.stdout + migrate.stderr

            # The first daemon's work is untouched: the same attempt, its processes alive,
            # its output still flowing.
            assert any_alive(groups)
            job = http.get(f"/api/jobs/{job_id}").json()
            assert job["status"] == "running"
            assert [a["outcome"] for a in job["attempts"]] == [None]
            printed = len(_stdout(http, job_id))
            _wait(lambda: len(_stdout(http, job_id)) > printed)
            log = http.get(f"/api/jobs/{job_id}/log").json()["lines"]
            assert not any("lost its worker" in line["text"] for line in log)
            cancelled = http.post(f"/api/jobs/{job_id}/cancel")
            assert cancelled.json()["status"] == "cancelled"
    finally:
        if second is not None:
            second.stop()
        assert first.stop() == 0
    # Released with the first daemon: the next one starts.
    with Daemon(tmp_path, "serve") as again:
        assert httpx.get(again.url + "/api/health").status_code == 200
