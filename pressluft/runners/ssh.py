"""Direct SSH queries to a node (asyncssh): one connection per query, never shared.

Host keys: the first contact pins whatever key the node presents (the caller
records it); every later connection accepts only the pinned key. A different
key is `HostKeyMismatch` — never retried, never silently re-pinned.
Every query has a hard deadline (10 s by default) covering connect, login and
the command.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from pressluft.runners.sshlib import asyncssh

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "SERVICES",
    "SUPPORTED_OS",
    "AuthFailed",
    "CommandResult",
    "Facts",
    "HostKeyMismatch",
    "NodeAddress",
    "Probe",
    "SSHQueryError",
    "Unreachable",
    "facts",
    "offered_fingerprint",
    "parse_os_release",
    "probe",
    "read_privileged",
    "run_as",
    "run_privileged",
    "unsupported_os",
    "wait_for_banner",
    "write_privileged",
]

DEFAULT_DEADLINE_SECONDS = 10.0

#: Prefer ed25519 host keys when pinning (OpenSSH's order otherwise).
_PREFERRED_HOST_KEY_ALGS = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
]

# One round trip: who we are, whether we may become root, whether Ansible can run
# (Pressluft runs modules with the system's /usr/bin/python3, never a user's), and
# which operating system it is (os-release, after a marker line).
_OS_RELEASE_MARK = "--- os-release ---"
_READINESS = (
    "id -u; "
    'if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi; '
    "if [ -x /usr/bin/python3 ]; then echo python=yes; else echo python=no; fi; "
    f"echo '{_OS_RELEASE_MARK}'; "
    "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null"
)

#: The operating systems Pressluft provisions: os-release `ID` → supported `VERSION_ID`s
#: (Debian 12 bookworm, Debian 13 trixie; the playbooks know no other).
SUPPORTED_OS = {"debian": ("12", "13")}
SUPPORTED_OS_TEXT = "Debian 12 (bookworm) or Debian 13 (trixie)"


def parse_os_release(text: str) -> dict[str, str]:
    """The fields of an os-release file (`KEY=value`, the value shell-quoted or bare)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key or key.startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("\"'")]
        fields[key] = " ".join(words)
    return fields


def unsupported_os(fields: dict[str, str]) -> str | None:
    """Why a node with these os-release fields is not supported; None when it is."""
    os_id = fields.get("ID", "")
    version = fields.get("VERSION_ID", "")
    if version in SUPPORTED_OS.get(os_id, ()):
        return None
    name = fields.get("PRETTY_NAME") or " ".join(p for p in (os_id, version) if p) or "unknown"
    if not fields:
        name = "unknown (no /etc/os-release)"
    return f"the node runs {name}; Pressluft supports {SUPPORTED_OS_TEXT}"


class SSHQueryError(Exception):
    """A query could not run; `reason` is the readiness reason code."""

    reason = "node_unreachable"


class Unreachable(SSHQueryError):
    reason = "node_unreachable"


class AuthFailed(SSHQueryError):
    reason = "ssh_auth_failed"


class HostKeyMismatch(SSHQueryError):
    reason = "host_key_mismatch"

    def __init__(self, message: str, offered: str | None = None) -> None:
        super().__init__(message)
        #: SHA256 fingerprint of the key the node presented instead, when it could be read.
        self.offered = offered


@dataclass(frozen=True)
class NodeAddress:
    host: str
    port: int
    user: str
    #: The node's private key (OpenSSH PEM), kept in memory only.
    private_key: bytes = field(repr=False)
    #: The pinned host key (an OpenSSH public key line), or None before first contact.
    host_key: str | None = None


@dataclass(frozen=True)
class Probe:
    """What a readiness query found."""

    host_key: str
    fingerprint: str
    reason_codes: list[str]
    #: The node's operating system (os-release PRETTY_NAME, or what is known of it).
    os: str = "unknown"
    #: Why its operating system is not supported (reason `os_unsupported`); None when it is.
    os_problem: str | None = None

    @property
    def ready(self) -> bool:
        return not self.reason_codes


