"""The HTTP layer on the wire: raw sockets against a real `pressluft serve` — what
clients that break the protocol, or hang up half-way, get and leave behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import Daemon


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(600):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def _series(metrics: str, name: str) -> list[str]:
    return [line for line in metrics.splitlines() if line.startswith(name + "{")]


@pytest.mark.spec("API-12")
def test_a_client_that_hangs_up_mid_body_is_a_client_error(tmp_path: Path) -> None:
    """`POST /api/login` announcing 100 bytes, sending 9 and closing: no traceback,
    no error-level line, no 5xx in the metrics, no login — a 499 (client closed)."""
    with Daemon(tmp_path, "serve") as daemon:
        auth = daemon.auth()
        before = httpx.get(daemon.url + "/api/metrics", headers=auth).json()["events_total"]
        with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
            sock.sendall(
                b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"email":'
            )
        # Its access line (the first is the admin's login above).
        _wait_for(lambda: daemon.output().count("POST /api/login ") == 2, "the access line")
        metrics = httpx.get(daemon.url + "/metrics", headers=auth).text
        after = httpx.get(daemon.url + "/api/metrics", headers=auth).json()["events_total"]
        output = daemon.output()
    requests = _series(metrics, "pressluft_http_requests_total")
    assert not [line for line in requests if 'status="5' in line], requests
    assert [line for line in requests if 'route="/api/login"' in line and 'status="499"' in line]
    assert "POST /api/login 499" in output
    assert "Traceback" not in output and "disconnected prematurely" not in output, output
    assert '"level":"error"' not in output, output
    assert after == before  # nobody logged in
