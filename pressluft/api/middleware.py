"""Request context: correlation id, security headers, metrics, access log.

Runs around every HTTP request as plain ASGI middleware:
- accepts a well-formed `X-Request-ID` or generates one, exposes it to the code
  (context variable, `scope["state"]`), echoes it on the response;
- answers 421 to requests addressed to a host name it does not serve (a daemon
  bound to loopback answers only loopback names: no DNS rebinding);
- answers OPTIONS on API paths with the contract's methods in `Allow`;
- adds the security headers to every response (and HSTS when served over TLS);
- records latency and status by route template, and writes one access line;
- notes a client that goes away before its response starts (mid-body, say):
  `scope["state"]["client_gone"]`, so the error handler treats the unreadable
  body as the client's doing, and the request is counted and logged as 499
  (nginx's "client closed request") — unless the server failed as well (a 5xx
  answer, or an exception out of the app): that stays a 5xx, the client's
  leaving does not hide it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import msgspec
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from pressluft.api.contract import allowed_methods, is_api_path
from pressluft.api.errors import envelope
from pressluft.logs import correlation_id, get_logger
from pressluft.metrics import Metrics

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "HSTS_HEADER",
    "REQUEST_ID_PATTERN",
    "SECURITY_HEADERS",
    "host_policy",
    "request_context_middleware",
]

log = get_logger("pressluft.http")

#: The status counted and logged for a request whose client went away before its
#: response started (nginx's convention; never sent: there is no one to send it to).
CLIENT_CLOSED_REQUEST = 499

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
)

#: Only over TLS: browsers then refuse plain HTTP to this host for a year.
HSTS_HEADER = (b"strict-transport-security", b"max-age=31536000")


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
_HOST_HINT = "use the address Pressluft listens on, or add the name to allowed_hosts"


def host_policy(bind_host: str, extra: tuple[str, ...]) -> Callable[[str | None], bool]:
    """Which `Host` headers to answer (against DNS rebinding of a loopback daemon).

    Bound to loopback: loopback names and `extra`. Bound elsewhere: anything, unless
    `extra` is given, then loopback names, the bind address and `extra`.
    """
    loopback_bound = bind_host in _LOOPBACK_NAMES or bind_host.startswith("127.")
    if not loopback_bound and not extra:
        return lambda host: True
    allowed = {*_LOOPBACK_NAMES, *extra, bind_host.lower()}

    def allows(host: str | None) -> bool:
        if host is None:
            return False
        name = host.strip().lower()
        if name.startswith("["):
            name = name.split("]", 1)[0] + "]"
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        return name in allowed or name.startswith("127.")

    return allows


def request_context_middleware(
    metrics: Metrics, allows_host: Callable[[str | None], bool] = lambda host: True
) -> Callable[[ASGIApp], ASGIApp]:
    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(asgi_scope: Scope, receive: Receive, send: Send) -> None:
            scope = cast(dict[str, Any], asgi_scope)
            if scope["type"] != "http":
                await app(asgi_scope, receive, send)
                return
            tls = scope.get("scheme") == "https"
            supplied = _header(scope, b"x-request-id")
            rid = supplied if supplied and REQUEST_ID_PATTERN.match(supplied) else uuid.uuid4().hex
            token = correlation_id.set(rid)
            scope.setdefault("state", {})["correlation_id"] = rid
            started = time.perf_counter()
            status = 500
            method = scope["method"]
            path = scope["path"]

            started_response = False
            client_gone = False
            failed = False

            async def receive_wrapper() -> ReceiveMessage:
                nonlocal client_gone
                message = await receive()
                if message["type"] == "http.disconnect" and not started_response:
                    client_gone = True
                    scope["state"]["client_gone"] = True
                return message

            async def send_wrapper(asgi_message: Message) -> None:
                nonlocal status, started_response
                message = cast(dict[str, Any], asgi_message)
                if message["type"] == "http.response.start":
                    started_response = True
                    status = message["status"]
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", rid.encode()))
                    headers.extend(SECURITY_HEADERS)
                    if tls:
                        headers.append(HSTS_HEADER)
                    message["headers"] = headers
                await send(asgi_message)

            try:
                if not allows_host(_header(scope, b"host")):
                    await _reply(
                        send_wrapper,
                        421,
                        envelope(
                            "misdirected_request",
                            "this server does not answer for that host name",
                            {"hint": _HOST_HINT},
                        ),
                    )
                    return
                if method == "OPTIONS" and is_api_path(path):
                    # Answered from the contract (Litestar's automatic OPTIONS
                    # lists only the methods registered first for a path).
                    allowed = allowed_methods(path)
                    if allowed is not None:
                        await _reply(
                            send_wrapper, 204, None, {"allow": ", ".join([*allowed, "OPTIONS"])}
                        )
                        return
                await app(asgi_scope, receive_wrapper, send_wrapper)
            except Exception:
                failed = True
                raise
            finally:
                if client_gone and _clients_doing(started_response, status, failed):
                    status = CLIENT_CLOSED_REQUEST
                elapsed = time.perf_counter() - started
                route = str(scope.get("path_template") or "<unmatched>")
                metrics.observe_request(method, route, status, elapsed)
                log.info(
                    "%s %s %s",
                    method,
                    path,
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
                correlation_id.reset(token)

        return middleware

    return factory


def _clients_doing(started_response: bool, status: int, failed: bool) -> bool:
    """Whether a request whose client went away ended as the client's doing: the
    client-gone answer (a 4xx) or no answer at all, not a server failure."""
    if started_response:
        return status < 500
    return not failed


async def _reply(
    send: Send, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> None:
    payload = b"" if body is None else msgspec.json.encode(body)
    raw_headers = [(b"content-length", str(len(payload)).encode())]
    if body is not None:
        raw_headers.append((b"content-type", b"application/json"))
    raw_headers.extend((k.encode(), v.encode()) for k, v in (headers or {}).items())
    start = {"type": "http.response.start", "status": status, "headers": raw_headers}
    await send(cast(Message, start))
    await send(cast(Message, {"type": "http.response.body", "body": payload}))
