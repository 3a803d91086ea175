"""The systemd service of `pressluft serve`: the unit's text, the example
environment file, and installing or removing them (`pressluft service …`).

`render_unit` is a pure function of `UnitInputs`, so installing twice writes
nothing the second time. The unit runs the daemon as its own system user with
the sandbox systemd offers, minus what the daemon's work needs: it writes only
its data dir (`StateDirectory=`, or `ReadWritePaths=` outside /var/lib) and its
private /tmp; it starts `ansible-playbook` and `ssh` in their own process groups
(so `KillMode=mixed`: SIGTERM reaches the daemon alone, which stops its jobs and
requeues them; the rest of the cgroup is killed only after `TimeoutStopSec`);
it connects over IPv4/IPv6 (nodes, sites) and unix sockets (a Docker engine, an
opt-in group). `MemoryDenyWriteExecute=` is left off: ctypes/cffi closures
(argon2-cffi, libffi without static trampolines) need writable executable
memory, and a job would fail only when it first meets one.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pressluft.config import SETTINGS

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_ENV_FILE",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_UNIT_DIR",
    "DEFAULT_USER",
    "UNIT_NAME",
    "InstallError",
    "Report",
    "UnitInputs",
    "env_file_example",
    "find_executable",
    "install",
    "notify",
    "read_shutdown_timeout",
    "render_unit",
    "require_root",
    "systemd_running",
    "uninstall",
]

UNIT_NAME = "pressluft.service"
DEFAULT_USER = "pressluft"
DEFAULT_DATA_DIR = Path("/var/lib/pressluft")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_ENV_FILE = Path("/etc/pressluft/pressluft.env")
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
#: Directories the unit hides (`ProtectHome=yes`), and the service user cannot read anyway.
HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))
#: Directories the unit replaces with private ones (`PrivateTmp=yes`).
TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 (named, not used)
NOLOGIN = "/usr/sbin/nologin"
_SHUTDOWN_TIMEOUT = next(s for s in SETTINGS if s.name == "shutdown_timeout_seconds")
DEFAULT_SHUTDOWN_TIMEOUT = int(_SHUTDOWN_TIMEOUT.default)
#: Beyond twice the drain (requests, then the services): job processes get SIGTERM and
#: 3 s before SIGKILL, the log writer 2 s, the database its last commit and close.
STOP_MARGIN_SECONDS = 30


class InstallError(Exception):
    """The service cannot be installed (or removed) as asked; `code` is the exit code."""

    def __init__(self, message: str, code: int = 3) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class UnitInputs:
    """Everything the unit's text depends on."""

    executable: Path
    user: str = DEFAULT_USER
    data_dir: Path = DEFAULT_DATA_DIR
    env_file: Path = DEFAULT_ENV_FILE
    shutdown_timeout_seconds: int = DEFAULT_SHUTDOWN_TIMEOUT
    #: A group whose members may use the Docker socket (lab nodes); None: no Docker.
    docker_group: str | None = None


def _state_directory(data_dir: Path) -> str | None:
    """The `StateDirectory=` name of a data dir under /var/lib, else None."""
    try:
        relative = data_dir.relative_to("/var/lib")
    except ValueError:
        return None
    return str(relative) if relative.parts else None