async def wait_for_banner(host: str, port: int, within: float) -> bool:
    """Until the server at host:port sends an SSH banner (a fresh machine starts its
    sshd last); False when none came within `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    if (await reader.read(4)).startswith(b"SSH-"):
                        return True
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            pass
        await asyncio.sleep(0.5)
    return False


def _options(node: NodeAddress) -> dict[str, object]:
    client_key = asyncssh.import_private_key(node.private_key)
    options: dict[str, object] = {
        "port": node.port,
        "username": node.user,
        "client_keys": [client_key],
        "agent_path": None,
        "config": [],
        "password_auth": False,
        "kbdint_auth": False,
        "preferred_auth": "publickey",
        "gss_kex": False,
        "gss_auth": False,
        "connect_timeout": DEFAULT_DEADLINE_SECONDS,
    }
    if node.host_key is None:
        options["known_hosts"] = None  # first contact: the caller pins what it sees
        options["server_host_key_algs"] = _PREFERRED_HOST_KEY_ALGS
    else:
        pinned = asyncssh.import_public_key(node.host_key)
        options["known_hosts"] = ([pinned], [], [])
        algorithm = pinned.get_algorithm()
        # An RSA key signs with SHA-2 (OpenSSH ≥ 8.8 refuses the SHA-1 `ssh-rsa`).
        options["server_host_key_algs"] = (
            ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if algorithm == "ssh-rsa" else [algorithm]
        )
    return options


async def offered_fingerprint(node: NodeAddress, deadline: float = 5.0) -> str | None:
    """The SHA256 fingerprint of the host key the node presents now (no login; for
    telling an operator what a refused key was)."""
    try:
        async with asyncio.timeout(deadline):
            key = await asyncssh.get_server_host_key(
                node.host,
                node.port,
                server_host_key_algs=_PREFERRED_HOST_KEY_ALGS,
                config=[],
            )
    except (TimeoutError, OSError, asyncssh.Error):
        return None
    return None if key is None else str(key.get_fingerprint("sha256"))


@dataclass(frozen=True)
class CommandResult:
    """How a command on a node ended: its exit status and output."""

    exit_status: int
    stdout: str
    stderr: str


async def _query(
    node: NodeAddress, command: str, stdin: str | None, deadline: float
) -> tuple[asyncssh.SSHKey, str]:
    """One connection, one command: the server's host key and the command's stdout."""
    server_key, result = await _run(node, command, stdin, deadline)
    return server_key, result.stdout


async def _run(
    node: NodeAddress, command: str, stdin: str | None, deadline: float
) -> tuple[asyncssh.SSHKey, CommandResult]:
    """One connection, one command: the server's host key and how the command ended.
    Every failure becomes the typed error its readiness reason names."""
    try:
        async with asyncio.timeout(deadline):
            async with asyncssh.connect(node.host, **_options(node)) as conn:
                server_key = conn.get_server_host_key()
                if server_key is None:  # pragma: no cover - asyncssh always has one here
                    raise Unreachable("the node presented no host key")
                result = await conn.run(command, input=stdin, check=False)
    except TimeoutError as exc:
        raise Unreachable(f"no answer within {deadline:.0f} s") from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        offered = await offered_fingerprint(node)
        raise HostKeyMismatch(
            f"the node presented host key {offered or '(unreadable)'}, not the pinned one"
            " (a re-installed server, or someone in between)",
            offered,
        ) from exc
    except asyncssh.KeyExchangeFailed as exc:
        if node.host_key is not None:  # it offers no host key of the pinned type
            offered = await offered_fingerprint(node)
            raise HostKeyMismatch(f"no host key of the pinned type: {exc}", offered) from exc
        raise Unreachable(f"key exchange failed: {exc}") from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthFailed(f"the node refused Pressluft's key for user {node.user}") from exc
    except (OSError, asyncssh.Error) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    status = result.exit_status
    return server_key, CommandResult(
        exit_status=-1 if status is None else int(status),
        stdout=str(result.stdout or ""),
        stderr=str(result.stderr or ""),
    )


async def probe(node: NodeAddress, deadline: float = DEFAULT_DEADLINE_SECONDS) -> Probe:
    """Connect, verify (or learn) the host key, and check readiness."""
    server_key, stdout = await _query(node, _READINESS, None, deadline)
    head, _, release = stdout.partition(_OS_RELEASE_MARK)
    lines = head.split()
    reasons = []
    if "sudo=yes" not in lines:
        reasons.append("sudo_unavailable")
    if "python=yes" not in lines:
        reasons.append("runtime_missing")
    fields = parse_os_release(release)
    problem = unsupported_os(fields)
    if problem is not None:
        reasons.append("os_unsupported")
    return Probe(
        host_key=server_key.export_public_key("openssh").decode().strip(),
        fingerprint=server_key.get_fingerprint("sha256"),
        reason_codes=reasons,
        os=fields.get("PRETTY_NAME") or "unknown",
        os_problem=problem,
    )


#: The stack's services, as their init scripts / units are named on Debian; `php-fpm`
#: stands for the node's own, named by its PHP version (`php8.2-fpm` on Debian 12,
#: `php8.4-fpm` on 13): the version of the node's `php` (as the playbooks find it), else
#: the newest /etc/php/<version>/fpm.
SERVICES = ("nginx", "php-fpm", "mariadb", "redis-server", "fail2ban", "ssh")

# Read from stdin by `sh -s` (no quoting through the SSH command line). Prints
# key=value lines; service states come from systemd where it runs, else from the
# init scripts (containers).
_FACTS = r"""
. /etc/os-release 2>/dev/null
echo "os=${PRETTY_NAME:-unknown}"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
awk '/^MemTotal:/ {print "memory_kb=" $2}
     /^MemAvailable:/ {print "memory_available_kb=" $2}' /proc/meminfo
