"""DNS for certificates: resolver queries, the pre-issuance checks (does a name point to
this server, may our CA issue for it), and the DNS-01 providers that publish the
challenge's TXT record.

- `lookup()` asks the system's resolver or a given server:port (A, AAAA, CAA, TXT);
  a name without such records is `[]`, a resolver that fails is `DnsLookupFailed`.
- `preflight()` returns the operator-facing `Problem`s that would make issuance fail:
  A/AAAA records pointing elsewhere or missing, CAA records (RFC 8659, climbing to the
  closest ancestor with a CAA RRset) that do not allow our CA, DNS that does not answer.
- DNS-01 providers (`Dns01Provider`): `Rfc2136Provider` (dynamic update signed with
  TSIG, RFC 2136/8945, e.g. BIND, Knot, PowerDNS) and `CloudflareProvider` (API v4).
  `DNS01_PROVIDERS` / `dns01_provider()` build one from the credentials the settings
  capability keeps sealed in the vault (one msgspec Struct per provider, strict).

dnspython does the DNS; httpx talks to Cloudflare. Nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.tsig
import dns.tsigkeyring
import dns.update
import httpx
import msgspec

__all__ = [
    "DNS01_PROVIDERS",
    "CloudflareCredentials",
    "CloudflareProvider",
    "Dns01CredentialsInvalid",
    "Dns01Error",
    "Dns01Provider",
    "DnsLookupFailed",
    "Problem",
    "Resolver",
    "Rfc2136Credentials",
    "Rfc2136Provider",
    "credential_fields",
    "dns01_provider",
    "lookup",
    "preflight",
    "wait_for_txt",
]

#: A DNS server to ask: (address, port); None means the system's resolver.
Resolver = tuple[str, int] | None

RecordType = Literal["A", "AAAA", "CAA", "TXT", "SOA", "NS"]

#: Seconds one lookup may take in all (retries included).
LOOKUP_SECONDS = 5.0


class DnsLookupFailed(Exception):
    """The resolver did not give an answer (timeout, SERVFAIL, refused, unreachable)."""


class Dns01Error(Exception):
    """A DNS-01 provider could not publish, remove or see a TXT record."""


class Dns01CredentialsInvalid(ValueError):
    """Credentials that do not fit the provider (the message names the field)."""


# -- lookups ----------------------------------------------------------------------


def _resolver(server: Resolver, lifetime: float) -> dns.asyncresolver.Resolver:
    if server is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [server[0]]
        resolver.port = server[1]
    resolver.lifetime = lifetime
    resolver.timeout = min(2.0, lifetime)
    return resolver


def _where(server: Resolver) -> str:
    return "the system resolver" if server is None else f"{server[0]}:{server[1]}"


async def _answer(
    name: str, rtype: RecordType, server: Resolver, lifetime: float = LOOKUP_SECONDS
) -> dns.resolver.Answer | None:
    """The answer for `name`/`rtype`; None for NXDOMAIN or no such records."""
    try:
        return await _resolver(server, lifetime).resolve(
            name, rtype, raise_on_no_answer=True, search=False
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.resolver.LifetimeTimeout as exc:
        raise DnsLookupFailed(
            f"{rtype} lookup of {name} at {_where(server)} timed out after {lifetime:g} s"
        ) from exc
    except dns.resolver.NoNameservers as exc:
        # Every server answered SERVFAIL/REFUSED or could not be reached.
        detail = "; ".join(
            f"{ns} {dns.rcode.to_text(r.rcode()) if r is not None else err}"
            for ns, _tcp, _port, err, r in exc.kwargs.get("errors", [])[:3]
        )
        raise DnsLookupFailed(
            f"{rtype} lookup of {name} at {_where(server)} failed"
            + (f" ({detail})" if detail else " (SERVFAIL)")
        ) from exc
    except dns.exception.DNSException as exc:
        raise DnsLookupFailed(f"{rtype} lookup of {name} at {_where(server)}: {exc}") from exc


def _text(rdata: Any) -> str:
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return str(rdata.to_text())


async def lookup(
    name: str, rtype: RecordType, resolver: Resolver = None, *, seconds: float = LOOKUP_SECONDS
) -> list[str]:
    """The records of `name`: addresses for A/AAAA, the joined strings of each TXT,
    `0 issue "letsencrypt.org"` for CAA. [] when the name or the type does not exist;
    `DnsLookupFailed` when the resolver fails or does not answer within `seconds`."""
    answer = await _answer(name, rtype, resolver, seconds)
    if answer is None:
        return []
    return [_text(rdata) for rdata in answer]


# -- preflight ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A reason issuance would fail, for the operator: `code` is one of
    `dns_missing`, `dns_mismatch`, `caa_forbids`, `dns_unavailable`."""

    code: str
    message: str


