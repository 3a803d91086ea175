"""The ACME and DNS adapters (`pressluft/runners/acme.py`, `pressluft/runners/dns.py`)
against real servers on loopback: Let's Encrypt's pebble as the CA and BIND's named
as the authoritative DNS (zone `test.`, RFC 2136 updates with TSIG). Only
Cloudflare's API is a stand-in (`tests/support/cloudflare.py`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store

from pressluft.runners.acme import (
    AcmeDirectory,
    AcmeError,
    Challenge,
    Dns01Solver,
    certificate_info,
    ensure_account,
    issue,
    new_private_key,
    served_certificate,
)
from pressluft.runners.dns import (
    DNS01_PROVIDERS,
    CloudflareProvider,
    Dns01CredentialsInvalid,
    Dns01Error,
    DnsLookupFailed,
    Problem,
    Rfc2136Provider,
    dns01_provider,
    lookup,
    preflight,
)
from tests.support.bind import BindServer
from tests.support.cloudflare import CloudflareStandIn
from tests.support.pebble import Pebble
from tests.support.sshd import free_port

LE = {"letsencrypt.org"}


def unique(prefix: str = "h") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def directory_of(pebble: Pebble) -> AcmeDirectory:
    return AcmeDirectory(pebble.directory_url, pebble.ca_bundle)


def rfc2136(bind: BindServer, **kw: Any) -> Rfc2136Provider:
    return Rfc2136Provider(
        bind.host, bind.port, bind.key_name, bind.key_secret, bind.key_algorithm, **kw
    )


# -- an HTTP-01 responder: what a node's nginx does for /.well-known/acme-challenge/ --


class TokenServer:
    """Serves `tokens` (path → body) on 127.0.0.1:port; 404 for anything else."""

    def __init__(self, port: int) -> None:
        self.tokens: dict[str, str] = {}
        self.hits: list[str] = []
        tokens, hits = self.tokens, self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hits.append(self.path)
                body = tokens.get(self.path)
                self.send_response(200 if body is not None else 404)
                data = (body or "not here").encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Http01Solver:
    """HTTP-01 the way the domains capability does it on a node, here into TokenServer."""

    kind = "http-01"

    def __init__(self, server: TokenServer, serve: bool = True) -> None:
        self.server = server
        self.serve = serve
        self.cleaned: list[str] = []

    async def present(self, challenge: Challenge) -> None:
        if self.serve:
            self.server.tokens[challenge.http_path] = challenge.key_authorization

    async def cleanup(self, challenge: Challenge) -> None:
        self.server.tokens.pop(challenge.http_path, None)
        self.cleaned.append(challenge.name)


@pytest.fixture(scope="module")
def token_server(pebble_ca: Pebble) -> Iterator[TokenServer]:
    server = TokenServer(pebble_ca.http_port)
    try:
        yield server
    finally:
        server.stop()


# -- DNS lookups and preflight -----------------------------------------------------------


@pytest.mark.spec("DOM-1")
async def test_lookup_answers_and_absence(bind_dns: BindServer) -> None:
    name = unique() + ".test."
    bind_dns.set(name, "A", ["192.0.2.10", "192.0.2.11"])
    bind_dns.set(name, "TXT", ['"hello" "world"'])
    bind_dns.set(name, "CAA", ['0 issue "letsencrypt.org"'])
    resolver = bind_dns.address
    assert sorted(await lookup(name, "A", resolver)) == ["192.0.2.10", "192.0.2.11"]
    assert await lookup(name, "TXT", resolver) == ["helloworld"]
    assert await lookup(name, "CAA", resolver) == ['0 issue "letsencrypt.org"']
    assert await lookup(name, "AAAA", resolver) == []  # no such type
    assert await lookup("nothing-" + name, "A", resolver) == []  # NXDOMAIN


@pytest.mark.spec("DOM-2")
async def test_lookup_failures_are_typed(bind_dns: BindServer) -> None:
    # A server that refuses (not authoritative, no recursion).
    with pytest.raises(DnsLookupFailed, match=r"REFUSED"):
        await lookup("example.com.", "A", bind_dns.address)
    # A server that never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(DnsLookupFailed, match=r"timed out"):
            await lookup("x.test.", "A", silent.getsockname(), seconds=1)


@pytest.mark.spec("DOM-3")
async def test_preflight_a_record_elsewhere_is_a_mismatch(bind_dns: BindServer) -> None:
    host = unique() + ".test"
    bind_dns.set(host + ".", "A", ["192.0.2.99"])
    problems = await preflight(host, {"203.0.113.5"}, LE, bind_dns.address)
    assert problems == [
        Problem(
            "dns_mismatch",
            f"DNS for {host} does not point to this server (203.0.113.5); "
            "create an A record and retry",
        )
    ]
    bind_dns.set(host + ".", "A", ["203.0.113.5"])
    assert await preflight(host, {"203.0.113.5"}, LE, bind_dns.address) == []


@pytest.mark.spec("DOM-4")
async def test_preflight_missing_record_and_foreign_aaaa(bind_dns: BindServer) -> None:
    host = unique() + ".test"
    [missing] = await preflight(host, {"203.0.113.5"}, LE, bind_dns.address)
    assert missing.code == "dns_missing"
    assert "create an A record" in missing.message and "203.0.113.5" in missing.message
    bind_dns.set(host + ".", "A", ["203.0.113.5"])
    bind_dns.set(host + ".", "AAAA", ["2001:db8::99"])
    [aaaa] = await preflight(host, {"203.0.113.5", "2001:db8::5"}, LE, bind_dns.address)
    assert aaaa == Problem(
        "dns_mismatch",
        f"DNS for {host} does not point to this server (2001:db8::5); "
        "create an AAAA record and retry",
    )
    bind_dns.set(host + ".", "AAAA", ["2001:db8::5"])
    assert await preflight(host, {"203.0.113.5", "2001:db8::5"}, LE, bind_dns.address) == []


@pytest.mark.spec("DOM-5")
async def test_preflight_caa_on_a_parent(bind_dns: BindServer) -> None:
    parent = unique("p") + ".test"
    host = f"www.{parent}"
    bind_dns.set(host + ".", "A", ["203.0.113.5"])
    expected = {"203.0.113.5"}
    # No CAA anywhere: allowed.
    assert await preflight(host, expected, LE, bind_dns.address) == []
    # The closest ancestor with CAA decides.
    bind_dns.set(parent + ".", "CAA", ['0 issue "other-ca.example"', '0 iodef "mailto:x@y.z"'])
    assert await preflight(host, expected, LE, bind_dns.address) == [
        Problem(
            "caa_forbids",
            f'CAA records for {parent} allow only other-ca.example; add `0 issue "letsencrypt.org"`'
            " and retry",
        )
    ]
    bind_dns.set(
        parent + ".",
        "CAA",
        ['0 issue "other-ca.example"', '0 issue "letsencrypt.org; validationmethods=dns-01"'],
    )
    assert await preflight(host, expected, LE, bind_dns.address) == []
    # A closer CAA RRset overrides the parent's.
    bind_dns.set(parent + ".", "CAA", ['0 issue ";"'])
    [forbidden] = await preflight(host, expected, LE, bind_dns.address)
    assert forbidden.code == "caa_forbids" and "allow no CA" in forbidden.message
    bind_dns.set(host + ".", "CAA", ['0 issue "letsencrypt.org"'])
    assert await preflight(host, expected, LE, bind_dns.address) == []
    # Wildcards: issuewild, when present, decides.
    bind_dns.set(
        parent + ".", "CAA", ['0 issue "letsencrypt.org"', '0 issuewild "other-ca.example"']
    )
    [wild] = await preflight(f"*.{parent}", set(), LE, bind_dns.address)
    assert wild.code == "caa_forbids" and '`0 issuewild "letsencrypt.org"`' in wild.message
    assert await preflight(f"a.{parent}", set(), LE, bind_dns.address) == []
    # A resolver that does not answer: dns_unavailable.
    [down] = await preflight(host, expected, LE, ("127.0.0.1", free_port()), seconds=1)
    assert down.code == "dns_unavailable" and host in down.message


# -- DNS-01 providers ----------------------------------------------------------------------


@pytest.mark.spec("DOM-6")
async def test_rfc2136_provider_adds_and_removes_values(bind_dns: BindServer) -> None:
    fqdn = f"_acme-challenge.{unique()}.test"
    provider = rfc2136(bind_dns)  # zone found by an SOA lookup at the server
    assert str(await provider.zone_for(fqdn)) == "test."
    await provider.set_txt(fqdn, "value-one")
    await provider.set_txt(fqdn, "value-two")
    await provider.propagation(fqdn, "value-two", seconds=10)
    assert sorted(await lookup(fqdn, "TXT", bind_dns.address)) == ["value-one", "value-two"]
    await provider.remove_txt(fqdn, "value-one")
    assert await lookup(fqdn, "TXT", bind_dns.address) == ["value-two"]
    await provider.remove_txt(fqdn, "value-two")
    assert await lookup(fqdn, "TXT", bind_dns.address) == []
    # A wrong key is refused, with the reason.
    wrong = Rfc2136Provider(
        bind_dns.host, bind_dns.port, bind_dns.key_name, "d3Jvbmcga2V5", zone="test"
    )
    with pytest.raises(Dns01Error, match="TSIG"):
        await wrong.set_txt(fqdn, "nope")
    with pytest.raises(Dns01Error, match="not visible within"):
        await provider.propagation(fqdn, "never-set", seconds=0.5)


@pytest.mark.spec("DOM-7")
async def test_cloudflare_provider_against_the_stand_in(bind_dns: BindServer) -> None:
    api = CloudflareStandIn("tok-123", {"test": "zone-test"}, bind=bind_dns).start()
    try:
        provider = CloudflareProvider("tok-123", api_base=api.url, resolvers=[bind_dns.address])
        fqdn = f"_acme-challenge.www.{unique()}.test"
        await provider.set_txt(fqdn, "v1")
        await provider.set_txt(fqdn, "v2")
        await provider.propagation(fqdn, "v1", seconds=10)
        assert sorted(r["content"] for r in api.records.values()) == ["v1", "v2"]
        await provider.remove_txt(fqdn, "v1")
        assert [r["content"] for r in api.records.values()] == ["v2"]
        assert await lookup(fqdn, "TXT", bind_dns.address) == ["v2"]
        await provider.remove_txt(fqdn, "v2")
        assert api.records == {}
        # The zone was found by climbing from the record's parent, and cached.
        zone_lookups = [p for m, p in api.requests if p.endswith("/zones")]
        assert len(zone_lookups) == 3  # www.<x>.test, <x>.test, test
        bad = CloudflareProvider("wrong", api_base=api.url)
        with pytest.raises(Dns01Error, match="refused the API token"):
            await bad.set_txt(fqdn, "v3")
        unknown = CloudflareProvider("tok-123", api_base=api.url)
        with pytest.raises(Dns01Error, match="no Cloudflare zone"):
            await unknown.set_txt("_acme-challenge.example.org", "v4")
    finally:
        api.stop()


@pytest.mark.spec("DOM-8")
def test_provider_registry_decodes_credentials_strictly() -> None:
    assert set(DNS01_PROVIDERS) == {"rfc2136", "cloudflare"}
    provider = dns01_provider(
        "rfc2136",
        {"server": "127.0.0.1", "port": "5353", "tsig_key_name": "k", "tsig_secret": "c2VjcmV0"},
    )
    assert isinstance(provider, Rfc2136Provider) and provider.resolver == ("127.0.0.1", 5353)
    cloudflare = dns01_provider("cloudflare", b'{"api_token": "t"}', api_base="http://127.0.0.1:1")
    assert isinstance(cloudflare, CloudflareProvider)
    with pytest.raises(Dns01CredentialsInvalid, match="api_token"):
        dns01_provider("cloudflare", {})
    with pytest.raises(Dns01CredentialsInvalid, match="zone_id"):
        dns01_provider("cloudflare", {"api_token": "t", "zone_id": "z"})
    with pytest.raises(Dns01CredentialsInvalid, match=r"\$\.port"):
        dns01_provider(
            "rfc2136", {"server": "h", "port": "x", "tsig_key_name": "k", "tsig_secret": "c2VjcmV0"}
        )
    with pytest.raises(Dns01CredentialsInvalid, match="tsig_algorithm"):
        dns01_provider(
            "rfc2136",
            {
                "server": "h",
                "tsig_key_name": "k",
                "tsig_secret": "c2VjcmV0",
                "tsig_algorithm": "md5",
            },
        )
    with pytest.raises(Dns01CredentialsInvalid, match="tsig_secret"):
        dns01_provider("rfc2136", {"server": "h", "tsig_key_name": "k", "tsig_secret": "%%%"})
    with pytest.raises(Dns01CredentialsInvalid, match="unknown DNS-01 provider 'route53'"):
        dns01_provider("route53", {})
    with pytest.raises(Dns01CredentialsInvalid, match="not JSON"):
        dns01_provider("cloudflare", b"{")


# -- ACME: accounts and issuance -------------------------------------------------------------


@pytest.mark.spec("DOM-9")
async def test_ensure_account_is_idempotent_for_a_key(pebble_ca: Pebble) -> None:
    directory = directory_of(pebble_ca)
    first = await ensure_account(directory, None, "ops@example.com")
    assert b"PRIVATE KEY" in first.key_pem and first.uri.startswith("https://127.0.0.1:")
    again = await ensure_account(directory, first.key_pem, "ops@example.com")
    assert again == first
    other = await ensure_account(directory, new_private_key(), None)
    assert other.uri != first.uri


@pytest.mark.spec("DOM-10")
async def test_dns01_wildcard_with_rfc2136(pebble_ca: Pebble, bind_dns: BindServer) -> None:
    directory = directory_of(pebble_ca)
    account = await ensure_account(directory)
    lines: list[str] = []
    solver = Dns01Solver(rfc2136(bind_dns), propagation_seconds=10)
    issued = await issue(
        directory, account, ["*.preview.test", "preview.test"], solver, log=lines.append
    )
    assert sorted(issued.names) == ["*.preview.test", "preview.test"]
    # Both challenges' TXT values are gone again.
    assert await lookup("_acme-challenge.preview.test.", "TXT", bind_dns.address) == []
    assert bind_dns.records("_acme-challenge.preview.test.", "TXT") == []
    assert any("dns-01 for *.preview.test" in line for line in lines)
    assert not any("PRIVATE KEY" in line for line in lines)


@pytest.mark.spec("DOM-11", "DOM-12")
async def test_http01_issues_and_describes_the_certificate(
    pebble_ca: Pebble, bind_dns: BindServer, token_server: TokenServer, tmp_path: Path
) -> None:
    host = unique("web") + ".test"
    bind_dns.set(host + ".", "A", ["127.0.0.1"])
    directory = directory_of(pebble_ca)
    account = await ensure_account(directory)
    key = new_private_key()
    solver = Http01Solver(token_server)
    lines: list[str] = []
    issued = await issue(directory, account, [host], solver, key, log=lines.append)
    assert issued.names == [host]
    assert issued.key_pem == key
    assert solver.cleaned == [host] and token_server.tokens == {}
    assert any(h.startswith("/.well-known/acme-challenge/") for h in token_server.hits)
    leaf = x509.load_pem_x509_certificate(issued.fullchain_pem)
    assert issued.serial == format(leaf.serial_number, "x")
    assert issued.not_before == leaf.not_valid_before_utc
    assert issued.not_after == leaf.not_valid_after_utc
    assert issued.issuer.startswith("Pebble Intermediate CA")
    assert issued.fullchain_pem.count(b"BEGIN CERTIFICATE") >= 2
    assert certificate_info(issued.fullchain_pem) == (
        issued.serial,
        issued.not_before,
        issued.not_after,
        [host],
        issued.issuer,
    )
    # Pebble 2.4 has no ARI: two thirds of the lifetime.
    lifetime = issued.not_after - issued.not_before
    assert issued.renew_source == "lifetime"
    assert issued.renew_at == issued.not_before + lifetime * 2 / 3
    assert lines[-1].startswith(f"issued serial {issued.serial}")
    # The chain verifies, for the name, up to the root pebble issues from (what
    # `curl --cacert` would trust).
    chain = tmp_path / "fullchain.pem"
    chain.write_bytes(issued.fullchain_pem)
    certs = x509.load_pem_x509_certificates(issued.fullchain_pem)
    root = x509.load_pem_x509_certificate(pebble_ca.issuing_root())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(DNSName(host))
    verified = verifier.verify(certs[0], certs[1:])
    assert verified[-1] == root

    # DOM-12: the certificate a server serves for the name is read back by its serial.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(issued.key_pem)
    context.load_cert_chain(chain, key_file)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=context)
    try:
        port = server.sockets[0].getsockname()[1]
        served = await served_certificate("127.0.0.1", port, host)
        assert served.serial == issued.serial
        assert served.not_after == issued.not_after
        assert served.names == [host]
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.spec("DOM-12")
async def test_served_certificate_of_nothing_is_a_typed_error() -> None:
    from pressluft.runners.acme import TlsProbeFailed

    with pytest.raises(TlsProbeFailed, match="no TLS handshake"):
        await served_certificate("127.0.0.1", free_port(), "x.test", seconds=2)


@pytest.mark.spec("DOM-13")
async def test_ca_unreachable(tmp_path: Path) -> None:
    dead = AcmeDirectory(f"https://127.0.0.1:{free_port()}/dir")
    with pytest.raises(AcmeError) as caught:
        await ensure_account(dead)
    assert caught.value.code == "acme_unreachable"
    assert "does not answer" in caught.value.message


@pytest.mark.spec("DOM-13")
async def test_untrusted_ca_certificate_is_unreachable(pebble_ca: Pebble) -> None:
    # Without pebble's bundle the system CAs do not trust its directory.
    with pytest.raises(AcmeError) as caught:
        await ensure_account(AcmeDirectory(pebble_ca.directory_url))
    assert caught.value.code == "acme_unreachable"
    assert "TLS" in caught.value.message


@pytest.mark.spec("DOM-14")
async def test_validation_failure_carries_the_ca_detail(
    pebble_ca: Pebble, bind_dns: BindServer, token_server: TokenServer
) -> None:
    host = unique("fail") + ".test"
    bind_dns.set(host + ".", "A", ["127.0.0.1"])
    directory = directory_of(pebble_ca)
    account = await ensure_account(directory)
    solver = Http01Solver(token_server, serve=False)
    with pytest.raises(AcmeError) as caught:
        await issue(directory, account, [host], solver)
    assert caught.value.code == "acme_validation_failed"
    assert host in caught.value.message and "404" in caught.value.message
    assert solver.cleaned == [host]


@pytest.mark.spec("DOM-14")
async def test_wildcards_need_dns01(pebble_ca: Pebble, token_server: TokenServer) -> None:
    directory = directory_of(pebble_ca)
    account = await ensure_account(directory)
    with pytest.raises(AcmeError) as caught:
        await issue(directory, account, ["*.w.test"], Http01Solver(token_server))
    assert caught.value.code == "acme_rejected" and "dns-01" in caught.value.message


@pytest.mark.spec("DOM-15")
async def test_dns01_provider_failure_is_a_challenge_failure(
    pebble_ca: Pebble, bind_dns: BindServer
) -> None:
    directory = directory_of(pebble_ca)
    account = await ensure_account(directory)
    broken = Rfc2136Provider(
        bind_dns.host, bind_dns.port, bind_dns.key_name, "d3Jvbmcga2V5", zone="test"
    )
    with pytest.raises(AcmeError) as caught:
        await issue(directory, account, [unique() + ".test"], Dns01Solver(broken))
    assert caught.value.code == "acme_challenge_failed"
    assert "TSIG" in caught.value.message


@pytest.mark.spec("DOM-16")
async def test_short_lived_certificates_renew_by_lifetime(
    pebble_factory: Any, bind_dns: BindServer
) -> None:
    short = pebble_factory(free_port(), validity_seconds=600)
    directory = directory_of(short)
    account = await ensure_account(directory)
    name = unique("short") + ".test"
    issued = await issue(
        directory, account, [name], Dns01Solver(rfc2136(bind_dns), propagation_seconds=10)
    )
    assert issued.not_after - issued.not_before <= dt.timedelta(seconds=601)
    assert issued.renew_source == "lifetime"
    assert issued.renew_at == issued.not_before + (issued.not_after - issued.not_before) * 2 / 3


@pytest.mark.spec("DOM-7", "DOM-10")
async def test_dns01_through_the_cloudflare_stand_in(
    pebble_ca: Pebble, bind_dns: BindServer
) -> None:
    api = CloudflareStandIn("tok-9", {"test": "zone-test"}, bind=bind_dns).start()
    try:
        provider = dns01_provider(
            "cloudflare", {"api_token": "tok-9"}, api_base=api.url, resolvers=[bind_dns.address]
        )
        directory = directory_of(pebble_ca)
        account = await ensure_account(directory)
        base = unique("cf") + ".test"
        issued = await issue(directory, account, [f"*.{base}", base], Dns01Solver(provider))
        assert sorted(issued.names) == sorted([f"*.{base}", base])
        assert api.records == {}
    finally:
        api.stop()
