"""OPTIONS on API paths, answered from the contract: 204 with its methods in `Allow`
(Litestar's automatic OPTIONS lists only the methods registered first for a path)."""

from __future__ import annotations

from typing import Any

from litestar.types import ASGIApp, Receive, Send

from pressluft.api.contract import allowed_methods, is_api_path
from pressluft.api.middleware.reply import reply

__all__ = ["contract_options"]


def contract_options(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Any, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "OPTIONS"
            and is_api_path(scope["path"])
            and (allowed := allowed_methods(scope["path"])) is not None
        ):
            await reply(send, 204, None, {"allow": ", ".join([*allowed, "OPTIONS"])})
            return
        await app(scope, receive, send)

    return middleware
