"""The README's "Install on a Debian server" steps, followed literally, give a running
service (specs/service.md, SVC-6 to SVC-8).

The steps are the ```sh block after README's `<!-- install-steps -->` marker, run as
they are (`bash -e`) as root in a fresh Debian 12 container with systemd as PID 1 on
a private dockerd, in /root next to the wheel that the README's build step makes
from this checkout. The container has no network, so:

- apt: the image has the packages the steps' `apt-get install` lines name (read from
  the same block) and no apt sources; `apt-get update` reads nothing and `apt-get
  install -y` finds everything installed. The apt lines run, but install nothing.
- pip: `PIP_NO_INDEX=1` and `PIP_FIND_LINKS=/wheelhouse` in the environment point it
  at the dependencies' wheels, built on the host (cached).
- `admin create` reads the password from standard input (it prompts on a terminal).

Then it checks what an operator would: the service is active as its own user,
`/api/health` answers 200, the admin logs in, and a job runs a subprocess under the
unit's sandbox (and ansible-playbook running ssh, under the unit's settings
through `systemd-run`), the Docker opt-in reaches a socket of the `docker` group
and the default unit does not; installing again changes nothing (same process); a stop is the
daemon's clean exit; uninstalling keeps the data. The image (debootstrap, ~2 min
cold) and the wheelhouse are cached under ~/.cache/pressluft.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.dockerd import PrivateDockerd
from tests.support.service_image import (
    apt_packages,
    build_wheel,
    install_steps,
    service_image,
    wheelhouse,
)

DOCKER = shutil.which("docker") or "docker"  # the CLI of docker.io (make system-deps)
PASSWORD = "a long enough first password"
EMAIL = "you@example.com"

#: Runs in the container with its python3: what an operator checks after the install.
CHECK_SCRIPT = r"""
import http.cookiejar, json, sys, time, urllib.request, urllib.error
base = "http://127.0.0.1:8080"
opener = urllib.request.build_opener(
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
def call(method, path, body=None, headers=()):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    request.add_header("Origin", base)
    for name, value in headers:
        request.add_header(name, value)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
result = {"health": call("GET", "/api/health")[0]}
result["login"] = call("POST", "/api/login", {"email": sys.argv[1], "password": sys.argv[2]})[0]
status, accepted = call("POST", "/api/diagnostics/jobs",
                        {"job_type": "sleep", "seconds": 0.5, "lines": 3},
                        [("Idempotency-Key", "svc-test-1")])
result["enqueue"] = status
job = {}
for _ in range(600):
    status, job = call("GET", "/api/jobs/" + accepted["job_id"])
    if job["status"] in ("succeeded", "failed", "cancelled"):
        break
    time.sleep(0.1)
result["job"] = job["status"]
result["job_error"] = job.get("error_message")
print(json.dumps(result))
"""


#: A playbook like a job's: a command (ssh, as jobs reach nodes) and a file in the data dir.
PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.command: ssh -V
      register: ssh
      changed_when: false
    - ansible.builtin.copy:
        content: "{{ ssh.stderr }}"
        dest: /var/lib/pressluft/sandbox-check
        mode: "0600"
    - ansible.builtin.debug:
        msg: "{{ ssh.stderr }}"
"""

#: A stand-in Docker engine: /run/docker.sock, root:docker 0660, answering every request
#: with 200 OK (what the docker SDK's ping wants); READY=1 once it listens.
FAKE_ENGINE = r"""
import grp, os, socket
path = "/run/docker.sock"
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chown(path, 0, grp.getgrnam("docker").gr_gid)
os.chmod(path, 0o660)
server.listen(8)
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
while True:
    connection, _ = server.accept()
    connection.recv(65536)
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
    connection.close()
"""

#: The service's way to its engine: the docker SDK at PRESSLUFT_DOCKER_HOST.
PING = r"""
import os, docker
try:
    client = docker.DockerClient(base_url=os.environ.get("PRESSLUFT_DOCKER_HOST",
                                 "unix:///var/run/docker.sock"), version="1.41", timeout=10)
    print(client.ping())
except Exception as exc:  # requests' ConnectionError around the socket's error
    print("PermissionError" if "Permission denied" in repr(exc) else repr(exc))
"""

#: Unit settings that belong to the service's lifecycle, not to its sandbox.
LIFECYCLE = {"Type", "ExecStart", "Restart", "RestartSec", "RestartPreventExitStatus",
             "TimeoutStartSec", "TimeoutStopSec", "KillMode", "KillSignal"}  # fmt: skip


def _sandbox_properties(unit: str) -> list[str]:
    """`-p KEY=VALUE` for every [Service] setting of the unit but its lifecycle."""
    section = unit.split("[Service]\n", 1)[1].split("\n[", 1)[0]
    properties = []
    for line in section.splitlines():
        key, sep, _ = line.partition("=")
        if sep and not line.startswith("#") and key not in LIFECYCLE:
            properties += ["-p", line]
    return properties


class Server:
    """One container of the test image, systemd as PID 1, reached by `docker exec`."""

    def __init__(self, dockerd: PrivateDockerd, container: str) -> None:
        self.dockerd = dockerd
        self.container = container

    def run(
        self, *argv: str, stdin: str = "", env: tuple[str, ...] = (), timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        command = [DOCKER, "-H", self.dockerd.url, "exec", "-i", "-w", "/root"]
        for pair in env:
            command += ["-e", pair]
        return subprocess.run(
            [*command, self.container, *argv],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def value(self, *argv: str) -> str:
        result = self.run(*argv)
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def wait_booted(self) -> None:
        """Until systemd finished starting up (its bus appears a moment after PID 1)."""
        deadline = time.monotonic() + 180
        while True:
            booted = self.run("systemctl", "is-system-running", "--wait", timeout=180)
            if booted.stdout.strip() in ("running", "degraded"):
                return
            failed = self.run("systemctl", "--failed", "--no-pager").stdout
            assert "Failed to connect to bus" in booted.stderr, booted.stdout + failed
            assert time.monotonic() < deadline, booted.stderr
            time.sleep(0.2)

    def show(self, *properties: str) -> dict[str, str]:
        out = self.value("systemctl", "show", "pressluft.service", "-p", ",".join(properties))
        return dict(line.split("=", 1) for line in out.splitlines())

    def journal(self) -> str:
        return self.run("journalctl", "-u", "pressluft", "--no-pager", "-n", "60").stdout


def _tar(files: dict[str, Path]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in files.items():
            tar.add(str(path), arcname=name)
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path: Path, repo_root: Path) -> Iterator[tuple[Server, str]]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    steps = install_steps((repo_root / "README.md").read_text())
    house = wheelhouse(repo_root)
    wheel = build_wheel(repo_root, tmp_path / "dist")
    timings["wheels"] = time.monotonic() - started
    dockerd = PrivateDockerd().start()
    try:
        mark = time.monotonic()
        image = service_image(dockerd.url, apt_packages(steps))
        timings["image"] = time.monotonic() - mark
        client = docker.DockerClient(base_url=dockerd.url, timeout=120)
        try:
            container = client.containers.run(
                image,
                detach=True,
                name="pressluft-server",
                hostname="pressluft-server",
                network_mode="none",
                cap_add=["ALL"],
                cap_drop=["SYS_RESOURCE"],
                security_opt=["seccomp=unconfined"],
                tmpfs={"/run": "", "/run/lock": ""},
                volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
            )
            files = {f"wheelhouse/{w.name}": w for w in house.glob("*.whl")}
            files[f"root/{wheel.name}"] = wheel
            assert container.put_archive("/", _tar(files))
        finally:
            client.close()
        host = Server(dockerd, "pressluft-server")
        host.wait_booted()
        timings["boot"] = time.monotonic() - mark - timings["image"]
        yield host, steps
    finally:
        dockerd.stop()
        timings["total"] = time.monotonic() - started
        print("\nservice install test timings (s):", {k: round(v, 1) for k, v in timings.items()})


@pytest.mark.spec("SVC-6", "SVC-7", "SVC-8")
@pytest.mark.daemon
def test_the_readme_install_steps_give_a_running_service(server: tuple[Server, str]) -> None:
    host, steps = server
    mark = time.monotonic()
    installed = host.run(
        "bash", "-e", "-u", "-o", "pipefail", "-x", "-c", steps,
        stdin=PASSWORD + "\n",
        env=("PIP_NO_INDEX=1", "PIP_FIND_LINKS=/wheelhouse"),
        timeout=900,
    )  # fmt: skip
    print(f"\nREADME install steps: {time.monotonic() - mark:.1f}s")
    assert installed.returncode == 0, installed.stdout[-4000:] + installed.stderr[-6000:]
    assert "user pressluft: created" in installed.stdout, installed.stdout
    assert "\nactive\n" in installed.stdout  # the README's `systemctl is-active pressluft`
    assert f"created admin {EMAIL}" in installed.stdout

    # An operator's checks: its own user, health, the first login, a job's subprocess.
    assert host.value("systemctl", "is-active", "pressluft") == "active"
    shown = host.show("MainPID", "NRestarts", "User", "Type")
    assert shown["User"] == "pressluft" and shown["Type"] == "notify", shown
    assert shown["NRestarts"] == "0", host.journal()
    assert host.value("stat", "-c", "%U", f"/proc/{shown['MainPID']}") == "pressluft"
    assert host.value("stat", "-c", "%U %a", "/var/lib/pressluft") == "pressluft 700"
    assert host.value("stat", "-c", "%U %G %a", "/etc/pressluft/pressluft.env") == (
        "root pressluft 640"
    )
    assert host.value("getent", "passwd", "pressluft").endswith(
        ":/var/lib/pressluft:/usr/sbin/nologin"
    )
    checked = host.run("python3", "-c", CHECK_SCRIPT, EMAIL, PASSWORD, timeout=120)
    assert checked.returncode == 0, checked.stderr + host.journal()
    result = json.loads(checked.stdout)
    assert result == {
        "health": 200, "login": 200, "enqueue": 202, "job": "succeeded", "job_error": None,
    }, (result, host.journal())  # fmt: skip

    # What jobs run, under the same sandbox: ansible-playbook (forks, its temp dirs) and ssh.
    assert host.run("sh", "-c", "cat > /opt/sandbox-check.yml", stdin=PLAYBOOK).returncode == 0
    sandboxed = host.run(
        "systemd-run", "--wait", "--pipe", "--quiet", "--unit", "pressluft-sandbox-check",
        *_sandbox_properties(host.value("cat", "/etc/systemd/system/pressluft.service")),
        "/opt/pressluft/bin/ansible-playbook", "-i", "localhost,", "-c", "local",
        "/opt/sandbox-check.yml", timeout=300,
    )  # fmt: skip
    assert sandboxed.returncode == 0, sandboxed.stdout[-3000:] + sandboxed.stderr[-3000:]
    assert "ok=3 " in sandboxed.stdout and "failed=0" in sandboxed.stdout, sandboxed.stdout
    assert "OpenSSH_" in sandboxed.stdout
    assert host.value("stat", "-c", "%U", "/var/lib/pressluft/sandbox-check") == "pressluft"

    # SVC-8: the Docker opt-in reaches the engine's socket through its group (a stand-in
    # engine here: no Docker in the container); without it the sandboxed user cannot.
    assert host.run("groupadd", "--system", "docker").returncode == 0
    engine = host.run(
        "systemd-run", "--unit", "fake-docker", "--property", "Type=notify",
        "python3", "-c", FAKE_ENGINE,
    )  # fmt: skip
    assert engine.returncode == 0, engine.stderr
    for opt_in, expected in (((), "PermissionError"), (("--docker-group", "docker"), "True")):
        printed = host.value("/opt/pressluft/bin/pressluft", "service", "install", "--print",
                             *opt_in)  # fmt: skip
        pinged = host.run(
            "systemd-run", "--wait", "--pipe", "--quiet", *_sandbox_properties(printed),
            "/opt/pressluft/bin/python", "-c", PING, timeout=120,
        )  # fmt: skip
        assert pinged.stdout.strip() == expected, (opt_in, pinged.stdout, pinged.stderr)

    # SVC-7: installing again changes nothing, not even the running process.
    again = host.run("/opt/pressluft/bin/pressluft", "service", "install", "--now")
    assert again.returncode == 0, again.stderr
    assert "changed nothing" in again.stdout, again.stdout
    assert host.show("MainPID", "NRestarts") == {"MainPID": shown["MainPID"], "NRestarts": "0"}

    # A setting the unit follows (the stop timeout): the unit is updated and the service
    # restarted with it; the environment file stays the operator's.
    assert host.run("sh", "-c", "echo PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS=20 >> "
                    "/etc/pressluft/pressluft.env").returncode == 0  # fmt: skip
    updated = host.run("/opt/pressluft/bin/pressluft", "service", "install", "--now")
    assert updated.returncode == 0, updated.stderr
    assert "unit /etc/systemd/system/pressluft.service: updated" in updated.stdout
    assert "try-restart" in updated.stdout, updated.stdout
    restarted = host.show("MainPID", "TimeoutStopUSec", "ActiveState")
    assert restarted["MainPID"] != shown["MainPID"], restarted
    assert restarted["TimeoutStopUSec"] == "1min 10s" and restarted["ActiveState"] == "active"

    # An install without --now writes the unit only; the next one with --now applies it,
    # although the file is unchanged by then (systemd still runs the older copy).
    assert host.run("sh", "-c", "echo PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS=25 >> "
                    "/etc/pressluft/pressluft.env").returncode == 0  # fmt: skip
    written = host.run("/opt/pressluft/bin/pressluft", "service", "install")
    assert written.returncode == 0 and "not applied yet" in written.stdout, written.stdout
    applied = host.run("/opt/pressluft/bin/pressluft", "service", "install", "--now")
    assert applied.returncode == 0, applied.stderr
    assert "try-restart" in applied.stdout and "changed nothing" not in applied.stdout
    reloaded = host.show("MainPID", "TimeoutStopUSec", "NeedDaemonReload")
    assert reloaded["MainPID"] != restarted["MainPID"], reloaded
    assert reloaded["TimeoutStopUSec"] == "1min 20s" and reloaded["NeedDaemonReload"] == "no"

    # A stop is SIGTERM to the daemon, which drains and exits 0 within TimeoutStopSec.
    stopped = host.run("systemctl", "stop", "pressluft")
    assert stopped.returncode == 0, stopped.stderr
    after = host.show("Result", "ExecMainCode", "ExecMainStatus", "ActiveState")
    assert after == {
        "Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0", "ActiveState": "inactive",
    }, (after, host.journal())  # fmt: skip
    assert "runtime stopped; database closed" in host.journal()

    # Uninstalling removes the service and keeps the data, the settings and the user.
    removed = host.run("/opt/pressluft/bin/pressluft", "service", "uninstall")
    assert removed.returncode == 0, removed.stderr
    assert host.run("test", "-e", "/etc/systemd/system/pressluft.service").returncode == 1
    assert host.run("systemctl", "is-enabled", "pressluft").returncode != 0
    for kept in ("/var/lib/pressluft/pressluft.db", "/etc/pressluft/pressluft.env"):
        assert host.run("test", "-s", kept).returncode == 0, kept
