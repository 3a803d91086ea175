"""Running a playbook against one node: ansible-runner in a worker thread, bridged
to the event loop.

Per run, inside the attempt's private 0700 work dir: the node's key (0600), a
known_hosts file holding only the pinned host key (`StrictHostKeyChecking=yes`),
a one-host inventory and the extra vars as JSON files (`-e @file`: nothing secret
on a command line), every string in either marked unsafe (never templated).
Playbooks must be on the allowlist and pass `--syntax-check` first. Every runner
event's output becomes log lines; task results and per-host stats make the
summary; the exit is classified into the reference's codes.
Cancellation and timeouts stop the run through ansible-runner's cancel callback
and by killing every process carrying the run's marker in its environment
(ansible's workers call setsid, so the runner's process-group kill misses them);
a crashed daemon's successor sweeps the jobs dir the same way at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import ansible_runner
import yaml

from pressluft.affinity import release_current_thread
from pressluft.runners.ssh import NodeAddress

__all__ = [
    "ANSIBLE_DIR",
    "PlaybookRun",
    "PlaybookSummary",
    "TaskResult",
    "classify",
    "profile_revision",
    "run_playbook",
    "unsafe_inventory",
]

#: How often a run checks for cancellation, and how long a stopped run may take to wind down.
_POLL_SECONDS = 0.5
_JOIN_SECONDS = 10.0

#: The interpreter modules run with on nodes (Debian/Ubuntu's system Python).
PYTHON = "/usr/bin/python3"

#: The package's ansible/ directory (playbooks, roles, ansible.cfg): a resource of
#: the installed package, never a path beside the source tree.
ANSIBLE_DIR = Path(str(resources.files("pressluft") / "ansible"))

_TASK_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass(frozen=True)
class TaskResult:
    task: str
    status: str
    changed: bool


@dataclass
class PlaybookSummary:
    """What a run did: exit, runner status, per-host stats, per-task results."""

    rc: int
    status: str
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    tasks: list[TaskResult] = field(default_factory=list)
    #: ssh refused the node's host key (it is not the pinned one).
    host_key_mismatch: bool = False
    #: What the play reported with `ansible.builtin.set_stats` (aggregate, not per host).
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(host.get("changed", 0) for host in self.stats.values())

    @property
    def failures(self) -> int:
        return sum(host.get("failures", 0) for host in self.stats.values())

    @property
    def unreachable(self) -> int:
        return sum(host.get("dark", 0) for host in self.stats.values())


def classify(summary: PlaybookSummary) -> str | None:
    """The reference's exit table, confirmed with the host stats; None on success."""
    if summary.status == "timeout":
        return "ANSIBLE_TIMEOUT"
    if summary.host_key_mismatch:
        return "HOST_KEY_MISMATCH"
    rc = summary.rc
    if rc == 0:
        return None
    if rc == 4 or (rc in (1, 2) and summary.unreachable):
        return "ANSIBLE_HOST_UNREACHABLE"
    if rc == 2 and summary.failures:
        return "ANSIBLE_HOST_FAILED"
    if rc in (1, 2):
        return "ANSIBLE_PLAY_ERROR"
    if rc == 5:
        return "ANSIBLE_SYNTAX_ERROR"
    if rc == 250:
        return "ANSIBLE_UNEXPECTED_ERROR"
    return "ANSIBLE_UNKNOWN_EXIT"


def _roles_of(playbook: Path) -> set[str]:
    """Names of the roles a playbook uses: its plays' `roles:` and the roles its
    tasks import or include (`name:` of import_role/include_role)."""
    try:
        plays = yaml.safe_load(playbook.read_text()) or []
    except yaml.YAMLError:
        return set()  # the syntax check refuses it next, with ansible's own message
    names: set[str] = set()
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        for entry in play.get("roles") or []:
            name = entry if isinstance(entry, str) else (entry or {}).get("role")
            if isinstance(name, str):
                names.add(name)
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            for task in play.get(section) or []:
                for module in ROLE_MODULES:
                    spec = (task or {}).get(module)
                    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
                        names.add(spec["name"])
    return names