@dataclass(frozen=True)
class _Caa:
    flags: int
    tag: str
    value: str


async def _caa_decider(
    hostname: str, resolver: Resolver, seconds: float
) -> tuple[str, list[_Caa]] | None:
    """RFC 8659 §3: the CAA RRset of the closest name (itself, then its ancestors)
    that has one, with that name; None when no name up the tree has CAA records."""
    labels = hostname.rstrip(".").split(".")
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        answer = await _answer(candidate + ".", "CAA", resolver, seconds)
        if answer is None:
            continue
        records = [
            _Caa(int(r.flags), r.tag.decode("ascii", "replace").lower(), r.value.decode())
            for r in answer
        ]
        if records:
            return candidate, records
    return None


def _issuer_domain(value: str) -> str:
    """The issuer domain of an `issue`/`issuewild` value (before any `;` parameters)."""
    return value.split(";", 1)[0].strip().lower()


def _caa_problem(
    hostname: str, decider: tuple[str, list[_Caa]], ca_identities: set[str]
) -> Problem | None:
    domain, records = decider
    wildcard = hostname.startswith("*.")
    for record in records:
        if record.flags & 0x80 and record.tag not in ("issue", "issuewild", "iodef"):
            return Problem(
                "caa_forbids",
                f"CAA records for {domain} carry a critical `{record.tag}` property no CA "
                f"may ignore; remove it and retry",
            )
    tag = "issue"
    if wildcard and any(r.tag == "issuewild" for r in records):
        tag = "issuewild"
    relevant = [r for r in records if r.tag == tag]
    if not relevant:
        return None  # RFC 8659 §4.2: no issue property -> no restriction
    allowed = {_issuer_domain(r.value) for r in relevant} - {""}
    wanted = {identity.lower() for identity in ca_identities}
    if allowed & wanted:
        return None
    ours = sorted(wanted)[0]
    who = "only " + ", ".join(sorted(allowed)) if allowed else "no CA"
    return Problem(
        "caa_forbids",
        f'CAA records for {domain} allow {who}; add `0 {tag} "{ours}"` and retry',
    )


def _address_problems(
    hostname: str, a: list[str], aaaa: list[str], expected: set[str]
) -> list[Problem]:
    wanted = {ipaddress.ip_address(addr) for addr in expected}
    v4 = sorted(str(x) for x in wanted if x.version == 4)
    v6 = sorted(str(x) for x in wanted if x.version == 6)
    shown = ", ".join(v4 or v6)
    problems: list[Problem] = []
    foreign_a = [x for x in a if ipaddress.ip_address(x) not in wanted]
    foreign_aaaa = [x for x in aaaa if ipaddress.ip_address(x) not in wanted]
    if foreign_a:
        problems.append(
            Problem(
                "dns_mismatch",
                f"DNS for {hostname} does not point to this server ({shown}); "
                "create an A record and retry",
            )
        )
    if foreign_aaaa:
        if v6:
            message = (
                f"DNS for {hostname} does not point to this server ({', '.join(v6)}); "
                "create an AAAA record and retry"
            )
        else:
            message = (
                f"DNS for {hostname} has AAAA records that do not point to this server "
                f"({shown}), which has no IPv6 address; remove them and retry"
            )
        problems.append(Problem("dns_mismatch", message))
    if not a and not (v6 and aaaa):
        # No A record, and no AAAA record that reaches a node with IPv6.
        problems.append(
            Problem(
                "dns_missing",
                f"DNS for {hostname} has no A record; create an A record pointing to "
                f"this server ({shown}) and retry",
            )
        )
    return problems


async def preflight(
    hostname: str,
    expected_addresses: set[str],
    ca_identities: set[str],
    resolver: Resolver = None,
    *,
    seconds: float = LOOKUP_SECONDS,
) -> list[Problem]:
    """Why a certificate for `hostname` would not be issued now ([] when nothing is wrong).

    `expected_addresses` are the node's public IPv4/IPv6 addresses: every A and AAAA
    record of the name must be one of them (a CA may validate against any), and
    there must be an A record (or an AAAA record when the node has IPv6). An empty
    set skips the address check (DNS-01 needs none). `ca_identities` are the CA's
    CAA issuer domains (e.g. `letsencrypt.org`); an empty set skips the CAA check.
    """
    hostname = hostname.rstrip(".").lower()
    problems: list[Problem] = []
    try:
        if expected_addresses:
            a = await lookup(hostname + ".", "A", resolver, seconds=seconds)
            aaaa = await lookup(hostname + ".", "AAAA", resolver, seconds=seconds)
            problems += _address_problems(hostname, a, aaaa, expected_addresses)
        if ca_identities:
            base = hostname[2:] if hostname.startswith("*.") else hostname
            decider = await _caa_decider(base, resolver, seconds)
            if decider is not None:
                caa = _caa_problem(hostname, decider, ca_identities)
                if caa is not None:
                    problems.append(caa)
    except DnsLookupFailed as exc:
        problems.append(
            Problem(
                "dns_unavailable",
                f"DNS for {hostname} could not be checked: {exc}; make sure its name "
                "servers answer and retry",
            )
        )
    return problems


