"""HTTP requests to a node's web server, addressed by the host name a site answers
to (a `Host` header to the node's endpoint: no DNS needed), with a hard timeout.
Used by the site health checks and the cache purge's verification."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

__all__ = ["HttpAnswer", "HttpUnreachable", "get"]


class HttpUnreachable(Exception):
    """No HTTP answer (refused, reset, timed out)."""


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    location: str | None
    #: The first 64 KiB of the body, decoded leniently.
    body: str
    #: The answer's headers (names lower-case; a repeated header's values joined by ", ").
    headers: dict[str, str] = field(default_factory=dict)


async def get(
    address: str, port: int, host: str, path: str = "/", seconds: float = 10.0
) -> HttpAnswer:
    """GET `path` from address:port as `host` within `seconds` (connect, headers and
    body each); redirects are not followed."""
    url = f"http://{address}:{port}{path}"
    try:
        async with (
            httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Host": host}) as response,
        ):
            chunks = []
            size = 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= 65536:
                    break
            body = b"".join(chunks)[:65536].decode("utf-8", "replace")
            headers = {k.lower(): ", ".join(response.headers.get_list(k)) for k in response.headers}
            return HttpAnswer(response.status_code, response.headers.get("location"), body, headers)
    except httpx.HTTPError as exc:
        raise HttpUnreachable(f"{type(exc).__name__}: {exc}") from exc