ROLE_MODULES = (
    "import_role",
    "include_role",
    "ansible.builtin.import_role",
    "ansible.builtin.include_role",
)


def profile_revision(playbook: Path, roles_dir: Path) -> str:
    """A content hash of the playbook and every file of the roles it uses (the
    applied profile): a change to another playbook's roles changes nothing here."""
    digest = hashlib.sha256()
    files = [playbook]
    for name in sorted(_roles_of(playbook)):
        role = roles_dir / name
        if role.is_dir():
            files += sorted(p for p in role.rglob("*") if p.is_file())
    for path in files:
        digest.update(str(path.relative_to(playbook.parents[1])).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]


@dataclass(frozen=True)
class PlaybookRun:
    """One playbook against one node."""

    playbook: str
    node: NodeAddress
    extra_vars: dict[str, Any] = field(default_factory=dict, repr=False)
    correlation_id: str | None = None
    ansible_dir: Path = ANSIBLE_DIR
    allowlist: frozenset[str] = frozenset()
    #: Added to the run's environment (the job's process marker).
    environment: dict[str, str] = field(default_factory=dict)


_VAR_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Names Ansible gives a meaning of its own (connection settings, magic variables).
_RESERVED = frozenset(
    {"environment", "group_names", "groups", "hostvars", "inventory_hostname", "omit",
     "play_hosts", "playbook_dir", "role_name", "vars"}
)  # fmt: skip


def unsafe_yaml(values: dict[str, Any]) -> str:
    """Extra vars as one YAML mapping tagged `!unsafe` as a whole: Ansible never
    evaluates a string in it as a template (a site name like `{{ lookup('pipe', …) }}`
    stays text), and every string stays the string it was. Keys must be plain names
    and may not be Ansible's own (`ansible_*` would override the inventory — host,
    key, host-key checking).

    Not `!unsafe` on each string: ansible-core 2.19 resolves a tagged scalar as if
    it were unquoted, so `!unsafe "0012"` became the number 10, `"1.50"` 1.5 and
    `"yes"` true. Inside a tagged mapping the quoted strings keep their type and
    are still never templated."""
    for key in values:
        if not _VAR_NAME.fullmatch(key) or key.startswith("ansible_") or key in _RESERVED:
            raise ValueError(f"extra var {key!r} is not allowed")
    return "!unsafe " + _yaml_value(values) + "\n"


def unsafe_inventory(host_vars: dict[str, str | int]) -> dict[str, Any]:
    """Host vars for the JSON inventory, every string marked unsafe
    (`{"__ansible_unsafe": …}`) as the extra vars are: Ansible templates inventory
    values when it uses them, and these hold paths under the data dir and what a
    node's registration gave (a `{{ lookup('pipe', …) }}` in any of them would run
    on the control plane). Numbers stay numbers."""
    return {
        name: {"__ansible_unsafe": value} if isinstance(value, str) else value
        for name, value in host_vars.items()
    }