# -- DNS-01 providers --------------------------------------------------------------------


class Dns01Provider(Protocol):
    """Publishes and removes the `_acme-challenge` TXT records of DNS-01.

    `set_txt` adds one value (two challenges of one name — `example.com` and
    `*.example.com` — need two values at once); `remove_txt` removes only that value.
    `propagation` waits (at most `seconds`) until the value is visible at
    the provider's authoritative servers, raising `Dns01Error` when it is not.
    """

    name: str

    async def set_txt(self, fqdn: str, value: str) -> None: ...

    async def remove_txt(self, fqdn: str, value: str) -> None: ...

    async def propagation(self, fqdn: str, value: str, seconds: float = 120.0) -> None: ...


async def wait_for_txt(
    fqdn: str,
    value: str,
    resolvers: list[Resolver],
    seconds: float = 120.0,
    interval: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll every resolver until each one serves `value` among the TXT records of
    `fqdn`; `Dns01Error` after `seconds` (with the last failure)."""
    deadline = clock() + seconds
    pending = list(resolvers)
    last = "no answer yet"
    while True:
        still: list[Resolver] = []
        for server in pending:
            try:
                if value in await lookup(fqdn, "TXT", server):
                    continue
                last = f"{_where(server)} does not serve it yet"
            except DnsLookupFailed as exc:
                last = str(exc)
            still.append(server)
        pending = still
        if not pending:
            return
        if clock() >= deadline:
            raise Dns01Error(f"the TXT record {fqdn} was not visible within {seconds:g} s ({last})")
        await asyncio.sleep(interval)


def _absolute(fqdn: str) -> dns.name.Name:
    return dns.name.from_text(fqdn.rstrip(".") + ".")


TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]


class Rfc2136Credentials(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An RFC 2136 server and its TSIG key (all strings, as the settings store them)."""

    server: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    tsig_key_name: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    #: The key's secret, base64 (as in BIND's `key { secret "…"; }`).
    tsig_secret: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    port: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,5}$")] = "53"
    tsig_algorithm: TsigAlgorithm = "hmac-sha256"
    #: The zone to update; found by an SOA lookup at `server` when not given.
    zone: Annotated[str, msgspec.Meta(min_length=1, max_length=253)] | None = None


