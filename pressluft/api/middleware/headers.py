"""The security headers on every HTTP response, and HSTS when served over TLS."""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send

__all__ = ["HSTS_HEADER", "SECURITY_HEADERS", "security_headers"]

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

_OVER_TLS = (*SECURITY_HEADERS, HSTS_HEADER)


def security_headers(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        added = _OVER_TLS if scope.get("scheme") == "https" else SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
