"""`pressluft service install|uninstall` on this machine: the unit systemd accepts,
idempotency, refusals, and the daemon's readiness notification (specs/service.md).

Installs here write only into temp dirs (`--unit-dir`, `--env-file`, `--data-dir`)
as the existing user `nobody`, so no user is created on this machine (the README
test creates one in a container). Commands that would call `systemctl` run in a
private mount namespace with an empty /run, where systemd is not running even on
a machine it manages: they never touch the real service manager.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pressluft import systemd
from pressluft.cli import main
from tests.support.daemon import Daemon, pressluft_argv

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"
NOBODY = pwd.getpwnam("nobody")


def _root() -> None:
    assert os.geteuid() == 0, "these tests install into temp dirs as root (make test runs as root)"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PRESSLUFT_")}


@contextlib.contextmanager
def _as_nobody() -> Iterator[None]:
    """This process's effective user is `nobody` (its real user stays root, to come back).
    In process: this venv's interpreter lives under /root, which `nobody` cannot run."""
    os.setegid(NOBODY.pw_gid)
    os.seteuid(NOBODY.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _service_as_nobody(*args: str) -> Result:
    with _as_nobody():
        return CliRunner().invoke(main, ["service", *args])


def _service(*args: str, without_systemd: bool = False) -> subprocess.CompletedProcess[str]:
    argv = pressluft_argv("service", *args)
    if without_systemd:
        # A private mount namespace whose /run is empty: no /run/systemd/system.
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount -t tmpfs tmpfs /run && exec "$@"', "sh", *argv]  # fmt: skip
    return subprocess.run(
        argv, env=_env(), cwd="/", capture_output=True, text=True, timeout=60, check=False
    )


def _options(tmp_path: Path) -> list[str]:
    return ["--user", "nobody", "--data-dir", str(tmp_path / "data"),
            "--unit-dir", str(tmp_path / "units"), "--env-file", str(tmp_path / "etc/pressluft.env")]  # fmt: skip


def _verify(unit: Path) -> str:
    """`systemd-analyze verify`'s complaints (it exits 0 on unknown keys, so read them)."""
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        cwd=unit.parent, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return f"exit {result.returncode}: {result.stdout}{result.stderr}".strip()


@pytest.mark.spec("SVC-1")
@pytest.mark.parametrize(
    "args",
    [(), ("--data-dir", "/srv/pressluft data"), ("--docker-group", "docker", "--user", "ops")],
    ids=["defaults", "data-dir-outside-var-lib", "docker-opt-in"],
)
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert shutil.which(SYSTEMD_ANALYZE), "systemd-analyze is part of Debian's systemd package"
    printed = _service("install", "--print", *args)
    assert printed.returncode == 0, printed.stderr
    unit = tmp_path / "pressluft.service"
    unit.write_text(printed.stdout)
    # ExecStart names this checkout's installed command, which verify checks exists. It does
    # not resolve User=/Group=/SupplementaryGroups= (those fail at start: the README test).
    executable = Path(sys.executable).parent / "pressluft"
    assert f"ExecStart={executable} serve --data-dir " in printed.stdout
    assert _verify(unit) == "exit 0:", printed.stdout
    # verify reads the keys: a typo would be named (so the empty output above means something)
    typo = tmp_path / "typo.service"
    typo.write_text(printed.stdout.replace("KillMode=mixed", "KillMode=mixed\nKilMode=mixed"))
    assert "Unknown key 'KilMode'" in _verify(typo)
    # systemd's own exposure rating of the sandbox: "OK" (≤ 2.0 of 10)
    rated = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", str(unit)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rated.returncode == 0, rated.stdout[-3000:]
    text = printed.stdout
    for line in ("KillMode=mixed", "Type=notify", "Restart=on-failure", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes",
                 "CapabilityBoundingSet=\n", "SystemCallArchitectures=native",
                 "EnvironmentFile=-/etc/pressluft/pressluft.env"):  # fmt: skip
        assert line in text
    # 2 x the drain + 30 s; the drain as this machine's environment file sets it, if any
    stop = 2 * systemd.read_shutdown_timeout(systemd.DEFAULT_ENV_FILE) + 30
    assert f"TimeoutStopSec={stop}s\n" in text
    if "--data-dir" in args:
        assert 'ReadWritePaths="/srv/pressluft data"' in text and "StateDirectory" not in text
    else:
        assert "StateDirectory=pressluft\n" in text and "ReadWritePaths" not in text
    if "--docker-group" in args:
        assert "SupplementaryGroups=docker\n" in text and "User=ops\n" in text
        assert "Environment=PRESSLUFT_DOCKER_HOST=unix:///var/run/docker.sock" in text


@pytest.mark.spec("SVC-2")
def test_installing_twice_changes_nothing(tmp_path: Path) -> None:
    _root()
    first = _service("install", *_options(tmp_path))
    assert first.returncode == 0, first.stderr
    unit = tmp_path / "units" / "pressluft.service"
    env_file = tmp_path / "etc" / "pressluft.env"
    data = tmp_path / "data"
    assert f"unit {unit}: written" in first.stdout
    assert f"environment file {env_file}: written" in first.stdout
    assert f"data dir {data}: created" in first.stdout
    assert "user nobody: exists" in first.stdout
    assert first.stdout.splitlines()[-2] == "done"
    assert "admin create --email you@example.com --data-dir " + str(data) in first.stdout
    printed = _service("install", "--print", *_options(tmp_path))
    assert unit.read_text() == printed.stdout
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    assert (env_file.stat().st_uid, env_file.stat().st_gid) == (0, NOBODY.pw_gid)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and data.stat().st_uid == NOBODY.pw_uid
    example = env_file.read_text()
    assert "#PRESSLUFT_PORT=8080" in example and "#PRESSLUFT_HOST=127.0.0.1" in example
    assert all(line.startswith("#") for line in example.splitlines() if line)

    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (unit, env_file)}
    second = _service("install", *_options(tmp_path))
    assert second.returncode == 0, second.stderr
    assert f"unit {unit}: unchanged" in second.stdout
    assert f"environment file {env_file}: kept (exists)" in second.stdout
    assert second.stdout.splitlines()[-2] == "changed nothing"
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (unit, env_file)} == before

    # The operator's settings are kept; the stop timeout follows the drain they set.
    env_file.write_text("PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS=20\n")
    third = _service("install", *_options(tmp_path))
    assert third.returncode == 0, third.stderr
    assert f"unit {unit}: updated" in third.stdout
    assert "TimeoutStopSec=70s" in unit.read_text()
    assert env_file.read_text() == "PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS=20\n"


