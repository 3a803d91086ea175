"""Direct queries to an environment's node (no job, no lock, 10 s): the PHP
helper run as the environment's user, for a one-time login token."""

from __future__ import annotations

import json

from pressluft.contexts.nodes import NodeUnreachable
from pressluft.runners.ssh import NodeAddress, SSHQueryError, run_as

__all__ = ["HELPER", "NodeAddress", "login_token"]

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