class Rfc2136Provider:
    """DNS-01 by RFC 2136 dynamic updates signed with TSIG, sent over TCP to `server`."""

    name = "rfc2136"

    def __init__(
        self,
        server: str,
        port: int,
        tsig_key_name: str,
        tsig_secret_b64: str,
        tsig_algorithm: str = "hmac-sha256",
        zone: str | None = None,
        *,
        timeout: float = 10.0,
        ttl: int = 60,
    ) -> None:
        self.server = server
        self.port = port
        self._key_name = dns.name.from_text(tsig_key_name)
        try:
            if not base64.b64decode(tsig_secret_b64, validate=True):
                raise ValueError("empty")
        except (binascii.Error, ValueError) as exc:
            raise Dns01CredentialsInvalid("tsig_secret: not a base64 TSIG secret") from exc
        self._keyring = dns.tsigkeyring.from_text({tsig_key_name: tsig_secret_b64})
        self._algorithm = dns.name.from_text(tsig_algorithm)
        self._zone = _absolute(zone) if zone else None
        self._timeout = timeout
        self._ttl = ttl

    @property
    def resolver(self) -> tuple[str, int]:
        return (self.server, self.port)

    async def zone_for(self, fqdn: str) -> dns.name.Name:
        """The zone `fqdn` is in: the configured one, else the SOA found at the server."""
        if self._zone is not None:
            return self._zone
        try:
            return await dns.asyncresolver.zone_for_name(
                _absolute(fqdn), resolver=_resolver(self.resolver, self._timeout)
            )
        except dns.exception.DNSException as exc:
            raise Dns01Error(
                f"no zone for {fqdn} at {self.server}:{self.port} (SOA lookup: {exc}); "
                "set `zone` in the RFC 2136 credentials"
            ) from exc

    async def _send(
        self, fqdn: str, change: Callable[[dns.update.Update, dns.name.Name], None]
    ) -> None:
        zone = await self.zone_for(fqdn)
        update = dns.update.Update(
            zone, keyring=self._keyring, keyname=self._key_name, keyalgorithm=self._algorithm
        )
        change(update, _absolute(fqdn).relativize(zone))
        where = f"{self.server}:{self.port}"
        try:
            answer = await dns.asyncquery.tcp(
                update, self.server, timeout=self._timeout, port=self.port
            )
        except dns.tsig.PeerError as exc:
            raise Dns01Error(f"{where} rejected the TSIG key {self._key_name}: {exc}") from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise Dns01Error(
                f"RFC 2136 update at {where} failed: {str(exc) or type(exc).__name__}"
            ) from exc
        rcode = answer.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = {
                dns.rcode.NOTAUTH: " (the server does not accept this TSIG key for the zone)",
                dns.rcode.REFUSED: " (updates of this zone are not allowed for this key)",
                dns.rcode.NOTZONE: " (the name is not in the zone)",
            }.get(rcode, "")
            raise Dns01Error(
                f"{where} refused the update of {fqdn} in zone {zone}: "
                f"{dns.rcode.to_text(rcode)}{hint}"
            )

    async def set_txt(self, fqdn: str, value: str) -> None:
        def add(update: dns.update.Update, name: dns.name.Name) -> None:
            update.add(name, self._ttl, "TXT", _quoted(value))

        await self._send(fqdn, add)

    async def remove_txt(self, fqdn: str, value: str) -> None:
        def delete(update: dns.update.Update, name: dns.name.Name) -> None:
            update.delete(name, "TXT", _quoted(value))

        await self._send(fqdn, delete)

    async def propagation(self, fqdn: str, value: str, seconds: float = 120.0) -> None:
        await wait_for_txt(fqdn, value, [self.resolver], seconds)


def _quoted(value: str) -> str:
    if '"' in value or "\\" in value:
        raise Dns01Error("a TXT value with quotes or backslashes is not a DNS-01 value")
    return f'"{value}"'