def _yaml_value(value: Any) -> str:
    if isinstance(value, str):
        return _yaml_string(value)
    if isinstance(value, float):
        return _yaml_float(value)
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("extra var mapping with a key that is not a string")
        # Explicit keys (`? k : v`): an implicit one may not be longer than 1024 chars.
        items = ", ".join(f"? {_yaml_string(k)} : {_yaml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    raise TypeError(f"extra var of type {type(value).__name__}")


def _yaml_float(number: float) -> str:
    """A float as YAML 1.1 reads one back (it wants a `.`; `1e+16` would be a string)."""
    if math.isnan(number):
        return ".nan"
    if math.isinf(number):
        return ".inf" if number > 0 else "-.inf"
    text = repr(number)
    if "e" in text and "." not in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


def _yaml_string(text: str) -> str:
    """`text` as a YAML double-quoted scalar in printable ASCII, everything else
    escaped (`\\uXXXX`, `\\UXXXXXXXX`). Not JSON: libyaml, which Ansible parses with,
    rejects the surrogate pairs JSON writes for characters beyond the BMP (an emoji
    in a site's title failed the run), and raw characters would not do either
    (YAML folds U+2028 and U+0085 as line breaks)."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError("extra var holds a lone surrogate")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _known_hosts_line(node: NodeAddress) -> str:
    assert node.host_key is not None
    keytype, key = node.host_key.split()[:2]
    host = node.host if node.port == 22 else f"[{node.host}]:{node.port}"
    return f"{host} {keytype} {key}\n"


def _write(path: Path, content: str | bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content.encode() if isinstance(content, str) else content)


def _prepare(run: PlaybookRun, work_dir: Path) -> tuple[Path, dict[str, Any], dict[str, str]]:
    """The runner's private data dir, inventory and environment."""
    base = work_dir / "ansible"
    base.mkdir(mode=0o700, exist_ok=True)
    key = base / "node_key"
    _write(key, run.node.private_key)
    known_hosts = base / "known_hosts"
    _write(known_hosts, _known_hosts_line(run.node))
    # Extra vars (secrets among them, later) go in a 0600 file, never on a command
    # line: ansible-runner's own `extravars` ends up in `ps` as `-e {json}`.
    _write(base / "extravars.yml", unsafe_yaml(run.extra_vars))
    ssh_args = [
        # Quoted for ssh too (it splits an option's value at spaces), then for the shell.
        "-o " + shlex.quote(f'UserKnownHostsFile="{known_hosts}"'),
        "-o GlobalKnownHostsFile=/dev/null",
        "-o StrictHostKeyChecking=yes",
        "-o IdentitiesOnly=yes",
        "-o IdentityAgent=none",
        "-F /dev/null",
    ]
    host_vars: dict[str, str | int] = {
        "ansible_host": run.node.host,
        "ansible_port": run.node.port,
        "ansible_user": run.node.user,
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": " ".join(ssh_args),
        # The system interpreter (readiness requires it): no discovery,
        # nothing from the login user's PATH (pyenv shims and the like).
        "ansible_python_interpreter": PYTHON,
    }
    inventory = {"target": {"hosts": {"node": unsafe_inventory(host_vars)}}}
    home = base / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANSIBLE_CONFIG": str(run.ansible_dir / "ansible.cfg"),
        # ansible-runner turns host-key checking OFF unless this is set (and ssh
        # takes the first -o it sees: ours in the inventory would come too late).
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_ROLES_PATH": str(run.ansible_dir / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PRESSLUFT_CORRELATION_ID": run.correlation_id or "",
        "PYTHONWARNINGS": _python_warnings(),
        **run.environment,
    }
    return base, inventory, env


#: ansible-core (2.19) imports cryptography's DSA types, deprecated since cryptography
#: 48, in one module: every ansible-playbook printed that warning, and it opened every
#: job's log twice. Ignored for that message from that module only.
_ANSIBLE_NOISE = "ignore:DSA is deprecated:Warning:ansible._internal._ssh._ssh_agent"


def _python_warnings() -> str:
    """The playbook processes' warning filters: ours, then the operator's (later wins)."""
    own = os.environ.get("PYTHONWARNINGS", "")
    return f"{_ANSIBLE_NOISE},{own}" if own else _ANSIBLE_NOISE


