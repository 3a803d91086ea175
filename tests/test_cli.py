"""The command line: help, configuration, migrate, verify, replay, tail, doctor, openapi check."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from pressluft.config import SETTINGS
from pressluft.db import migrate
from pressluft.db.connection import open_sync
from tests.support.daemon import pressluft_argv, run_cli
from tests.support.seed import seed_settings

COMMANDS = [
    ("dev",),
    ("serve",),
    ("config",),
    ("migrate",),
    ("replay",),
    ("events",),
    ("events", "tail"),
    ("events", "verify"),
    ("openapi",),
    ("openapi", "check"),
    ("doctor",),
    ("service",),
    ("service", "install"),
    ("service", "uninstall"),
]


def _sqlite3(db: Path, sql: str) -> None:
    cli = shutil.which("sqlite3")
    assert cli, "the sqlite3 CLI is required (make test installs it)"
    subprocess.run([cli, str(db), sql], check=True, capture_output=True, text=True)


@pytest.mark.spec("DMN-8")
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...], cli_env: dict[str, str]) -> None:
    result = run_cli(*command, "--help", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


@pytest.mark.spec("DMN-8")
@pytest.mark.parametrize(
    "command", [("events", "verify"), ("events", "tail"), ("replay", "--verify")]
)
def test_commands_without_a_database_exit_3_with_a_hint(
    command: tuple[str, ...], cli_env: dict[str, str]
) -> None:
    result = run_cli(*command, env=cli_env)
    assert result.returncode == 3
    assert "no database" in result.stderr
    assert "pressluft migrate" in result.stderr


@pytest.mark.spec("DMN-7")
def test_config_shows_values_and_sources(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "PRESSLUFT_DB_READERS": "7"}
    result = run_cli("config", "--mode", "dev", "--port", "9999", env=env)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert set(lines) == {s.name for s in SETTINGS}
    assert "9999" in lines["port"] and "(option --port)" in lines["port"]
    assert "7" in lines["db_readers"] and "(env PRESSLUFT_DB_READERS)" in lines["db_readers"]
    assert "text" in lines["log_format"] and "(default)" in lines["log_format"]
    serve = run_cli("config", env={k: v for k, v in cli_env.items() if k != "PRESSLUFT_DATA_DIR"})
    assert "/var/lib/pressluft" in serve.stdout


@pytest.mark.spec("DMN-7")
@pytest.mark.parametrize(
    ("args", "env", "name"),
    [
        (("dev", "--port", "http"), {}, "port"),
        (("serve", "--db-synchronous", "OFF"), {}, "db_synchronous"),
        (("dev",), {"PRESSLUFT_LOG_LEVEL": "chatty"}, "log_level"),
        (("config", "--db-readers", "0"), {}, "db_readers"),
        (("config",), {"PRESSLUFT_WORKERS": "4_0"}, "workers"),  # int() read 40
        (("config",), {"PRESSLUFT_WORKERS": "\uff14"}, "workers"),  # a full-width 4
        (("config",), {"PRESSLUFT_WORKERS": "9" * 5000}, "workers"),  # int() raised
    ],
)
def test_invalid_settings_exit_2_naming_the_setting(
    args: tuple[str, ...], env: dict[str, str], name: str, cli_env: dict[str, str]
) -> None:
    result = run_cli(*args, env={**cli_env, **env})
    assert result.returncode == 2
    assert name in result.stderr


@pytest.mark.spec("STO-3")
def test_migrate_creates_and_is_idempotent(cli_env: dict[str, str], data_dir: Path) -> None:
    first = run_cli("migrate", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_event_log" in first.stdout
    assert (data_dir / "pressluft.db").is_file()
    assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
    second = run_cli("migrate", env=cli_env)
    assert second.returncode == 0
    assert "applied" not in second.stdout
    assert "up to date" in second.stdout


@pytest.mark.spec("EVT-6")
def test_events_verify_on_an_intact_log(cli_env: dict[str, str], data_dir: Path) -> None:
    seed_settings(data_dir, 5)
    result = run_cli("events", "verify", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "event log intact: 5 events" in result.stdout


@pytest.mark.spec("EVT-7")
def test_an_event_edited_with_the_sqlite3_cli_is_named(
    cli_env: dict[str, str], data_dir: Path
) -> None:
    seed_settings(data_dir, 5)
    _sqlite3(
        data_dir / "pressluft.db",
        "DROP TRIGGER events_are_immutable; "
        """UPDATE events SET data = '{"control_plane_domain":"evil.example.com"}' WHERE seq = 3;""",
    )
    result = run_cli("events", "verify", env=cli_env)
    assert result.returncode == 1
    assert "broken at seq 3" in result.stdout


@pytest.mark.spec("EVT-9")
def test_replay_verify_reports_a_corrupted_projection(
    cli_env: dict[str, str], data_dir: Path
) -> None:
    seed_settings(data_dir, 4)
    clean = run_cli("replay", "--verify", env=cli_env)
    assert clean.returncode == 0, clean.stderr
    assert "replay verified: 4 events" in clean.stdout
    _sqlite3(
        data_dir / "pressluft.db",
        "UPDATE settings SET control_plane_domain = 'tampered.example.com'",
    )
    dirty = run_cli("replay", "--verify", env=cli_env)
    assert dirty.returncode == 1
    assert "settings key=[1]" in dirty.stdout
    assert "tampered.example.com" in dirty.stdout
    assert "host3.example.com" in dirty.stdout


@pytest.mark.spec("EVT-10")
def test_replay_rebuilds_in_place(cli_env: dict[str, str], data_dir: Path) -> None:
    seed_settings(data_dir, 3)
    _sqlite3(data_dir / "pressluft.db", "DELETE FROM settings")
    result = run_cli("replay", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "rebuilt projections from 3 events" in result.stdout
    assert run_cli("replay", "--verify", env=cli_env).returncode == 0
    conn = open_sync(data_dir / "pressluft.db", "reader")
    assert conn.execute("SELECT control_plane_domain FROM settings").fetchone() == (
        "host2.example.com",
    )


@pytest.mark.spec("EVT-16")
def test_events_tail_and_follow(cli_env: dict[str, str], data_dir: Path) -> None:
    seed_settings(data_dir, 5)
    tail = run_cli("events", "tail", "-n", "2", env=cli_env)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 2
    assert "host3.example.com" in lines[0] and "host4.example.com" in lines[1]
    as_json = run_cli("events", "tail", "-n", "1", "--json", env=cli_env)
    event = msgspec.json.decode(as_json.stdout)
    assert event["seq"] == 5 and event["meta"]["actor"] == "test:seed"
    follower = subprocess.Popen(
        pressluft_argv("events", "tail", "-n", "0", "--follow"),
        env=cli_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        seed_settings(data_dir, 1)  # host0 again: appended as event 6
        assert follower.stdout is not None
        line = follower.stdout.readline()
        assert line.split()[0] == "6"
    finally:
        follower.terminate()
        follower.wait(timeout=10)


@pytest.mark.spec("DMN-9")
def test_doctor_reports_the_machine_and_data_dir(cli_env: dict[str, str], data_dir: Path) -> None:
    seed_settings(data_dir, 1)
    result = run_cli("doctor", env=cli_env)
    out = result.stdout
    for name in (
        "sqlite",
        "database integrity",
        "schema version",
        "event log",
        "disk space",
        "ansible-playbook",
        "playbooks",
        "ssh client",
        "docker engine",
    ):
        assert name in out, out
    assert "ansible-playbook" in out and "core" in out  # the version line
    assert result.returncode == 0, out


@pytest.mark.spec("DMN-9")
def test_doctor_checks_the_docker_engine_it_is_given(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # An engine the operator names is the one they mean to use: unreachable fails.
    absent = f"unix://{tmp_path}/no-docker.sock"
    env = {k: v for k, v in cli_env.items() if k != "DOCKER_HOST"}
    result = run_cli("doctor", "--docker-host", absent, env=env)
    line = next(x for x in result.stdout.splitlines() if "docker engine" in x)
    assert line.startswith("FAIL") and f"{absent} not reachable" in line, result.stdout
    assert result.returncode == 1
    refused = run_cli("doctor", "--docker-host", "docker.example:2375", env=env)
    assert refused.returncode == 2
    assert "--docker-host" in refused.stderr and "unix://" in refused.stderr


@pytest.mark.spec("DMN-9")
def test_doctor_fails_when_the_schema_is_behind(cli_env: dict[str, str], data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    migrate(open_sync(data_dir / "pressluft.db"), "2026-01-01T00:00:00.000000Z", target=1)
    result = run_cli("doctor", env=cli_env)
    assert result.returncode == 1
    assert "run `pressluft migrate`" in result.stdout


@pytest.mark.spec("API-1")
def test_openapi_check_passes(cli_env: dict[str, str]) -> None:
    result = run_cli("openapi", "check", env=cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "routes match" in result.stdout
