"""The correlation id of a request: a well-formed `X-Request-ID`, or a new one.

Set in the context variable every log line reads (`pressluft.logs`) and in
`scope["state"]["correlation_id"]` (commands record it in their events' meta),
echoed as `X-Request-ID` on the response.
"""

from __future__ import annotations

import os
import re
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send

from pressluft.logs import correlation_id

__all__ = ["REQUEST_ID_PATTERN", "correlation", "header"]

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def header(scope: Any, name: bytes) -> str | None:
    """The first value of a request header (names are lower case in ASGI)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def correlation(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        supplied = header(scope, b"x-request-id")
        # 128 random bits as 32 hex digits (uuid4's shape, without building a UUID).
        rid = supplied if supplied and REQUEST_ID_PATTERN.match(supplied) else os.urandom(16).hex()
        echoed = (b"x-request-id", rid.encode())
        token = correlation_id.set(rid)
        scope.setdefault("state", {})["correlation_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)

    return middleware