def _quote(value: str) -> str:
    """A value for a unit's command line or path setting (quoted when it has spaces)."""
    if any(c.isspace() or c in "\"'\\" for c in value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return value


def render_unit(inputs: UnitInputs) -> str:
    """The text of `pressluft.service` for these inputs."""
    data_dir = str(inputs.data_dir)
    state = _state_directory(inputs.data_dir)
    stop_timeout = 2 * inputs.shutdown_timeout_seconds + STOP_MARGIN_SECONDS
    exec_start = " ".join(
        _quote(part).replace("%", "%%")
        for part in (str(inputs.executable), "serve", "--data-dir", data_dir)
    )
    lines = [
        "# Written by `pressluft service install`; running it again rewrites this file.",
        "# Local changes belong in a drop-in (systemctl edit pressluft), settings in",
        f"# {inputs.env_file}.",
        "[Unit]",
        "Description=Pressluft, the WordPress hosting control plane",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "# READY=1 once it listens: migrations done, services started.",
        "Type=notify",
        "# Migrations of a large database run before it; they are not cut short.",
        "TimeoutStartSec=15min",
        f"User={inputs.user}",
        f"Group={inputs.user}",
        f"ExecStart={exec_start}",
        f"EnvironmentFile=-{_quote(str(inputs.env_file))}",
        "Environment=PYTHONUNBUFFERED=1",
    ]
    if inputs.docker_group is not None:
        lines += [
            "# Lab nodes: the Docker engine's socket, through its group (root-equivalent).",
            f"SupplementaryGroups={inputs.docker_group}",
            f"Environment=PRESSLUFT_DOCKER_HOST={DEFAULT_DOCKER_SOCKET}",
        ]
    lines += [
        "UMask=0077",
        "Restart=on-failure",
        "RestartSec=5s",
        "# Exit 2 is a bad configuration: restarting does not mend it.",
        "RestartPreventExitStatus=2",
        "# SIGTERM to the daemon alone: it drains requests, stops its jobs' process groups",
        "# and requeues the jobs; whatever is left is killed after TimeoutStopSec.",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"# 2 x shutdown_timeout_seconds ({inputs.shutdown_timeout_seconds} s) "
        f"+ {STOP_MARGIN_SECONDS} s; install again after changing it.",
        f"TimeoutStopSec={stop_timeout}s",
        "",
        "# Sandbox: the data dir and a private /tmp are the only places it writes.",
    ]
    if state is not None:
        lines += [f"StateDirectory={state}", "StateDirectoryMode=0700"]
    else:
        lines += [f"ReadWritePaths={_quote(data_dir)}"]
    lines += [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
        "KeyringMode=private",
        "# Nodes and sites (IPv4/IPv6), the Docker socket (unix), address lookups (netlink).",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def env_file_example(inputs: UnitInputs) -> str:
    """The commented example environment file: every setting but the data dir."""
    lines = [
        "# Settings of the pressluft service, read by systemd (KEY=value, one a line).",
        "# Uncomment and change what you need, then: systemctl restart pressluft",
        "# `pressluft config` explains every setting. The data dir is the unit's",
        f"# ({inputs.data_dir}): change it with `pressluft service install --data-dir`.",
        "",
    ]
    for setting in SETTINGS:
        if setting.name == "data_dir":
            continue
        lines.append(f"# {setting.help}")
        if setting.name == "shutdown_timeout_seconds":
            lines.append("# (The unit's TimeoutStopSec follows it: install again after a change.)")
        if setting.name == "docker_host":
            lines.append(
                "# (Needs `pressluft service install --docker-group docker`, which sets it.)"
            )
        lines.append(f"#{setting.env}={setting.default}")
        lines.append("")
    return "\n".join(lines)


def read_shutdown_timeout(env_file: Path) -> int:
    """`PRESSLUFT_SHUTDOWN_TIMEOUT_SECONDS` from the environment file, else the default
    (PermissionError when the file cannot be read)."""
    setting = _SHUTDOWN_TIMEOUT
    value = setting.default
    try:
        text = env_file.read_text()
    except FileNotFoundError:
        text = ""
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if sep and key.strip() == setting.env:
            value = raw.strip().strip("\"'")
    try:
        return int(setting.parse(value))
    except ValueError as exc:
        raise InstallError(f"{env_file}: {setting.env}: {exc}", code=2) from None


def find_executable() -> Path:
    """The installed `pressluft` command: next to this interpreter (a virtualenv,
    pipx's venv), else the command this process was started as, else on PATH.
    Not resolved through symlinks: a venv's script names its own interpreter."""
    candidates = [Path(sys.executable).parent / "pressluft"]
    if Path(sys.argv[0]).name == "pressluft":
        candidates.append(Path(sys.argv[0]))
    on_path = shutil.which("pressluft")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Path(os.path.abspath(candidate))
    raise InstallError(
        "cannot find the `pressluft` command (looked next to "
        f"{sys.executable} and on PATH): install Pressluft into a virtualenv, "
        "e.g. python3 -m venv /opt/pressluft && /opt/pressluft/bin/pip install pressluft-*.whl"
    )


def _interpreter(executable: Path) -> Path | None:
    """The interpreter a console script's `#!` line names, if it has one."""
    try:
        with executable.open("rb") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    return Path(words[0]) if words else None


def _check_reachable(executable: Path) -> None:
    """Refuse an executable the sandboxed service could not start."""
    real = executable.resolve()
    for where in (executable, real):
        for home in HOME_DIRS:
            if where == home or home in where.parents:
                raise InstallError(
                    f"the pressluft command {executable} lives in {home}, which the service "
                    "cannot reach (ProtectHome=, and its user may not read it): install "
                    "Pressluft outside home directories, e.g. a virtualenv in /opt/pressluft "
                    "or PIPX_HOME=/opt/pipx PIPX_BIN_DIR=/usr/local/bin pipx install …"
                )


def _hidden_from_service(executable: Path, data_dir: Path) -> list[str]:
    """What the sandbox will hide although the service needs it: the Python the
    command runs on (a pyenv or per-user build in a home directory), or a data dir
    in a home directory or a temporary one. The service then fails at its start,
    so this is said at install time."""
    warnings = []
    interpreter = _interpreter(executable)
    if interpreter is not None:
        for where in (interpreter, interpreter.resolve()):
            home = _inside(where, HOME_DIRS)
            if home is not None:
                warnings.append(
                    f"warning: {executable} runs on {where}, in {home}, which the service "
                    "cannot reach (ProtectHome=): make its virtualenv from a system Python "
                    "(e.g. /usr/bin/python3 -m venv /opt/pressluft)"
                )
                break
    place = _inside(data_dir, (*HOME_DIRS, *TMP_DIRS))
    if place is not None:
        warnings.append(
            f"warning: the data dir {data_dir} lies in {place}, which the service does not "
            "see (ProtectHome=, PrivateTmp=): choose one elsewhere, e.g. /var/lib/pressluft"
        )
    return warnings


def _inside(path: Path, places: tuple[Path, ...]) -> Path | None:
    return next((p for p in places if path == p or p in path.parents), None)


def notify(state: str) -> bool:
    """Tell the service manager the daemon's state (sd_notify(3): `READY=1`,
    `STOPPING=1`) when it started us with a `NOTIFY_SOCKET`; False otherwise."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    elif not address.startswith("/"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError:
            return False
    return True


def systemd_running() -> bool:
    """Whether systemd manages this machine (sd_booted(3))."""
    return Path("/run/systemd/system").is_dir()


@dataclass
class Report:
    """What an install or uninstall did, one line per thing."""

    lines: list[str] = field(default_factory=list)
    changed: bool = False

    def add(self, line: str, changed: bool = False) -> None:
        self.lines.append(line)
        self.changed = self.changed or changed


def require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise InstallError(
            f"`pressluft service {action}` changes the system (a system user, "
            f"{DEFAULT_UNIT_DIR}, /etc/pressluft): run it as root, e.g. "
            f'sudo "$(command -v pressluft)" service {action}'
            + (" (or --print to see the unit)" if action == "install" else "")
        )


def _systemctl(*args: str) -> str:
    result = subprocess.run(
        ["systemctl", *args], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise InstallError(
            f"systemctl {' '.join(args)} failed (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout.strip()


def _unit_state() -> tuple[bool, bool]:
    """Whether systemd still runs an older copy of the unit file (an install without
    `--now` wrote it), and whether the service is active."""
    shown = _systemctl("show", "-p", "NeedDaemonReload", "-p", "ActiveState", UNIT_NAME)
    values = dict(line.partition("=")[::2] for line in shown.splitlines())
    return values.get("NeedDaemonReload") == "yes", values.get("ActiveState") == "active"


def _ensure_user(user: str, home: Path, report: Report) -> tuple[int, int]:
    """The service user (created as a system user without login when missing)."""
    if user == "root":
        raise InstallError("the service must not run as root: choose another --user", code=2)
    try:
        entry = pwd.getpwnam(user)
        report.add(f"user {user}: exists (uid {entry.pw_uid})")
    except KeyError:
        useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if useradd is None:
            raise InstallError("useradd is missing (Debian: the passwd package)") from None
        subprocess.run(
            [useradd, "--system", "--user-group", "--home-dir", str(home), "--no-create-home",
             "--shell", NOLOGIN, "--comment", "Pressluft control plane", user],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        entry = pwd.getpwnam(user)
        report.add(
            f"user {user}: created (system user, uid {entry.pw_uid}, home {home}, no login shell)",
            changed=True,
        )
    if user == "root" or entry.pw_uid == 0:
        raise InstallError(f"the user {user} is uid 0: the service must not run as root", code=2)
    return entry.pw_uid, entry.pw_gid


def _write_if_changed(path: Path, text: str, mode: int, what: str, report: Report) -> bool:
    """Write `text` atomically unless the file holds it already; True when written."""
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = None
    if current == text:
        if (path.stat().st_mode & 0o7777) != mode:
            os.chmod(path, mode)
            report.add(f"{what} {path}: unchanged (mode set to {mode:04o})", changed=True)
        else:
            report.add(f"{what} {path}: unchanged")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(partial, mode)
    partial.replace(path)
    report.add(f"{what} {path}: {'written' if current is None else 'updated'}", changed=True)
    return True


def install(inputs: UnitInputs, unit_dir: Path = DEFAULT_UNIT_DIR, now: bool = False) -> Report:
    """Install (or bring up to date) the service; running it again changes nothing."""
    require_root("install")
    if now and not systemd_running():
        raise InstallError(
            "systemd is not running on this machine (no /run/systemd/system): "
            "--now cannot start the service; install without --now"
        )
    _check_reachable(inputs.executable)
    if inputs.docker_group is not None:
        try:
            grp.getgrnam(inputs.docker_group)
        except KeyError:
            raise InstallError(
                f"no group {inputs.docker_group!r} (the Docker engine's socket group; "
                "install docker.io first or leave out --docker-group)",
                code=2,
            ) from None
    report = Report()
    for warning in _hidden_from_service(inputs.executable, inputs.data_dir):
        report.add(warning)
    uid, gid = _ensure_user(inputs.user, inputs.data_dir, report)

    if inputs.data_dir.exists():
        owner = inputs.data_dir.stat().st_uid
        note = "" if owner == uid else f" (owned by uid {owner}, the service runs as {uid})"
        report.add(f"data dir {inputs.data_dir}: exists{note}")
    else:
        inputs.data_dir.mkdir(mode=0o700, parents=True)
        os.chown(inputs.data_dir, uid, gid)
        report.add(f"data dir {inputs.data_dir}: created (0700, {inputs.user})", changed=True)

    if inputs.env_file.exists():
        report.add(f"environment file {inputs.env_file}: kept (exists)")
    else:
        inputs.env_file.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(inputs.env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        with os.fdopen(fd, "w") as handle:
            handle.write(env_file_example(inputs))
        os.chown(inputs.env_file, 0, gid)
        report.add(
            f"environment file {inputs.env_file}: written (commented example, 0640)", changed=True
        )

    unit = unit_dir / UNIT_NAME
    existed = unit.exists()
    unit_changed = _write_if_changed(unit, render_unit(inputs), 0o644, "unit", report)

    if now:
        # A unit written earlier without --now is unchanged now, yet not applied.
        stale, was_active = _unit_state() if existed else (False, False)
        if unit_changed or stale:
            _systemctl("daemon-reload")
            report.add("systemctl daemon-reload", changed=stale)
        _systemctl("enable", "--now", UNIT_NAME)
        report.add(f"systemctl enable --now {UNIT_NAME}", changed=existed and not was_active)
        if existed and was_active and (unit_changed or stale):
            _systemctl("try-restart", UNIT_NAME)
            report.add(f"systemctl try-restart {UNIT_NAME} (the unit changed)", changed=True)
    elif unit_changed:
        report.add(
            "not applied yet: install again with --now (or systemctl daemon-reload, then "
            f"systemctl enable --now {UNIT_NAME}, or restart it when it runs)"
        )
    return report


def uninstall(unit_dir: Path = DEFAULT_UNIT_DIR) -> Report:
    """Stop, disable and remove the unit; the data dir, environment file and user stay."""
    require_root("uninstall")
    report = Report()
    unit = unit_dir / UNIT_NAME
    if not unit.exists():
        report.add(f"unit {unit}: not installed, nothing to remove")
        return report
    if systemd_running():
        _systemctl("disable", "--now", UNIT_NAME)
        report.add(f"systemctl disable --now {UNIT_NAME}", changed=True)
    else:
        report.add("systemd is not running: nothing to stop")
    unit.unlink()
    report.add(f"unit {unit}: removed", changed=True)
    if systemd_running():
        _systemctl("daemon-reload")
        report.add("systemctl daemon-reload")
    report.add(
        "kept: the data dir, the environment file and the service user "
        "(remove them by hand when you no longer need the data)"
    )
    return report
