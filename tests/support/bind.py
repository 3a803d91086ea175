"""A real authoritative DNS server for the tests: BIND's `named` on a free loopback
port, serving the zone `test.` from a temp dir (writable journal), accepting
RFC 2136 dynamic updates signed with a generated TSIG key (`pressluft-test`,
hmac-sha256), no recursion. Tests set and remove records with `set()` /
`remove()` (dynamic updates with that key); `stop()` ends named by its PID.

named runs in the foreground (`-g`) as the current user; Debian's package is
`bind9` (`make system-deps` installs it). A missing named fails loudly.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update

from tests.support.sshd import free_port

NAMED = Path("/usr/sbin/named")
ZONE = "test."
KEY_NAME = "pressluft-test"
KEY_ALGORITHM = "hmac-sha256"


class BindServer:
    def __init__(self, root: Path | None = None) -> None:
        if not NAMED.exists():
            raise RuntimeError("named is missing: `make system-deps` installs bind9")
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="pl-bind-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.zone = ZONE
        self.key_name = KEY_NAME
        self.key_algorithm = KEY_ALGORITHM
        self.key_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.root / "named.log"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def _write_config(self) -> Path:
        (self.root / "test.zone").write_text(
            "\n".join(
                [
                    "$TTL 60",
                    "@ IN SOA ns1.test. hostmaster.test. 1 3600 600 86400 1",
                    "@ IN NS ns1.test.",
                    "ns1 IN A 127.0.0.1",
                    "",
                ]
            )
        )
        conf = self.root / "named.conf"
        conf.write_text(
            f"""
options {{
    directory "{self.root}";
    pid-file "{self.root}/named.pid";
    session-keyfile "{self.root}/session.key";
    managed-keys-directory "{self.root}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
    notify no;
    minimal-responses yes;
}};
controls {{ }};
key "{self.key_name}" {{
    algorithm {self.key_algorithm};
    secret "{self.key_secret}";
}};
zone "{self.zone}" {{
    type primary;
    file "{self.root}/test.zone";
    allow-update {{ key "{self.key_name}"; }};
}};
"""
        )
        return conf

    def start(self) -> BindServer:
        conf = self._write_config()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(NAMED), "-g", "-c", str(conf), "-p", str(self.port), "-n", "1"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"named exited ({self.process.returncode}):\n{self._tail()}")
            try:
                query = dns.message.make_query(self.zone, "SOA")
                answer = dns.query.udp(query, self.host, port=self.port, timeout=0.5)
                if answer.rcode() == dns.rcode.NOERROR and answer.answer:
                    return self
            except (OSError, dns.exception.Timeout):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"named did not answer within 20 s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

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

    # -- records -------------------------------------------------------------

    def _update(self) -> dns.update.Update:
        keyring = dns.tsigkeyring.from_text({self.key_name: self.key_secret})
        return dns.update.Update(
            self.zone, keyring=keyring, keyname=self.key_name, keyalgorithm=self.key_algorithm
        )

    def _send(self, update: dns.update.Update) -> None:
        answer = dns.query.tcp(update, self.host, port=self.port, timeout=5)
        if answer.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"update refused: {dns.rcode.to_text(answer.rcode())}")

    def set(self, name: str, rtype: str, values: list[str], ttl: int = 1) -> None:
        """Replace the `rtype` RRset of `name` (absolute, e.g. `www.example.test.`)."""
        update = self._update()
        update.replace(dns.name.from_text(name), ttl, rtype, *values)
        self._send(update)

    def add(self, name: str, rtype: str, value: str, ttl: int = 1) -> None:
        """Add one record to the `rtype` RRset of `name`."""
        update = self._update()
        update.add(dns.name.from_text(name), ttl, rtype, value)
        self._send(update)

    def discard(self, name: str, rtype: str, value: str) -> None:
        """Remove one record from the `rtype` RRset of `name`."""
        update = self._update()
        update.delete(dns.name.from_text(name), rtype, value)
        self._send(update)

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Delete the `rtype` RRset of `name` (every RRset when None)."""
        update = self._update()
        if rtype is None:
            update.delete(dns.name.from_text(name))
        else:
            update.delete(dns.name.from_text(name), rtype)
        self._send(update)

    def records(self, name: str, rtype: str) -> list[str]:
        """The RRset as named serves it now (text of each record), [] when absent."""
        query = dns.message.make_query(name, rtype)
        answer = dns.query.tcp(query, self.host, port=self.port, timeout=5)
        wanted = dns.rdatatype.from_text(rtype)
        return sorted(
            rdata.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rdata in rrset
        )
