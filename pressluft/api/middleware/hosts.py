"""Which `Host` a daemon answers: 421 for the others (no DNS rebinding of a
loopback daemon)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.types import ASGIApp, Receive, Send

from pressluft.api.errors import envelope
from pressluft.api.middleware.correlation import header
from pressluft.api.middleware.reply import reply

__all__ = ["host_policy", "only_allowed_hosts"]

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


def only_allowed_hosts(app: ASGIApp, allows_host: Callable[[str | None], bool]) -> ASGIApp:
    async def middleware(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not allows_host(header(scope, b"host")):
            body = envelope(
                "misdirected_request",
                "this server does not answer for that host name",
                {"hint": _HOST_HINT},
            )
            await reply(send, 421, body)
            return
        await app(scope, receive, send)

    return middleware
