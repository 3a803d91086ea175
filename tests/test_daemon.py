"""Real `pressluft` processes: zero-config start, clean shutdown, refusals, serve mode, SSE, crash."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from pressluft.datadir import DataDirLock
from tests.support.daemon import Daemon, free_port, run_cli

pytestmark = pytest.mark.daemon


@pytest.mark.spec("DMN-1")
def test_zero_config_start(tmp_path: Path) -> None:
    with Daemon(tmp_path) as daemon:
        health = httpx.get(daemon.url + "/api/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert httpx.get(daemon.url + "/").status_code == 303  # the dashboard wants a login
        assert httpx.get(daemon.url + "/login").status_code == 200
        out = daemon.output()
        for line in ("Dashboard", "API", "docs:", "Health", "Metrics"):
            assert line in out
        assert f"{daemon.url}/api/docs" in out
        data = tmp_path / ".pressluft"
        assert oct(data.stat().st_mode & 0o777) == "0o700"
        assert (data / "pressluft.db").is_file()
        for private in (
            "pressluft.db",
            "pressluft.db-wal",
            "pressluft.db-shm",
            "secrets/master.key",
        ):
            assert oct((data / private).stat().st_mode & 0o777) == "0o600", private
        assert daemon.stop() == 0


def _raw_request(port: int, head: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    return sock


@pytest.mark.spec("DMN-2")
def test_sigterm_finishes_in_flight_requests_and_closes_the_database(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path).start().wait_ready()
    try:
        body = b'{"control_plane_domain": "inflight.example.com"}'
        half = len(body) // 2
        auth = daemon.auth()
        sock = _raw_request(
            daemon.port,
            b"PATCH /api/settings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            + f"Authorization: {auth['Authorization']}\r\n".encode()
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:half],
        )
        with httpx.stream(
            "GET",
            daemon.url + "/api/events/stream",
            params={"type": "settings.changed"},
            headers=auth,
            timeout=10,
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith(": pressluft event stream")
            time.sleep(0.3)
            daemon.send(signal.SIGTERM)
            time.sleep(0.3)
            sock.sendall(body[half:])
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
            assert b"inflight.example.com" in reply
            rest = list(lines)  # the stream ends instead of hanging
            assert all(not line.startswith("data:") or "inflight" in line for line in rest)
        assert daemon.wait(timeout=20) == 0
        data = tmp_path / ".pressluft"
        assert not (data / "pressluft.db-wal").exists(), "the database was not closed"
        assert "runtime stopped; database closed" in daemon.output()
    finally:
        daemon.stop(signal.SIGKILL)
    env = {"PRESSLUFT_DATA_DIR": str(tmp_path / ".pressluft")}
    tail = run_cli("events", "tail", "-n", "1", env=env)
    assert "inflight.example.com" in tail.stdout


@pytest.mark.spec("DMN-2")
def test_sigint_is_a_clean_stop_too(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path).start().wait_ready()
    assert daemon.stop(signal.SIGINT) == 0
    assert not (tmp_path / ".pressluft" / "pressluft.db-wal").exists()


@pytest.mark.spec("DMN-3", "SEC-4")
@pytest.mark.parametrize("mode", ["dev", "serve"])
def test_non_loopback_addresses_need_tls_or_an_explicit_opt_out(tmp_path: Path, mode: str) -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - the point of the test
    daemon = Daemon(tmp_path, mode, args=("--host", everywhere, "--data-dir", str(tmp_path / "d")))
    daemon.start()
    assert daemon.wait(timeout=30) == 2
    out = daemon.output()
    assert "refusing to listen on 0.0.0.0 without TLS" in out
    assert "--insecure-http" in out


@pytest.mark.spec("DMN-4")
def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        daemon = Daemon(tmp_path, port=port).start()
        assert daemon.wait(timeout=30) == 3
        assert f"cannot listen on 127.0.0.1:{port}" in daemon.output()
    # The data dir was not left locked: a daemon on a free port starts.
    with Daemon(tmp_path) as again:
        assert httpx.get(again.url + "/api/health").status_code == 200


@pytest.mark.spec("DMN-5")
def test_one_owner_per_data_dir(tmp_path: Path) -> None:
    with Daemon(tmp_path) as first:
        pid = first.proc.pid if first.proc else 0
        second = Daemon(tmp_path).start()
        assert second.wait(timeout=30) == 3
        assert f"in use by pid {pid}" in second.output()
        env = {"PRESSLUFT_DATA_DIR": str(tmp_path / ".pressluft")}
        for command in (("migrate",), ("replay",)):
            result = run_cli(*command, env=env)
            assert result.returncode == 3
            assert f"pid {pid}" in result.stderr
        # Read-only commands work while the daemon runs.
        assert run_cli("replay", "--verify", env=env).returncode == 0
        assert run_cli("events", "verify", env=env).returncode == 0


@pytest.mark.spec("DMN-6")
def test_serve_reads_the_environment_and_logs_json(tmp_path: Path) -> None:
    data = tmp_path / "var-lib"
    port = free_port()
    daemon = Daemon(
        tmp_path,
        "serve",
        env={"PRESSLUFT_DATA_DIR": str(data), "PRESSLUFT_PORT": str(port)},
        port=port,
    )
    daemon.args = ()
    with daemon:
        reply = httpx.patch(
            daemon.url + "/api/settings",
            json={"control_plane_domain": "serve.example.com"},
            headers={"X-Request-ID": "serve-req-1", **daemon.auth()},
        )
        assert reply.status_code == 200
        assert (data / "pressluft.db").is_file()
        assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]
    assert records, daemon.output()
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r.get("correlation_id") == "serve-req-1"]
    assert any("PATCH /api/settings 200" in r["message"] for r in access)


@pytest.mark.spec("EVT-13")
def test_live_event_stream_resumes_and_keeps_alive(tmp_path: Path) -> None:
    env = {"PRESSLUFT_SSE_KEEPALIVE_SECONDS": "1"}
    with Daemon(tmp_path, env=env) as daemon:
        auth = daemon.auth()  # events 1-3: user.created, session started, token.created
        for i in range(3):
            httpx.patch(
                daemon.url + "/api/settings",
                json={"control_plane_domain": f"s{i}.example.com"},
                headers=auth,
            )
        with httpx.stream(
            "GET",
            daemon.url + "/api/events/stream",
            params={"type": "settings.changed"},
            headers={"Last-Event-ID": "4", **auth},
            timeout=10,
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            seen: list[dict[str, object]] = []
            ids: list[str] = []
            keepalive = False
            started = time.monotonic()
            for line in stream.iter_lines():
                if line.startswith("id: "):
                    ids.append(line[4:])
                elif line.startswith("data: "):
                    seen.append(msgspec.json.decode(line[6:]))
                    if len(seen) == 2:
                        # Live: appended after the stream is open, delivered without polling.
                        httpx.patch(
                            daemon.url + "/api/settings",
                            json={"control_plane_domain": "live.example.com"},
                            headers=auth,
                        )
                elif line == ": keep-alive":
                    keepalive = True
                if len(seen) == 3 and keepalive:
                    break
                assert time.monotonic() - started < 10
        assert ids == ["5", "6", "7"]
        assert [e["data"]["control_plane_domain"] for e in seen] == [  # type: ignore[index]
            "s1.example.com",
            "s2.example.com",
            "live.example.com",
        ]


@pytest.mark.spec("EVT-15")
def test_sigkill_while_64_clients_append_loses_nothing_acknowledged(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path).start().wait_ready()
    auth = daemon.auth()
    acknowledged: set[str] = set()

    async def client(n: int, http: httpx.AsyncClient) -> None:
        i = 0
        while True:
            value = f"c{n}-{i}.example.com"
            try:
                reply = await http.patch("/api/settings", json={"control_plane_domain": value})
            except httpx.HTTPError:
                return
            if reply.status_code == 200:
                acknowledged.add(value)
            i += 1

    async def run() -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=daemon.url, limits=limits, timeout=10, headers=auth
        ) as http:
            tasks = [asyncio.create_task(client(n, http)) for n in range(64)]
            await asyncio.sleep(2.0)
            daemon.send(signal.SIGKILL)
            await asyncio.wait(tasks, timeout=30)

    asyncio.run(run())
    assert daemon.wait(timeout=10) == -signal.SIGKILL
    assert len(acknowledged) > 64, "too few appends to make the test meaningful"
    print(f"acknowledged before SIGKILL: {len(acknowledged)}")

    with Daemon(tmp_path) as again:
        present: set[str] = set()
        after = 0
        while True:
            page = httpx.get(
                again.url + "/api/events",
                params={"after": after, "limit": 1000, "type": "settings.changed"},
                headers=auth,
            ).json()
            present |= {e["data"]["control_plane_domain"] for e in page["items"]}
            after = page["next_after"]
            if not page["has_more"]:
                break
        missing = acknowledged - present
        assert not missing, f"{len(missing)} acknowledged appends lost, e.g. {sorted(missing)[:3]}"
        assert again.stop() == 0
    env = {"PRESSLUFT_DATA_DIR": str(tmp_path / ".pressluft")}
    verify = run_cli("events", "verify", env=env)
    assert verify.returncode == 0, verify.stdout
    replay = run_cli("replay", "--verify", env=env)
    assert replay.returncode == 0, replay.stdout


def _allowed_cpus(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        name = next(
            line.split(":", 1)[1].strip()
            for line in status.splitlines()
            if line.startswith("Name:")
        )
        cpus = next(
            line.split(":", 1)[1].strip()
            for line in status.splitlines()
            if line.startswith("Cpus_allowed_list:")
        )
        out[f"{task.name}:{name}"] = cpus
    return out


@pytest.mark.spec("DMN-13")
def test_loop_and_database_threads_share_one_cpu(tmp_path: Path) -> None:
    import os

    with Daemon(tmp_path) as daemon:
        assert daemon.proc is not None
        threads = _allowed_cpus(daemon.proc.pid)
        loop = next(cpus for t, cpus in threads.items() if t.split(":")[0] == str(daemon.proc.pid))
        assert loop.isdigit(), f"the loop thread is not pinned to one CPU: {threads}"
        pinned = [t for t, cpus in threads.items() if cpus == loop]
        # loop + writer + 4 readers (+ executor threads); password hashing threads
        # release the pin on purpose, so they may differ.
        assert len(pinned) >= 6, threads
    if (os.cpu_count() or 1) > 1:
        with Daemon(tmp_path / "off", args=("--cpu-affinity", "off")) as unpinned:
            assert unpinned.proc is not None
            assert all(not c.isdigit() for c in _allowed_cpus(unpinned.proc.pid).values())


@pytest.mark.spec("DMN-13")
def test_a_released_thread_may_use_every_cpu() -> None:
    import os
    import threading

    from pressluft.affinity import (
        colocate_current_thread,
        release_current_thread,
        restore_current_thread,
    )

    previous = colocate_current_thread()
    try:
        assert len(os.sched_getaffinity(0)) == 1
        seen: list[set[int]] = []

        def worker() -> None:
            inherited = os.sched_getaffinity(0)
            release_current_thread()
            seen.extend([inherited, os.sched_getaffinity(0)])

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert len(seen[0]) == 1  # inherited from the pinned creator
        assert seen[1] == previous  # back to the process's own mask
    finally:
        restore_current_thread(previous)
    assert os.sched_getaffinity(0) == previous


@pytest.mark.spec("DMN-5")
def test_a_data_dir_reached_through_a_symlink_is_locked_as_the_directory(
    tmp_path: Path,
) -> None:
    real = tmp_path / "volume" / "pressluft"
    real.mkdir(parents=True)
    link = tmp_path / "pressluft-link"
    link.symlink_to(real, target_is_directory=True)
    env = {"PRESSLUFT_DATA_DIR": str(link)}
    assert run_cli("migrate", env=env).returncode == 0  # refused as "keeps changing" before
    with DataDirLock(link, "test holder"):
        for data_dir in (link, real):
            refused = run_cli("migrate", env={"PRESSLUFT_DATA_DIR": str(data_dir)})
            assert refused.returncode == 3
            assert f"in use by pid {os.getpid()} (test holder)" in refused.stderr


@pytest.mark.spec("DMN-5")
def test_a_missing_master_key_with_sealed_secrets_refuses_to_start(tmp_path: Path) -> None:
    with Daemon(tmp_path) as daemon:
        reply = httpx.patch(
            daemon.url + "/api/settings",
            json={"dns01_provider": "cloudflare", "dns01_credentials": {"api_token": "tok"}},
            headers=daemon.auth(),
        )
        assert reply.status_code == 200
    (tmp_path / ".pressluft" / "secrets" / "master.key").unlink()
    again = Daemon(tmp_path).start()
    assert again.wait(timeout=30) == 3
    out = again.output()
    assert "master key" in out
    assert "secret(s) are sealed" in out
    assert "Traceback" not in out
    assert not (tmp_path / ".pressluft" / "secrets" / "master.key").exists()


@pytest.mark.spec("DMN-5")
def test_a_start_that_fails_half_way_exits_and_unlocks(tmp_path: Path) -> None:
    import sqlite3

    with Daemon(tmp_path):
        pass
    db = tmp_path / ".pressluft" / "pressluft.db"
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM event_log_head")  # a damaged database
    conn.commit()
    conn.close()
    broken = Daemon(tmp_path).start()
    assert broken.wait(timeout=30) != 0  # it exits instead of hanging on live threads
    env = {"PRESSLUFT_DATA_DIR": str(tmp_path / ".pressluft")}
    verify = run_cli("events", "verify", env=env)
    assert verify.returncode == 1  # doctor/verify still see the damage; the lock was released
    assert run_cli("migrate", env=env).returncode == 0


THIRD_PARTY_NOISE = "CryptographyDeprecationWarning"


@pytest.mark.spec("DMN-17")
def test_commands_and_the_daemon_start_without_third_party_warnings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESSLUFT_", "PYTHON"))}
    env["PRESSLUFT_DATA_DIR"] = str(tmp_path / "data")
    # The console script an operator runs, as a real process.
    console = str(Path(sys.executable).parent / "pressluft")
    for args in (["--help"], ["config"]):
        result = subprocess.run(
            [console, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert THIRD_PARTY_NOISE not in result.stderr, result.stderr
        assert "Warning" not in result.stderr, result.stderr
    with Daemon(tmp_path / "serve", mode="serve", env=env) as daemon:
        # The daemon has imported its SSH library (node checks use it) by now.
        assert httpx.get(daemon.url + "/api/health").status_code == 200
    out = daemon.output()
    assert "/api/health" in out  # the log is there to read (the banner)
    assert THIRD_PARTY_NOISE not in out, out
    assert "Warning:" not in out, out


@pytest.mark.spec("DMN-17")
def test_a_deprecation_in_pressluft_code_is_still_shown(tmp_path: Path) -> None:
    # A real process that imports the daemon's SSH adapter (where asyncssh's noise is
    # filtered), then runs code of a pressluft module that warns: ours stay visible,
    # even a warning of the very category filtered for asyncssh.
    probe = "\n".join(
        [
            "import warnings",
            "from cryptography.utils import CryptographyDeprecationWarning",
            "warnings.warn('pressluft --old-flag is deprecated', DeprecationWarning)",
            "warnings.warn('pressluft uses DSA here', CryptographyDeprecationWarning)",
        ]
    )
    script = "\n".join(
        [
            "import pressluft.runners.ssh, pressluft.runtime",
            f"code = compile({probe!r}, 'pressluft/probe.py', 'exec')",
            "exec(code, {'__name__': 'pressluft.probe'})",
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRESSLUFT_", "PYTHON"))}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "DeprecationWarning: pressluft --old-flag is deprecated" in result.stderr
    assert "CryptographyDeprecationWarning: pressluft uses DSA here" in result.stderr
    assert result.stderr.count("Warning:") == 2, result.stderr  # and no asyncssh noise
