"""Certificates from an ACME CA (RFC 8555): accounts, issuance over HTTP-01 or DNS-01,
the renewal time, and a look at the certificate a server actually serves.

The protocol is certbot's `acme` library (synchronous: every call runs in a thread
through `asyncio.to_thread`, so the daemon's event loop never blocks). Keys live
in memory only: the caller keeps account and certificate keys in the vault; this
module writes nothing to disk. Challenges are answered by a `Solver`: HTTP-01 by
whoever serves `/.well-known/acme-challenge/<token>` for the name (a node's nginx),
DNS-01 by `Dns01Solver` over a provider from `pressluft.runners.dns`.

Failures are `AcmeError(code, message)`; the codes say what the operator can do:
`acme_unreachable` (the CA does not answer), `acme_validation_failed` (the CA
could not validate a challenge; its detail in the message), `acme_rate_limited`,
`acme_rejected` (the CA refused the request), `acme_timeout` (no decision in
time), `acme_challenge_failed` (the solver could not publish the challenge).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from josepy import errors as jose_errors
from josepy import jwa, jwk

from pressluft.runners.dns import Dns01Error, Dns01Provider, Resolver, wait_for_txt

__all__ = [
    "Account",
    "AcmeDirectory",
    "AcmeError",
    "CertificateInfo",
    "Challenge",
    "Dns01Solver",
    "Issued",
    "Served",
    "Solver",
    "TlsProbeFailed",
    "certificate_info",
    "ensure_account",
    "issue",
    "new_private_key",
    "renew_at",
    "served_certificate",
]

T = TypeVar("T")

#: Seconds one HTTP request to the CA may take.
NETWORK_TIMEOUT = 30
USER_AGENT = "pressluft"


class AcmeError(Exception):
    """An ACME operation failed; `code` is one of the module's documented codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TlsProbeFailed(Exception):
    """No TLS handshake with the server (refused, timed out, not TLS)."""


@dataclass(frozen=True)
class AcmeDirectory:
    """An ACME CA: its directory URL, and the CA bundle (a PEM file) that verifies
    the directory's TLS certificate when it is not signed by a system CA (tests)."""

    url: str
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class Account:
    """An ACME account: its key (PEM, for the vault) and its URL at the CA."""

    key_pem: bytes
    uri: str


@dataclass(frozen=True)
class Challenge:
    """One challenge to answer, as the solver needs it.

    `name` is the identifier as ordered (`*.example.com` for a wildcard);
    HTTP-01 serves `key_authorization` at `http_path` on port 80 of `domain`;
    DNS-01 publishes the TXT record `dns_name` with the value `dns_value`.
    """

    kind: str
    name: str
    token: str
    key_authorization: str

    @property
    def domain(self) -> str:
        return self.name[2:] if self.name.startswith("*.") else self.name

    @property
    def http_path(self) -> str:
        return f"/.well-known/acme-challenge/{self.token}"

    @property
    def dns_name(self) -> str:
        return f"_acme-challenge.{self.domain}"

    @property
    def dns_value(self) -> str:
        digest = hashlib.sha256(self.key_authorization.encode()).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Solver(Protocol):
    """Answers challenges of one `kind` (`http-01` or `dns-01`).

    `present` makes the challenge answerable (and returns only once the CA can see
    it); `cleanup` removes it again (called for every presented challenge, whatever
    the outcome)."""

    @property
    def kind(self) -> str: ...

    async def present(self, challenge: Challenge) -> None: ...

    async def cleanup(self, challenge: Challenge) -> None: ...


class Dns01Solver:
    """DNS-01 through a provider: publish the TXT value, wait until it is visible
    (at `resolver` when given, else wherever the provider checks), remove it."""

    kind = "dns-01"

    def __init__(
        self,
        provider: Dns01Provider,
        resolver: Resolver | None = None,
        *,
        propagation_seconds: float = 120.0,
    ) -> None:
        self.provider = provider
        self.resolver = resolver
        self.propagation_seconds = propagation_seconds

    async def present(self, challenge: Challenge) -> None:
        try:
            await self.provider.set_txt(challenge.dns_name, challenge.dns_value)
            if self.resolver is not None:
                await wait_for_txt(
                    challenge.dns_name,
                    challenge.dns_value,
                    [self.resolver],
                    self.propagation_seconds,
                )
            else:
                await self.provider.propagation(
                    challenge.dns_name, challenge.dns_value, self.propagation_seconds
                )
        except Dns01Error as exc:
            raise AcmeError(
                "acme_challenge_failed",
                f"DNS-01 for {challenge.name} through {self.provider.name}: {exc}",
            ) from exc

    async def cleanup(self, challenge: Challenge) -> None:
        try:
            await self.provider.remove_txt(challenge.dns_name, challenge.dns_value)
        except Dns01Error as exc:
            raise AcmeError(
                "acme_challenge_failed",
                f"removing the DNS-01 record of {challenge.name} through "
                f"{self.provider.name}: {exc}",
            ) from exc


