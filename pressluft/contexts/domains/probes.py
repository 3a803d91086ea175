"""The domain jobs' direct work on the node and the network (no playbook): DNS and
CAA preflight, HTTP-01 challenges answered through the node's nginx (the token
file written over SSH into the directory every server block serves at
`/.well-known/acme-challenge/`), ACME orders, and the check of the certificate
the node actually serves."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path

from pressluft.runners.acme import (
    Account,
    AcmeDirectory,
    AcmeError,
    Challenge,
    Dns01Solver,
    Issued,
    Served,
    TlsProbeFailed,
    ensure_account,
    issue,
    served_certificate,
)
from pressluft.runners.dns import (
    DNS01_PROVIDERS,
    Dns01CredentialsInvalid,
    DnsLookupFailed,
    Problem,
    credential_fields,
    dns01_provider,
    lookup,
    preflight,
)
from pressluft.runners.ssh import NodeAddress, SSHQueryError, run_as

__all__ = [
    "CHALLENGE_DIR",
    "DNS01_PROVIDERS",
    "Account",
    "AcmeDirectory",
    "AcmeError",
    "Dns01CredentialsInvalid",
    "Dns01Solver",
    "HttpSolver",
    "Issued",
    "Problem",
    "Served",
    "TlsProbeFailed",
    "check_dns",
    "credential_fields",
    "directory_of",
    "dns01_provider",
    "ensure_account",
    "issue",
    "served_certificate",
]

#: An ACME token (RFC 8555: base64url); anything else never becomes a path on the node.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Where the node's nginx serves HTTP-01 tokens from (node_nginx: the default server
#: and every domain's server block include the location).
CHALLENGE_DIR = "/var/lib/pressluft/acme-challenge"


def directory_of(url: str, ca_bundle: str) -> AcmeDirectory:
    return AcmeDirectory(url, Path(ca_bundle) if ca_bundle else None)


def _resolver(setting: str) -> tuple[str, int] | None:
    if not setting:
        return None
    host, _, port = setting.rpartition(":")
    return host.strip("[]"), int(port)


async def node_addresses(address: str | None, resolver: str) -> set[str]:
    """The node's public addresses: its address when it is an IP, else what its DNS
    name resolves to (A and AAAA)."""
    if not address:
        return set()
    try:
        return {str(ipaddress.ip_address(address))}
    except ValueError:
        pass
    where = _resolver(resolver)
    try:
        found = await lookup(address + ".", "A", where) + await lookup(address + ".", "AAAA", where)
    except DnsLookupFailed:
        return set()
    return set(found)


async def check_dns(
    hostnames: list[str], address: str | None, caa_identity: str, resolver: str
) -> list[Problem]:
    """Why a certificate for these names would not be issued for this node now."""
    expected = await node_addresses(address, resolver)
    if address and not expected:
        return [
            Problem(
                "dns_unavailable",
                f"the node's own address {address} does not resolve; set the node's"
                " public IP and retry",
            )
        ]
    problems: list[Problem] = []
    for hostname in hostnames:
        problems += await preflight(hostname, expected, {caa_identity}, _resolver(resolver))
    return problems


class HttpSolver:
    """HTTP-01 through the node's nginx: the key authorization written as root into
    `CHALLENGE_DIR/<token>` over SSH, removed afterwards."""

    kind = "http-01"

    def __init__(self, node: NodeAddress, log: Callable[[str], None]) -> None:
        self._node = node
        self._log = log

    async def present(self, challenge: Challenge) -> None:
        if not _TOKEN.fullmatch(challenge.token):  # it becomes a file name as root
            raise AcmeError("acme_rejected", f"the CA sent an unexpected token {challenge.token!r}")
        script = f'umask 022; mkdir -p {CHALLENGE_DIR} && cat > {CHALLENGE_DIR}/"$1"'
        try:
            await run_as(
                self._node,
                "root",
                ["sh", "-c", script, "sh", challenge.token],
                challenge.key_authorization,
            )
        except SSHQueryError as exc:
            raise AcmeError(
                "acme_challenge_failed", f"writing the HTTP-01 token on the node: {exc}"
            ) from exc

    async def cleanup(self, challenge: Challenge) -> None:
        try:
            await run_as(self._node, "root", ["rm", "-f", f"{CHALLENGE_DIR}/{challenge.token}"], "")
        except SSHQueryError as exc:
            self._log(f"removing the HTTP-01 token failed: {exc}")
