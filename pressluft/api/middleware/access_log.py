"""One access line and the request metrics per request, and a client gone early.

Latency and status are recorded by route template. A client that goes away
before its response starts (mid-body, say) is noted in
`scope["state"]["client_gone"]`, so the error handler treats the unreadable body
as the client's doing, and the request is counted and logged as 499 (nginx's
"client closed request") — unless the server failed as well (a 5xx answer, or an
exception out of the app): that stays a 5xx, the client's leaving does not hide it.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Send

from pressluft.logs import get_logger
from pressluft.metrics import Metrics

__all__ = ["CLIENT_CLOSED_REQUEST", "access_log"]

log = get_logger("pressluft.http")

#: The status counted and logged for a request whose client went away before its
#: response started (nginx's convention; never sent: there is no one to send it to).
CLIENT_CLOSED_REQUEST = 499


def access_log(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    async def middleware(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        started_response = False
        client_gone = False
        failed = False

        async def receive_noting_disconnect() -> ReceiveMessage:
            nonlocal client_gone
            message = await receive()
            if message["type"] == "http.disconnect" and not started_response:
                client_gone = True
                scope.setdefault("state", {})["client_gone"] = True
            return message

        async def send_noting_status(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive_noting_disconnect, send_noting_status)
        except Exception:
            failed = True
            raise
        finally:
            if client_gone and _clients_doing(started_response, status, failed):
                status = CLIENT_CLOSED_REQUEST
            elapsed = time.perf_counter() - started
            method = scope["method"]
            route = str(scope.get("path_template") or "<unmatched>")
            metrics.observe_request(method, route, status, elapsed)
            log.info(
                "%s %s %s",
                method,
                scope["path"],
                status,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
            )

    return middleware


def _clients_doing(started_response: bool, status: int, failed: bool) -> bool:
    """Whether a request whose client went away ended as the client's doing: the
    client-gone answer (a 4xx) or no answer at all, not a server failure."""
    if started_response:
        return status < 500
    return not failed
