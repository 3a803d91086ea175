"""Direct SSH queries to a node (asyncssh): one connection per query, never shared.

Host keys: the first contact pins whatever key the node presents (the caller
records it); every later connection accepts only the pinned key. A different
key is `HostKeyMismatch` — never retried, never silently re-pinned.
Every query has a hard deadline (10 s by default) covering connect, login and
the command.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncssh

__all__ = [
    "DEFAULT_DEADLINE_SECONDS",
    "AuthFailed",
    "HostKeyMismatch",
    "NodeAddress",
    "Probe",
    "SSHQueryError",
    "Unreachable",
    "offered_fingerprint",
    "probe",
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
# (Pressluft runs modules with the system's /usr/bin/python3, never a user's).
_READINESS = (
    "id -u; "
    'if [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi; '
    "if [ -x /usr/bin/python3 ]; then echo python=yes; else echo python=no; fi"
)


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

    @property
    def ready(self) -> bool:
        return not self.reason_codes


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


async def probe(node: NodeAddress, deadline: float = DEFAULT_DEADLINE_SECONDS) -> Probe:
    """Connect, verify (or learn) the host key, and check readiness."""
    try:
        async with asyncio.timeout(deadline):
            async with asyncssh.connect(node.host, **_options(node)) as conn:
                server_key = conn.get_server_host_key()
                if server_key is None:  # pragma: no cover - asyncssh always has one here
                    raise Unreachable("the node presented no host key")
                result = await conn.run(_READINESS, check=False)
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
    lines = str(result.stdout or "").split()
    reasons = []
    if "sudo=yes" not in lines:
        reasons.append("sudo_unavailable")
    if "python=yes" not in lines:
        reasons.append("runtime_missing")
    return Probe(
        host_key=server_key.export_public_key("openssh").decode().strip(),
        fingerprint=server_key.get_fingerprint("sha256"),
        reason_codes=reasons,
    )
