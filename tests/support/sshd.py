"""Real sshd test nodes on loopback (unprivileged config, private host key and
authorized_keys in a temp dir), for the node tests.

`SSHNode.start()` runs `sshd -D -e` on a free 127.0.0.1 port; `authorize()`
lets a public key in; `new_host_key()` restarts it with a fresh host key (a
"re-installed server"); `stop()` ends it by its PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SSHNode:
    def __init__(self, root: Path) -> None:
        if not SSHD.exists():
            raise RuntimeError("sshd is missing: `make test` installs openssh-server")
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.port = free_port()
        self.user = os.environ.get("USER") or "root"
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text("")
        self.process: subprocess.Popen[bytes] | None = None
        self._host_key_generation = 0

    @property
    def host_key_path(self) -> Path:
        return self.root / f"host_ed25519_{self._host_key_generation}"

    def fingerprint(self) -> str:
        """SHA256 fingerprint of the current host key (what the server's console shows)."""
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.host_key_path.with_suffix(".pub")), "-E", "sha256"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.split()[1]

    def _make_host_key(self) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key_path)],
            check=True,
        )

    def _config(self) -> Path:
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_path}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        return config

    def start(self) -> SSHNode:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        if not self.host_key_path.exists():
            self._make_host_key()
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self._config())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:  # ready when it accepts connections
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    code = self.process.poll()
                    self.stop()  # never leave it running
                    raise RuntimeError(f"sshd did not start (exit {code})") from None
                time.sleep(0.02)

    def authorize(self, public_line: str) -> None:
        with self.authorized_keys.open("a") as handle:
            handle.write(public_line.strip() + "\n")

    def new_host_key(self) -> None:
        """Restart with a fresh host key, as a re-installed server would."""
        self.stop()
        self._host_key_generation += 1
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
