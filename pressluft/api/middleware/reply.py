"""A whole response sent by a middleware itself (a 421, an OPTIONS answer)."""

from __future__ import annotations

from typing import Any, cast

import msgspec
from litestar.types import Message, Send

__all__ = ["reply"]


async def reply(
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