df -Pk / | awk 'NR == 2 {print "disk_kb=" $2; print "disk_available_kb=" $4}'
echo "uptime=$(cut -d. -f1 /proc/uptime)"
php=$(php -r 'echo PHP_MAJOR_VERSION.".".PHP_MINOR_VERSION;' 2>/dev/null)
[ -n "$php" ] || php=$(ls -d /etc/php/*/fpm 2>/dev/null | cut -d/ -f4 | sort -V | tail -n 1)
for s in SERVICES; do
  [ "$s" = php-fpm ] && [ -n "$php" ] && s="php$php-fpm"
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    state=$(systemctl is-active "$s" 2>/dev/null)
    [ "$state" = inactive ] && ! systemctl cat "$s" >/dev/null 2>&1 && state=absent
  elif [ -x "/etc/init.d/$s" ]; then
    if "/etc/init.d/$s" status >/dev/null 2>&1; then state=active; else state=inactive; fi
  else
    state=absent
  fi
  echo "service.$s=$state"
done
""".replace("SERVICES", " ".join(SERVICES))


@dataclass(frozen=True)
class Facts:
    """What a node is: OS, CPU, memory, disk, uptime and the stack's service states."""

    os: str
    kernel: str
    arch: str
    cpus: int
    memory_mb: int
    memory_available_mb: int
    disk_gb: float
    disk_available_gb: float
    uptime_seconds: int
    services: dict[str, str]


def _int(values: dict[str, str], key: str) -> int:
    try:
        return int(values.get(key, "0"))
    except ValueError:
        return 0


async def facts(node: NodeAddress, deadline: float = DEFAULT_DEADLINE_SECONDS) -> Facts:
    """One direct query (pinned host key required, like every later connection)."""
    if node.host_key is None:
        raise HostKeyMismatch("the node's host key is not pinned yet: check the node first")
    _, stdout = await _query(node, "sh -s", _FACTS, deadline)
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    services = {
        key.removeprefix("service."): value
        for key, value in values.items()
        if key.startswith("service.")
    }
    return Facts(
        os=values.get("os", "unknown"),
        kernel=values.get("kernel", "unknown"),
        arch=values.get("arch", "unknown"),
        cpus=_int(values, "cpus"),
        memory_mb=_int(values, "memory_kb") // 1024,
        memory_available_mb=_int(values, "memory_available_kb") // 1024,
        disk_gb=round(_int(values, "disk_kb") / 1024 / 1024, 1),
        disk_available_gb=round(_int(values, "disk_available_kb") / 1024 / 1024, 1),
        uptime_seconds=_int(values, "uptime"),
        services=services,
    )


async def run_as(
    node: NodeAddress,
    user: str,
    argv: list[str],
    stdin: str,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
) -> str:
    """Run `argv` on the node as `user` (runuser, through passwordless sudo unless the
    node's SSH user is root) with `stdin`; its stdout. Pinned host key required;
    arguments are shell-quoted (they never carry secrets: those go on stdin)."""
    if node.host_key is None:
        raise HostKeyMismatch("the node's host key is not pinned yet: check the node first")
    command = ["runuser", "-u", user, "--", *argv]
    if node.user != "root":
        command = ["sudo", "-n", *command]
    _, stdout = await _query(node, " ".join(shlex.quote(a) for a in command), stdin, deadline)
    return stdout


async def run_privileged(
    node: NodeAddress,
    argv: list[str],
    stdin: str | None = None,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
) -> CommandResult:
    """Run `argv` on the node as root (through passwordless sudo unless the node's SSH
    user is root) with `stdin`: how it ended. Pinned host key required; arguments are
    shell-quoted (secrets go on stdin)."""
    if node.host_key is None:
        raise HostKeyMismatch("the node's host key is not pinned yet: check the node first")
    command = argv if node.user == "root" else ["sudo", "-n", *argv]
    _, result = await _run(node, " ".join(shlex.quote(a) for a in command), stdin, deadline)
    return result


# -- streams (backups): no overall deadline, an idle one --------------------------------------

#: A stream that moves no byte for this long is cut (a hung node, a dead link).
STREAM_IDLE_SECONDS = 300.0
_CHUNK = 1 << 20


class StreamFailed(SSHQueryError):
    """The node's command of a stream exited non-zero (its last stderr lines say why)."""

    reason = "stream_failed"

    def __init__(self, message: str, exit_status: int, stderr: str) -> None:
        super().__init__(message)
        self.exit_status = exit_status
        self.stderr = stderr


def _privileged_command(node: NodeAddress, argv: list[str]) -> str:
    if node.host_key is None:
        raise HostKeyMismatch("the node's host key is not pinned yet: check the node first")
    command = argv if node.user == "root" else ["sudo", "-n", *argv]
    return " ".join(shlex.quote(a) for a in command)


async def _connect(node: NodeAddress) -> asyncssh.SSHClientConnection:
    """One connection for one stream; failures typed as a query's are."""
    try:
        async with asyncio.timeout(DEFAULT_DEADLINE_SECONDS):
            return await asyncssh.connect(node.host, **_options(node))
    except TimeoutError as exc:
        raise Unreachable(f"no answer within {DEFAULT_DEADLINE_SECONDS:.0f} s") from exc
    except asyncssh.HostKeyNotVerifiable as exc:
        offered = await offered_fingerprint(node)
        raise HostKeyMismatch(
            f"the node presented host key {offered or '(unreadable)'}, not the pinned one",
            offered,
        ) from exc
    except asyncssh.PermissionDenied as exc:
        raise AuthFailed(f"the node refused Pressluft's key for user {node.user}") from exc
    except (OSError, asyncssh.Error) as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc


def _ended(argv: list[str], status: int | None, stderr: str) -> None:
    if status != 0:
        last = " / ".join(stderr.strip().splitlines()[-3:]) or "no output"
        raise StreamFailed(
            f"{argv[0]} {argv[1] if len(argv) > 1 else ''} exited {status}: {last}",
            -1 if status is None else int(status),
            stderr,
        )


async def read_privileged(node: NodeAddress, argv: list[str]) -> AsyncIterator[bytes]:
    """Run `argv` as root on the node and yield its stdout in chunks as it comes
    (nothing staged). After the last chunk, StreamFailed when the command exited
    non-zero — a consumer that stores the stream must not keep a truncated one.
    Cut after `STREAM_IDLE_SECONDS` without a byte."""
    command = _privileged_command(node, argv)
    conn = await _connect(node)
    try:
        async with conn.create_process(command, encoding=None) as process:
            while True:
                try:
                    async with asyncio.timeout(STREAM_IDLE_SECONDS):
                        chunk = await process.stdout.read(_CHUNK)
                except TimeoutError as exc:
                    raise Unreachable(
                        f"the stream stalled for {STREAM_IDLE_SECONDS:.0f} s"
                    ) from exc
                if not chunk:
                    break
                yield chunk
            stderr = await process.stderr.read()
            await process.wait()
            _ended(argv, process.exit_status, stderr.decode(errors="replace"))
    except asyncssh.Error as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


async def write_privileged(
    node: NodeAddress, argv: list[str], chunks: AsyncIterator[bytes]
) -> CommandResult:
    """Run `argv` as root on the node with `chunks` as its stdin (flow-controlled);
    how it ended. StreamFailed when it exited non-zero; an error of `chunks` closes
    the channel without EOF (the command sees a broken stream) and is re-raised."""
    command = _privileged_command(node, argv)
    conn = await _connect(node)
    try:
        async with conn.create_process(command, encoding=None) as process:
            try:
                async for chunk in chunks:
                    process.stdin.write(chunk)
                    async with asyncio.timeout(STREAM_IDLE_SECONDS):
                        await process.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command ended early: its exit status and stderr say why
            except BaseException:
                process.close()  # no EOF: the command sees a broken stream
                raise
            else:
                process.stdin.write_eof()
            stdout, stderr = await asyncio.gather(process.stdout.read(), process.stderr.read())
            await process.wait()
            out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
            _ended(argv, process.exit_status, err)
            return CommandResult(exit_status=0, stdout=out, stderr=err)
    except TimeoutError as exc:
        raise Unreachable(f"the stream stalled for {STREAM_IDLE_SECONDS:.0f} s") from exc
    except asyncssh.Error as exc:
        raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()
