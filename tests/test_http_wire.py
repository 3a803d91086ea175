"""The HTTP layer on the wire: raw sockets against a real `pressluft serve` — what
clients that break the protocol, or hang up half-way, get and leave behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
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


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the tests that leave nothing behind."""
    with Daemon(tmp_path_factory.mktemp("wire"), "serve") as running:
        yield running


def _exchange(port: int, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send `raw`, read until the server closes: status line, headers, body."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.spec("API-13")
@pytest.mark.parametrize(
    "raw",
    [
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\rb\r\n\r\n",  # bare CR
        b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x00b\r\n\r\n",  # NUL
        b"GET /api/h\xffealth HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",  # not UTF-8
        b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # smuggling
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS spoken to plain HTTP
    ],
    ids=["bare-cr", "nul", "bad-utf8", "cl-and-te", "tls-hello"],
)
def test_requests_that_do_not_parse_get_the_envelope(daemon: Daemon, raw: bytes) -> None:
    """uvicorn's parser refuses these before the app sees them; the answer is still
    the `{code, message, details?}` envelope with the security headers, not text."""
    import msgspec

    from pressluft.api.middleware import SECURITY_HEADERS

    status, headers, body = _exchange(daemon.port, raw)
    assert httpx.get(daemon.url + "/api/health").status_code == 200  # still serving
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    for name, value in SECURITY_HEADERS:
        assert headers[name.decode()] == value.decode()
    error = msgspec.json.decode(body)
    assert error["code"] == "bad_request" and error["message"]
    assert set(error) <= {"code", "message", "details"}
