"""Runs real `pressluft` processes for tests: start, wait until healthy, signal, read logs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pressluft_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pressluft", *args]


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pressluft_argv(*args),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Daemon:
    """One `pressluft dev|serve` process on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        mode: str = "dev",
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        port: int | None = None,
        pass_fds: tuple[int, ...] = (),
        command: tuple[str, ...] | None = None,
    ) -> None:
        self.workdir = workdir
        #: How `pressluft` is run: this interpreter's package unless told (an installed
        #: console script, another interpreter with its own PYTHONPATH).
        self.command = command or tuple(pressluft_argv())
        self.mode = mode
        self.port = port or free_port()
        self.pass_fds = pass_fds  # descriptors the daemon inherits (as from a careless parent)
        self.args = args
        base = {k: v for k, v in os.environ.items() if not k.startswith("PRESSLUFT_")}
        self.env = {**base, **(env or {})}
        if mode == "serve" and "--data-dir" not in args and "PRESSLUFT_DATA_DIR" not in self.env:
            # Never the machine's real /var/lib/pressluft.
            self.env["PRESSLUFT_DATA_DIR"] = str(workdir / "var-lib-pressluft")
        self.log_path = workdir / f"daemon-{self.port}-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._tokens: dict[tuple[str, ...], str] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        args = list(self.args)
        if "--data-dir" in args:
            return Path(args[args.index("--data-dir") + 1])
        if "PRESSLUFT_DATA_DIR" in self.env:
            return Path(self.env["PRESSLUFT_DATA_DIR"])
        return self.workdir / ".pressluft"

    def admin_credentials(self) -> tuple[str, str]:
        """The first-run admin of `dev`, or an admin created with the CLI for `serve`."""
        first_run = self.data_dir / "initial-admin-password"
        if first_run.exists():
            fields = dict(line.split(": ", 1) for line in first_run.read_text().splitlines())
            return fields["email"], fields["password"]
        email, password = "ops@example.com", "a long enough test password"
        env = {**self.env, "PRESSLUFT_DATA_DIR": str(self.data_dir)}
        result = subprocess.run(
            [*self.command, "admin", "create", "--email", email, "--password-stdin"],
            input=password + "\n",
            env=env,
            cwd=self.workdir,  # as the daemon: `-m` puts the working dir on sys.path
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode not in (0, 1):  # 1: it exists already
            raise AssertionError(result.stderr)
        return email, password

    def token(self, scopes: tuple[str, ...] = ("admin",)) -> str:
        """An API token, created through a real login."""
        if scopes in self._tokens:
            return self._tokens[scopes]
        email, password = self.admin_credentials()
        with httpx.Client(base_url=self.url, timeout=30) as http:
            login = http.post("/api/login", json={"email": email, "password": password})
            assert login.status_code == 200, login.text
            created = http.post(
                "/api/tokens",
                json={"name": "tests", "scopes": list(scopes)},
                headers={"Origin": self.url},
            )
            assert created.status_code == 201, created.text
        self._tokens[scopes] = created.json()["token"]
        return self._tokens[scopes]

    def auth(self, scopes: tuple[str, ...] = ("admin",)) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scopes)}"}

    def job_ended(self, job_id: str, within: float) -> dict[str, object]:
        """The job once it has ended (succeeded, failed or cancelled), asked each second."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            job = httpx.get(f"{self.url}/api/jobs/{job_id}", headers=self.auth()).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return dict(job)
            time.sleep(1)
        raise AssertionError(f"job {job_id} did not end within {within} s")

    def start(self) -> Daemon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.command, self.mode, "--port", str(self.port), *self.args],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=self.pass_fds,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> Daemon:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"daemon not healthy after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> Daemon:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()  # graceful; kills if it does not stop in time