class CertificateInfo(NamedTuple):
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    names: list[str]
    issuer: str


@dataclass(frozen=True)
class Issued:
    """A new certificate: the chain and key to install, and when to renew it.

    `renew_source` is `ari` when the CA's renewal information chose `renew_at`,
    `lifetime` when it is two thirds into the certificate's lifetime."""

    fullchain_pem: bytes
    key_pem: bytes
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    names: list[str]
    issuer: str
    renew_at: dt.datetime
    renew_source: str


@dataclass(frozen=True)
class Served:
    """The leaf certificate a TLS server presented."""

    serial: str
    not_after: dt.datetime
    names: list[str]


# -- keys and certificates --------------------------------------------------------------


def new_private_key() -> bytes:
    """A new EC P-256 private key (PKCS#8 PEM, unencrypted: the vault seals it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _jwk(key_pem: bytes) -> tuple[jwk.JWK, jwa.JWASignature]:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise AcmeError("acme_rejected", "the account key is not a PEM private key") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithms = {"secp256r1": jwa.ES256, "secp384r1": jwa.ES384, "secp521r1": jwa.ES512}
        if key.curve.name not in algorithms:
            raise AcmeError("acme_rejected", f"EC account keys on {key.curve.name} are unusable")
        return jwk.JWKEC(key=key), algorithms[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return jwk.JWKRSA(key=key), jwa.RS256
    raise AcmeError("acme_rejected", "account keys are EC (P-256) or RSA")


def _common_name(attribute: x509.Name) -> str:
    values = attribute.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else attribute.rfc4514_string()


def _names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return [str(n) for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return [str(common[0].value)] if common else []


def _info(cert: x509.Certificate) -> CertificateInfo:
    return CertificateInfo(
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        names=_names(cert),
        issuer=_common_name(cert.issuer),
    )


def certificate_info(pem: bytes) -> CertificateInfo:
    """Serial (lower-case hex), validity (aware, UTC), DNS names and issuer CN of the
    first certificate in `pem` (the leaf of a full chain)."""
    return _info(x509.load_pem_x509_certificate(pem))


# -- talking to the CA -------------------------------------------------------------------------


def _failed_detail(exc: errors.ValidationError) -> str:
    parts = []
    for authzr in exc.failed_authzrs:
        name = authzr.body.identifier.value
        if authzr.body.wildcard:
            name = "*." + name
        for challb in authzr.body.challenges:
            if challb.error is not None:
                parts.append(f"{name}: {challb.error.detail or challb.error.typ}")
    return "; ".join(parts) or "the CA gave no detail"


def _translate(exc: BaseException, directory: AcmeDirectory) -> AcmeError | None:
    """The AcmeError for an exception of the acme library or requests (None: not ours)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return AcmeError(
            "acme_unreachable", f"no trusted TLS connection to the CA at {directory.url}: {exc}"
        )
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return AcmeError("acme_unreachable", f"the CA at {directory.url} does not answer: {exc}")
    if isinstance(exc, requests.exceptions.RequestException):
        return AcmeError("acme_unreachable", f"the CA at {directory.url}: {exc}")
    if isinstance(exc, messages.Error):
        detail = exc.detail or exc.description or str(exc)
        if exc.code == "rateLimited":
            return AcmeError("acme_rate_limited", f"the CA's rate limit: {detail}")
        return AcmeError("acme_rejected", f"the CA refused ({exc.code}): {detail}")
    if isinstance(exc, errors.ValidationError):
        return AcmeError("acme_validation_failed", _failed_detail(exc))
    if isinstance(exc, errors.TimeoutError | errors.PollError):
        return AcmeError("acme_timeout", "the CA did not decide in time")
    if isinstance(exc, errors.IssuanceError):
        error = exc.error
        code = "acme_rate_limited" if error.code == "rateLimited" else "acme_rejected"
        return AcmeError(code, f"the CA did not issue: {error.detail or error}")
    if isinstance(exc, errors.Error | jose_errors.DeserializationError):
        return AcmeError("acme_rejected", f"unexpected answer from the CA: {exc}")
    return None


