"""Direct queries to an environment's node (no job, no lock, 10 s): the PHP
helper run as the environment's user, for a one-time login token; how the node's
nginx answers a page (its cache status, for a purge's verification)."""

from __future__ import annotations

import json

from pressluft.contexts.nodes import NodeUnreachable
from pressluft.runners.http import HttpUnreachable, get
from pressluft.runners.ssh import NodeAddress, SSHQueryError, run_as

__all__ = ["HELPER", "HttpUnreachable", "NodeAddress", "cache_status", "login_token"]

HELPER = "/usr/local/lib/pressluft/pressluft-wp.php"


async def login_token(
    address: NodeAddress,
    node_id: str,
    env_user: str,
    env_root: str,
    admin_user: str,
    ttl_seconds: int,
) -> str:
    """The helper's raw answer to `login-token` for `admin_user` (JSON, unchecked);
    `NodeUnreachable` when the node does not answer."""
    request = json.dumps(
        {"command": "login-token", "user_login": admin_user, "ttl_seconds": ttl_seconds}
    )
    argv = ["php", HELPER, f"{env_root}/current"]
    try:
        return await run_as(address, env_user, argv, request)
    except SSHQueryError as exc:
        raise NodeUnreachable(
            f"the node did not answer: {exc}",
            details={"reason": exc.reason, "node_id": node_id},
        ) from exc


async def cache_status(
    address: str, port: int, netloc: str, path: str, seconds: float = 10.0
) -> tuple[int, str | None]:
    """GET `path` as `netloc` from the node's nginx at address:port: the HTTP status and
    the `X-FastCGI-Cache` header (None without one). `HttpUnreachable` without an answer."""
    answer = await get(address, port, netloc, path, seconds)
    return answer.status, answer.headers.get("x-fastcgi-cache")