async def run_playbook(
    run: PlaybookRun,
    work_dir: Path,
    log: Callable[[str, str], None],
    cancelled: asyncio.Event,
    *,
    stray: Callable[[], object],
) -> PlaybookSummary:
    """Syntax-check, then run `run.playbook` against its node; returns the summary.

    Raises ValueError for a playbook off the allowlist. Cancelling the awaiting
    task (a job timeout) or setting `cancelled` stops the run: the runner is asked
    to stop and `stray()` (blocking, run in a thread) kills every process of the
    run — ansible's workers leave the playbook's process group, so the runner's
    group kill is not enough.
    """
    if run.playbook not in run.allowlist:
        raise ValueError(f"playbook {run.playbook!r} is not on the allowlist")
    playbook = run.ansible_dir / "playbooks" / run.playbook
    if not playbook.is_file():
        raise ValueError(f"playbook {run.playbook!r} does not exist")
    base, inventory, env = _prepare(run, work_dir)
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    watcher = asyncio.ensure_future(cancelled.wait())

    def cancel(done: asyncio.Future[Any]) -> None:  # ask the runner to stop, and make sure
        if done.cancelled():  # the run ended first: nothing to stop
            return
        stop.set()
        sweeps.append(loop.run_in_executor(None, stray))

    sweeps: list[asyncio.Future[object]] = []
    watcher.add_done_callback(cancel)

    def emit(text: str, stream: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under a stopped run
            loop.call_soon_threadsafe(log, text, stream)

    async def one(stage: str, cmdline: str | None) -> PlaybookSummary:
        summary = PlaybookSummary(rc=-1, status="starting")

        def on_event(event: dict[str, Any]) -> bool:
            stdout = event.get("stdout")
            if stdout:
                emit(stdout, "stdout")
            data = event.get("event_data") or {}
            if event.get("event") == "playbook_on_stats":
                summary.stats = _host_stats(data)
                reported = data.get("artifact_data")
                if isinstance(reported, dict):
                    summary.data = dict(reported)
            kind = _TASK_EVENTS.get(str(event.get("event")))
            if kind == "unreachable" and "Host key verification failed" in str(data.get("res")):
                summary.host_key_mismatch = True
            if kind is not None:
                changed = bool((data.get("res") or {}).get("changed"))
                summary.tasks.append(TaskResult(str(data.get("task", "")), kind, changed))
            return False  # kept here, not in ansible-runner's artifact files

        private = base / stage
        private.mkdir(mode=0o700, exist_ok=True)
        kwargs: dict[str, Any] = {
            "private_data_dir": str(private),
            "project_dir": str(run.ansible_dir),
            "playbook": str(playbook),
            "inventory": json.dumps(inventory),
            "envvars": env,
            "event_handler": on_event,
            "cancel_callback": stop.is_set,
            "quiet": True,
            "suppress_env_files": True,
            "rotate_artifacts": 1,
            # How often the runner asks `cancel_callback` (its default: 5 s).
            "settings": {"pexpect_timeout": _POLL_SECONDS},
        }
        extra = "-e " + shlex.quote("@" + str(base / "extravars.yml"))
        kwargs["cmdline"] = f"{extra} {cmdline}" if cmdline else extra
        done: asyncio.Future[Any] = loop.create_future()

        def work() -> None:
            # A thread of its own, released from the daemon's CPU pin: the
            # playbook's processes inherit its mask.
            release_current_thread()
            try:
                outcome: Any = ansible_runner.run(**kwargs)
            except BaseException as exc:  # reported on the loop
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, done, outcome)

        thread = threading.Thread(target=work, name=f"ansible-{stage}", daemon=True)
        thread.start()
        try:
            runner = await asyncio.shield(done)
        except asyncio.CancelledError:
            # A job timeout or shutdown: kill the playbook's group now (not at the
            # runner's next poll), then let the runner thread wind down.
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(loop.run_in_executor(None, stray))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(asyncio.to_thread(thread.join, _JOIN_SECONDS))
            raise
        if isinstance(runner, BaseException):
            raise runner
        summary.rc = int(runner.rc if runner.rc is not None else -1)
        summary.status = str(runner.status)
        return summary

    try:
        emit(f"syntax check: {run.playbook}", "system")
        checked = await one("preflight", "--syntax-check")
        if checked.status == "canceled" or stop.is_set():
            return checked
        if checked.rc != 0:  # whatever it says, the playbook did not parse
            checked.rc = 5
            return checked
        emit(f"running {run.playbook} on {run.node.user}@{run.node.host}:{run.node.port}", "system")
        return await one("run", None)
    finally:
        watcher.cancel()
        if sweeps:
            await asyncio.gather(*sweeps, return_exceptions=True)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if not future.done():
        future.set_result(outcome)


def _host_stats(stats: Any) -> dict[str, dict[str, int]]:
    """The stats event's counts (`{"ok": {host: n}, …}`) per host."""
    hosts: dict[str, dict[str, int]] = {}
    for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
        for host, count in ((stats or {}).get(key) or {}).items():
            hosts.setdefault(host, {})[key] = int(count)
    return hosts