async def _run(directory: AcmeDirectory, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a thread; the library's and requests' errors as AcmeError."""
    try:
        return await asyncio.to_thread(fn, *args)
    except AcmeError:
        raise
    except Exception as exc:
        translated = _translate(exc, directory)
        if translated is None:
            raise
        raise translated from exc


def _client(
    directory: AcmeDirectory, key_pem: bytes | None, account_uri: str | None
) -> client.ClientV2:
    """A ClientV2 for `directory` signing with the account key (None: GETs only);
    blocking, run in a thread."""
    key, alg = _jwk(key_pem) if key_pem is not None else (None, jwa.RS256)
    # requests takes a CA bundle path where the library's annotation says bool.
    verify = str(directory.ca_bundle) if directory.ca_bundle is not None else True
    net = client.ClientNetwork(
        key,
        alg=alg,
        verify_ssl=cast("bool", verify),
        user_agent=USER_AGENT,
        timeout=NETWORK_TIMEOUT,
    )
    if account_uri is not None:
        net.account = messages.RegistrationResource(uri=account_uri, body=messages.Registration())
    return client.ClientV2(client.ClientV2.get_directory(directory.url, net), net)


def _register(directory: AcmeDirectory, key_pem: bytes, email: str | None, known: bool) -> str:
    acme = _client(directory, key_pem, None)
    if known:
        try:
            acme.new_account(messages.NewRegistration(only_return_existing=True))
        except errors.ConflictError as exc:  # 200 + Location: the key's account
            return exc.location
        except messages.Error as exc:
            if exc.code != "accountDoesNotExist":
                raise
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        return str(acme.new_account(registration).uri)
    except errors.ConflictError as exc:
        return exc.location


async def ensure_account(
    directory: AcmeDirectory, key_pem: bytes | None = None, email: str | None = None
) -> Account:
    """The account of `key_pem` at the CA: found (only-return-existing) or registered
    (agreeing to the CA's terms). Without a key, a new EC P-256 key is made and
    registered; store `Account.key_pem` in the vault. Idempotent for one key."""
    known = key_pem is not None
    key = key_pem if key_pem is not None else new_private_key()
    uri = await _run(directory, _register, directory, key, email, known)
    return Account(key_pem=key, uri=uri)


def _leaf_pem(fullchain_pem: bytes) -> bytes:
    marker = b"-----END CERTIFICATE-----"
    end = fullchain_pem.index(marker) + len(marker)
    return fullchain_pem[:end] + b"\n"


def _lifetime_renewal(info: CertificateInfo) -> dt.datetime:
    return info.not_before + (info.not_after - info.not_before) * 2 / 3


async def renew_at(
    directory: AcmeDirectory,
    fullchain_pem: bytes,
    log: Callable[[str], None] = lambda _line: None,
) -> tuple[dt.datetime, str]:
    """When to renew the certificate: (time, `ari` or `lifetime`). The CA's renewal
    information (ARI, RFC 9773) when its directory offers `renewalInfo`, else two
    thirds into the certificate's lifetime."""
    info = certificate_info(fullchain_pem)
    leaf = _leaf_pem(fullchain_pem)

    def ask() -> dt.datetime | None:
        acme = _client(directory, None, None)  # renewal information is a plain GET
        when, _next_check = acme.renewal_time(leaf)
        return when

    try:
        when = await _run(directory, ask)
    except (AcmeError, errors.ARIError) as exc:
        log(f"the CA's renewal information is unavailable ({exc}); renewing by lifetime")
        when = None
    if when is None:
        return _lifetime_renewal(info), "lifetime"
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when, "ari"


def _challenges(
    order: messages.OrderResource, kind: str, key: jwk.JWK
) -> list[tuple[Challenge, messages.ChallengeBody]]:
    found = []
    for authzr in order.authorizations:
        body = authzr.body
        name = ("*." if body.wildcard else "") + body.identifier.value
        if body.status == messages.STATUS_VALID:
            continue  # validated earlier (authorization reuse)
        for challb in body.challenges:
            if challb.chall.typ == kind:
                chall = cast("challenges.KeyAuthorizationChallenge", challb.chall)
                found.append(
                    (
                        Challenge(
                            kind=kind,
                            name=name,
                            token=chall.encode("token"),
                            key_authorization=chall.key_authorization(key),
                        ),
                        challb,
                    )
                )
                break
        else:
            hint = " (wildcard names need dns-01)" if body.wildcard else ""
            raise AcmeError("acme_rejected", f"the CA offers no {kind} challenge for {name}{hint}")
    return found


async def issue(
    directory: AcmeDirectory,
    account: Account,
    names: list[str],
    solver: Solver,
    key_pem: bytes | None = None,
    log: Callable[[str], None] = lambda _line: None,
    *,
    validation_seconds: float = 180.0,
) -> Issued:
    """A certificate for `names` (the first is the subject), validated by `solver`.

    The certificate's key is `key_pem` or a new EC P-256 key. `log` receives progress
    lines (never keys). `validation_seconds` bounds the CA's validation and issuance (seconds);
    the solver's own waits are its own. Raises `AcmeError`."""
    if not names:
        raise AcmeError("acme_rejected", "a certificate needs at least one name")
    cert_key = key_pem if key_pem is not None else new_private_key()
    csr = crypto_util.make_csr(cert_key, names)
    jwk, _alg = _jwk(account.key_pem)
    log(f"ordering a certificate for {', '.join(names)} from {directory.url}")
    acme = await _run(directory, _client, directory, account.key_pem, account.uri)
    order = await _run(directory, acme.new_order, csr)
    deadline = dt.datetime.now() + dt.timedelta(
        seconds=validation_seconds
    )  # the library's naive clock
    pending = _challenges(order, solver.kind, jwk)
    presented: list[Challenge] = []
    try:
        for challenge, _challb in pending:
            log(f"{challenge.kind} for {challenge.name}: presenting the challenge")
            await solver.present(challenge)
            presented.append(challenge)
        for _challenge, challb in pending:
            await _run(directory, acme.answer_challenge, challb, challb.response(jwk))
        if pending:
            log("waiting for the CA to validate " + ", ".join(c.name for c, _ in pending))
        order = await _run(directory, acme.poll_authorizations, order, deadline)
        log("the CA validated every name")
    finally:
        for challenge in presented:
            try:
                await solver.cleanup(challenge)
            except Exception as exc:  # a leftover record is harmless; say so, go on
                log(f"{challenge.kind} for {challenge.name}: cleanup failed: {exc}")
    log("finalizing the order")
    order = await _run(directory, acme.finalize_order, order, deadline)
    fullchain = order.fullchain_pem.encode()
    info = certificate_info(fullchain)
    when, source = await renew_at(directory, fullchain, log)
    log(
        f"issued serial {info.serial} by {info.issuer}, valid {info.not_before:%Y-%m-%d %H:%M} "
        f"to {info.not_after:%Y-%m-%d %H:%M} UTC; renew at {when:%Y-%m-%d %H:%M} ({source})"
    )
    return Issued(
        fullchain_pem=fullchain,
        key_pem=cert_key,
        serial=info.serial,
        not_before=info.not_before,
        not_after=info.not_after,
        names=info.names,
        issuer=info.issuer,
        renew_at=when,
        renew_source=source,
    )


# -- what a server serves -----------------------------------------------------------------------


async def served_certificate(
    host: str, port: int, server_name: str, seconds: float = 10.0
) -> Served:
    """The leaf certificate `host:port` presents for `server_name` (SNI). Not verified:
    the caller compares its serial with the certificate it installed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(seconds):
            _reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=server_name
            )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        reason = str(exc) or type(exc).__name__
        raise TlsProbeFailed(
            f"no TLS handshake with {host}:{port} for {server_name}: {reason}"
        ) from exc
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise TlsProbeFailed(f"{host}:{port} presented no certificate for {server_name}")
    info = _info(x509.load_der_x509_certificate(der))
    return Served(serial=info.serial, not_after=info.not_after, names=info.names)