class CloudflareCredentials(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A Cloudflare API token with `Zone:Read` and `DNS:Edit` on the zones."""

    api_token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"


class CloudflareProvider:
    """DNS-01 through Cloudflare's API v4: the zone by name (climbing from the record's
    parent), TXT `dns_records` created and deleted by id. `propagation` polls the
    zone's Cloudflare name servers (or `resolvers`, when given)."""

    name = "cloudflare"

    def __init__(
        self,
        api_token: str,
        *,
        api_base: str = CLOUDFLARE_API,
        resolvers: list[Resolver] | None = None,
        timeout: float = 30.0,
        ttl: int = 60,
    ) -> None:
        self._token = api_token
        self._base = api_base.rstrip("/")
        self._resolvers = resolvers
        self._timeout = timeout
        self._ttl = ttl
        #: record name → (zone id, name servers), looked up once per name.
        self._zones: dict[str, tuple[str, list[str]]] = {}

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                reply = await client.request(
                    method, self._base + path, params=params, json=json, headers=headers
                )
        except httpx.HTTPError as exc:
            raise Dns01Error(
                f"Cloudflare's API at {self._base} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            body = reply.json()
        except ValueError:
            body = None
        if reply.status_code in (401, 403):
            raise Dns01Error(
                f"Cloudflare refused the API token ({reply.status_code}); it needs "
                "Zone:Read and DNS:Edit on the zone"
            )
        if not isinstance(body, dict) or not body.get("success") or reply.status_code >= 400:
            errors = body.get("errors") if isinstance(body, dict) else None
            detail = "; ".join(
                str(e.get("message", e)) for e in (errors or []) if isinstance(e, dict)
            )
            raise Dns01Error(
                f"Cloudflare {method} {path} failed ({reply.status_code})"
                + (f": {detail}" if detail else "")
            )
        return body.get("result")

    async def zone(self, fqdn: str) -> tuple[str, list[str]]:
        """(zone id, its name servers) of the closest zone above `fqdn`."""
        labels = fqdn.rstrip(".").lower().split(".")
        if fqdn in self._zones:
            return self._zones[fqdn]
        for i in range(1, len(labels)):
            candidate = ".".join(labels[i:])
            result = await self._call("GET", "/zones", params={"name": candidate})
            if isinstance(result, list) and result:
                found = (str(result[0]["id"]), list(result[0].get("name_servers") or []))
                self._zones[fqdn] = found
                return found
        raise Dns01Error(f"no Cloudflare zone for {fqdn} is visible to this token")

    async def set_txt(self, fqdn: str, value: str) -> None:
        zone_id, _ = await self.zone(fqdn)
        record = {"type": "TXT", "name": fqdn.rstrip("."), "content": value, "ttl": self._ttl}
        await self._call("POST", f"/zones/{zone_id}/dns_records", json=record)

    async def remove_txt(self, fqdn: str, value: str) -> None:
        zone_id, _ = await self.zone(fqdn)
        found = await self._call(
            "GET",
            f"/zones/{zone_id}/dns_records",
            params={"type": "TXT", "name": fqdn.rstrip("."), "content": value},
        )
        for record in found or []:
            if record.get("content", "").strip('"') == value:
                await self._call("DELETE", f"/zones/{zone_id}/dns_records/{record['id']}")

    async def propagation(self, fqdn: str, value: str, seconds: float = 120.0) -> None:
        resolvers = self._resolvers
        if resolvers is None:
            _, name_servers = await self.zone(fqdn)
            resolvers = []
            for server in name_servers:
                resolvers += [(addr, 53) for addr in await lookup(server + ".", "A")]
            resolvers = resolvers or [None]
        await wait_for_txt(fqdn, value, resolvers, seconds)


# -- the registry ---------------------------------------------------------------------


def _decode(
    struct: type[msgspec.Struct], provider: str, credentials: Mapping[str, Any] | bytes
) -> Any:
    try:
        if isinstance(credentials, bytes | bytearray):
            return msgspec.json.decode(credentials, type=struct)
        return msgspec.convert(dict(credentials), struct)
    except msgspec.ValidationError as exc:
        raise Dns01CredentialsInvalid(f"{provider} credentials: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise Dns01CredentialsInvalid(f"{provider} credentials are not JSON: {exc}") from exc


def _rfc2136(credentials: Mapping[str, Any] | bytes, **options: Any) -> Dns01Provider:
    creds: Rfc2136Credentials = _decode(Rfc2136Credentials, "rfc2136", credentials)
    port = int(creds.port)
    if not 0 < port < 65536:
        raise Dns01CredentialsInvalid("rfc2136 credentials: port must be 1-65535 - at `$.port`")
    for field, value in (("tsig_key_name", creds.tsig_key_name), ("zone", creds.zone)):
        try:
            if value is not None:
                dns.name.from_text(value)
        except dns.exception.DNSException as exc:
            raise Dns01CredentialsInvalid(
                f"rfc2136 credentials: not a DNS name ({exc}) - at `$.{field}`"
            ) from exc
    return Rfc2136Provider(
        creds.server,
        port,
        creds.tsig_key_name,
        creds.tsig_secret,
        creds.tsig_algorithm,
        creds.zone,
        **options,
    )


def _cloudflare(credentials: Mapping[str, Any] | bytes, **options: Any) -> Dns01Provider:
    creds: CloudflareCredentials = _decode(CloudflareCredentials, "cloudflare", credentials)
    return CloudflareProvider(creds.api_token, **options)


#: provider name → a builder from credentials (a mapping, or the JSON the vault holds)
#: and keyword options (`timeout`, `ttl`; cloudflare also `api_base`, `resolvers`).
DNS01_PROVIDERS: dict[str, Callable[..., Dns01Provider]] = {
    "rfc2136": _rfc2136,
    "cloudflare": _cloudflare,
}


_CREDENTIALS: dict[str, type[msgspec.Struct]] = {
    "rfc2136": Rfc2136Credentials,
    "cloudflare": CloudflareCredentials,
}


def credential_fields(name: str) -> list[tuple[str, bool]]:
    """The keys of a provider's credentials, each with whether it is required."""
    return [(f.name, f.required) for f in msgspec.structs.fields(_CREDENTIALS[name])]


def dns01_provider(
    name: str, credentials: Mapping[str, Any] | bytes, **options: Any
) -> Dns01Provider:
    """The provider `name` with `credentials`; `Dns01CredentialsInvalid` names the
    missing or invalid field (or the unknown provider)."""
    try:
        build = DNS01_PROVIDERS[name]
    except KeyError:
        raise Dns01CredentialsInvalid(
            f"unknown DNS-01 provider {name!r}; use one of {', '.join(DNS01_PROVIDERS)}"
        ) from None
    return build(credentials, **options)
