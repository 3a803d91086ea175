"""Running the daemon: one process, one event loop, API + dashboard + background services.

uvicorn serves the app inside our own loop (`serve()`), on a socket we bind
first so a busy port is a clear error. Requests its parser refuses (a bare CR or
NUL in a header, bytes that are not a request line, `Content-Length` with
`Transfer-Encoding`) never reach the app; `_Protocol` answers them 400 with the
`{code, message}` envelope and the security headers instead of uvicorn's plain
text. What still cannot be wrapped: a failed TLS handshake (no HTTP is spoken),
and uvicorn's own plain 500 for an exception that escapes the app (Litestar's
handler catches every exception of a request; the request-context middleware
around it raises none of its own). SIGINT/SIGTERM stop accepting, let
in-flight requests finish (event streams end at once), stop the services and
close the database; the process then exits 0. Under systemd (`NOTIFY_SOCKET`)
it reports `READY=1` once it serves and `STOPPING=1` on the stop signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType

import msgspec
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pressluft.api.errors import envelope
from pressluft.api.middleware import HSTS_HEADER, SECURITY_HEADERS
from pressluft.app import create_asgi
from pressluft.clock import Clock
from pressluft.config import Config
from pressluft.logs import get_logger
from pressluft.runtime import Runtime
from pressluft.systemd import notify

__all__ = ["ServeError", "bind", "is_loopback", "serve"]

log = get_logger("pressluft.server")


class ServeError(RuntimeError):
    """The daemon cannot start (bad address, port in use)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only
    # then; without it every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock  # close-on-exec (Python's default): job processes must not hold it


#: The answer to a request that does not parse as HTTP/1.1.
MALFORMED_REQUEST = msgspec.json.encode(
    envelope(
        "bad_request",
        "malformed HTTP request: it does not parse as HTTP/1.1",
        {
            "hint": "check the request line and headers: no bare CR or NUL, ASCII request"
            " line, not both Content-Length and Transfer-Encoding"
        },
    )
)


class _Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering what its parser refuses with the envelope."""

    def send_400_response(self, msg: str) -> None:
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(MALFORMED_REQUEST)).encode()),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        if self.scheme == "https":
            headers.append(HSTS_HEADER)
        head.extend(name + b": " + value + b"\r\n" for name, value in headers)
        self.transport.write(b"".join([*head, b"\r\n", MALFORMED_REQUEST]))
        self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn, minus its habit of re-raising the stop signal after shutdown."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        notify("STOPPING=1")
        self._on_stop()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def _check_exposure(config: Config) -> None:
    """Fail closed: no clear-text credentials on the network unless explicitly allowed."""
    if bool(config.tls_cert_file) != bool(config.tls_key_file):
        raise ServeError("tls_cert_file and tls_key_file must be given together")
    for path in (config.tls_cert_file, config.tls_key_file):
        if path is not None and not os.access(path, os.R_OK):
            raise ServeError(f"cannot read {path}")
    if is_loopback(config.host) or config.tls:
        return
    if not config.insecure_http:
        raise ServeError(
            f"refusing to listen on {config.host} without TLS: passwords and tokens would "
            "cross the network in clear text. Set --tls-cert-file and --tls-key-file, or pass "
            "--insecure-http if something else encrypts the traffic"
        )
    log.warning(
        "serving plain HTTP on a non-loopback address: credentials travel in clear text",
        extra={"host": config.host},
    )


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    loop.call_soon_threadsafe(callback)


def _banner(runtime: Runtime, url: str) -> str:
    config = runtime.config
    lines = [
        f"Pressluft ({config.mode}) — data in {config.data_dir}",
        f"  Dashboard  {url}/",
        f"  API        {url}/api/   docs: {url}/api/docs",
        f"  Health     {url}/api/health",
        f"  Metrics    {url}/metrics",
    ]
    if runtime.initial_admin is not None:
        email, password = runtime.initial_admin
        lines += [
            "",
            f"First run: log in as {email} with password {password}",
            f"  (saved 0600 in {config.data_dir / 'initial-admin-password'}; shown only now."
            " Change it with `pressluft admin reset-password`.)",
        ]
        runtime.initial_admin = None
    elif runtime.user_count == 0:
        lines += [
            "",
            "No operator accounts yet: create the first admin with",
            "  pressluft admin create --email you@example.com",
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def serve(
    config: Config,
    clock: Clock | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Run the daemon until a stop signal; raises ServeError if it cannot start."""
    _check_exposure(config)
    sock = bind(config.host, config.port)
    runtime = Runtime(config, clock)
    try:
        await runtime.start()
    except BaseException:
        sock.close()
        raise
    loop = asyncio.get_running_loop()
    try:
        server = _Server(
            uvicorn.Config(
                create_asgi(runtime),
                http=_Protocol,
                log_config=None,
                access_log=False,
                lifespan="on",
                server_header=False,
                proxy_headers=False,
                ssl_certfile=config.tls_cert_file,
                ssl_keyfile=config.tls_key_file,
                timeout_graceful_shutdown=config.shutdown_timeout_seconds,
            ),
            on_stop=lambda: _call_soon(loop, runtime.stopping.set),
        )
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        url = f"{'https' if config.tls else 'http'}://{shown}:{port}"

        async def announce_when_ready() -> None:
            await server.ready.wait()
            announce(_banner(runtime, url))
            log.info("serving", extra={"url": url, "mode": config.mode})
            notify("READY=1")  # under systemd (Type=notify): started

        announcer = asyncio.create_task(announce_when_ready())
        try:
            await server.serve(sockets=[sock])
        finally:
            announcer.cancel()
    finally:
        sock.close()
        await runtime.stop()