@pytest.mark.spec("SVC-3")
def test_install_refuses_clearly(tmp_path: Path) -> None:
    _root()
    # Not root: refused before anything is written; printing needs no root.
    options = _options(tmp_path)
    denied = _service_as_nobody("install", *options)
    assert denied.exit_code == 3, denied.output
    assert "run it as root" in denied.stderr and "--print" in denied.stderr
    assert not (tmp_path / "units").exists() and not (tmp_path / "data").exists()
    printed = _service_as_nobody("install", "--print", *options)
    assert printed.exit_code == 0, printed.output
    assert "User=nobody" in printed.stdout
    # --now needs a running systemd (here: a mount namespace without one)
    no_systemd = _service("install", "--now", *options, without_systemd=True)
    assert no_systemd.returncode == 3
    assert "systemd is not running" in no_systemd.stderr
    assert not (tmp_path / "units").exists()
    # root as the service's user, a Docker group that does not exist, a broken setting
    as_root = _service("install", *[o if o != "nobody" else "root" for o in options])
    assert as_root.returncode == 2 and "must not run as root" in as_root.stderr
    no_group = _service("install", *options, "--docker-group", "no-such-group-pl")
    assert no_group.returncode == 2 and "no group 'no-such-group-pl'" in no_group.stderr
    env_file = tmp_path / "etc" / "pressluft.env"
    env_file.parent.mkdir()
    env_file.write_text("PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS=soon\n")
    bad = _service("install", *options)
    assert bad.returncode == 2 and "PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS" in bad.stderr
    assert not (tmp_path / "units").exists()


@pytest.mark.spec("SVC-3")
@pytest.mark.parametrize("place", ["/root/.local/pipx/venvs/pressluft/bin", "/home/ops/.venv/bin"])
def test_a_command_in_a_home_directory_is_refused(place: str) -> None:
    with pytest.raises(systemd.InstallError, match="cannot reach"):
        systemd._check_reachable(Path(place) / "pressluft")
    systemd._check_reachable(Path("/opt/pressluft/bin/pressluft"))  # no error


@pytest.mark.spec("SVC-3")
def test_a_python_or_data_dir_the_sandbox_hides_is_named_at_install(tmp_path: Path) -> None:
    script = tmp_path / "pressluft"
    script.write_text("#!/root/.pyenv/versions/3.11.7/bin/python3.11\n")
    said = systemd._hidden_from_service(script, Path("/tmp/pressluft-data"))
    assert len(said) == 2
    assert "/root/.pyenv" in said[0] and "ProtectHome" in said[0]
    assert "/tmp/pressluft-data" in said[1] and "PrivateTmp" in said[1]
    script.write_text("#!/usr/bin/python3\n")
    assert systemd._hidden_from_service(script, Path("/var/lib/pressluft")) == []


@pytest.mark.spec("SVC-4")
def test_uninstall_removes_the_unit_and_keeps_the_data(tmp_path: Path) -> None:
    _root()
    assert _service("install", *_options(tmp_path)).returncode == 0
    (tmp_path / "data" / "pressluft.db").write_text("kept")
    units = ["--unit-dir", str(tmp_path / "units")]
    removed = _service("uninstall", *units, without_systemd=True)
    assert removed.returncode == 0, removed.stderr
    assert "systemd is not running: nothing to stop" in removed.stdout
    assert "removed" in removed.stdout and "kept:" in removed.stdout
    assert not (tmp_path / "units" / "pressluft.service").exists()
    assert (tmp_path / "data" / "pressluft.db").read_text() == "kept"
    assert (tmp_path / "etc" / "pressluft.env").exists()
    again = _service("uninstall", *units, without_systemd=True)
    assert again.returncode == 0 and "not installed, nothing to remove" in again.stdout
    denied = _service_as_nobody("uninstall", *units)
    assert denied.exit_code == 3 and "run it as root" in denied.stderr


@pytest.mark.spec("SVC-5")
@pytest.mark.daemon
def test_the_daemon_tells_systemd_when_it_is_ready_and_when_it_stops(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(60)
        daemon = Daemon(tmp_path, mode="serve", env={"NOTIFY_SOCKET": address})
        daemon.start()
        try:
            assert listener.recv(4096) == b"READY=1"
            daemon.wait_ready()  # READY=1 came when it serves
            assert daemon.stop() == 0
            assert listener.recv(4096) == b"STOPPING=1"
        finally:
            daemon.stop(signal.SIGKILL)
