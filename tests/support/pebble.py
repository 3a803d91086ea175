"""A real ACME CA for the tests: Let's Encrypt's `pebble` (Debian's package, 2.4) on
free loopback ports, with a generated config and its own TLS certificate for the
directory (a throwaway CA made here with `cryptography`: the package ships no
test certificates), resolving names through the test's DNS (`-dnsserver`).

- `http_port` is where pebble validates HTTP-01 (the caller's: a lab node's
  published HTTP port, or a test's token server); `tls_port` (TLS-ALPN-01) is
  a free port nothing listens on.
- Environment: `PEBBLE_VA_NOSLEEP=1` (no random validation delays),
  `PEBBLE_WFE_NONCEREJECT=0` (no random bad nonces), `PEBBLE_AUTHZREUSE=0`
  (every order is validated: a test of a failing validation is not answered
  by an earlier test's valid authorization).
- `validity_seconds` sets pebble 2.4's `certificateValidityPeriod` (short-lived
  certificates for renewal tests); pebble 2.4 has no ARI (`renewalInfo`).
- `directory_url` and `ca_bundle` (the directory's TLS root, a PEM file) are
  what `pressluft.runners.acme.AcmeDirectory` takes; `issuing_root()` fetches
  the root that signs issued certificates from the management interface
  (`/roots/0`; regenerated on every start), e.g. for `curl --cacert`.
- `stop()` ends pebble by its PID.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.sshd import free_port

PEBBLE = Path("/usr/bin/pebble")


def _write_tls_material(root: Path) -> tuple[Path, Path, Path]:
    """A CA and a `localhost`/127.0.0.1 certificate it signs: (ca, cert, key) files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pressluft test pebble CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = root / "ca.pem", root / "cert.pem", root / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


class Pebble:
    def __init__(
        self,
        dns_server: tuple[str, int],
        http_port: int,
        *,
        validity_seconds: int | None = None,
        root: Path | None = None,
    ) -> None:
        if not PEBBLE.exists():
            raise RuntimeError("pebble is missing: `make system-deps` installs pebble")
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="pl-pebble-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.dns_server = dns_server
        self.http_port = http_port
        self.tls_port = free_port()
        self.port = free_port()
        self.management_port = free_port()
        self.validity_seconds = validity_seconds
        self.log = self.root / "pebble.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ca_bundle, self._cert, self._key = _write_tls_material(self.root)

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _config(self) -> Path:
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self._cert),
            "privateKey": str(self._key),
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.validity_seconds is not None:
            settings["certificateValidityPeriod"] = self.validity_seconds
        path = self.root / "pebble-config.json"
        path.write_text(json.dumps({"pebble": settings}, indent=2))
        return path

    def start(self) -> Pebble:
        config = self._config()
        host, port = self.dns_server
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(PEBBLE), "-config", str(config), "-dnsserver", f"{host}:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pebble exited ({self.process.returncode}):\n{self.tail()}")
            try:
                reply = httpx.get(self.directory_url, verify=self.tls(), timeout=1)
                if reply.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pebble did not answer within 20 s:\n{self.tail()}")

    def tls(self) -> ssl.SSLContext:
        """A client context trusting the directory's (and management interface's) TLS."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def tail(self) -> str:
        """The end of pebble's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def issuing_root(self) -> bytes:
        """The PEM root that signs the certificates this pebble issues."""
        reply = httpx.get(
            f"https://127.0.0.1:{self.management_port}/roots/0",
            verify=self.tls(),
            timeout=5,
        )
        reply.raise_for_status()
        return reply.content

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
