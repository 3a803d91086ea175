"""Magic login: a one-time URL into an environment's wp-admin, valid 60 s.

A direct query (no job, no lock, 10 s): the PHP helper on the node, run as the
environment's user, creates a single-use token (only its hash stays on the
node); the must-use plugin consumes it. Audited as `environment.magic_login_issued`
(the token is not in the event). Raw node output never reaches the response.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import msgspec

from pressluft.clock import format_ts
from pressluft.contexts.nodes import node_address
from pressluft.contexts.sites.events import EnvironmentMagicLoginIssued
from pressluft.contexts.sites.loaders import env_names
from pressluft.contexts.sites.probes import NodeAddress, login_token
from pressluft.contexts.sites.queries import get_environment
from pressluft.db import Database, WriteTx
from pressluft.errors import BadGateway, Conflict
from pressluft.events import Meta, append
from pressluft.logs import get_logger
from pressluft.vault import Vault

__all__ = ["MagicLogin", "issue_magic_login"]

log = get_logger("pressluft.sites")

TOKEN_SECONDS = 60


class EnvironmentNotActive(Conflict):
    code = "environment_not_active"


class WordPressHelperError(BadGateway):
    """The PHP helper on the node failed (its output stays in the daemon's log)."""

    code = "wp_helper_error"


class MagicLogin(msgspec.Struct, frozen=True, kw_only=True):
    login_url: str
    expires_at: str


async def issue_magic_login(
    db: Database, vault: Vault, environment_id: str, meta: Meta
) -> MagicLogin:
    """A one-time login URL for the environment's WordPress administrator."""

    def target(conn: sqlite3.Connection) -> tuple[str, str, str, str, NodeAddress | None]:
        env = get_environment(conn, environment_id)
        if env.status != "active":
            raise EnvironmentNotActive(
                f"the environment is {env.status}, not active",
                details={"status": env.status, "hint": "wait for its job, or reset it"},
            )
        address = node_address(conn, vault, env.node_id)
        return env.site_id, env.preview_url, env.node_id, env.admin_user, address

    site_id, preview_url, node_id, admin_user, address = await db.read(target)
    if address is None:
        raise EnvironmentNotActive("the environment's node is decommissioned")
    names = env_names(environment_id, site_id)
    # The environment's administrator by name (the site view names it), not "the first" —
    # unless the site's owner deleted or demoted it (then the helper falls back to it).
    stdout = await login_token(
        address, node_id, names["env_user"], names["env_root"], admin_user, TOKEN_SECONDS
    )
    try:
        answer = json.loads(stdout)
        token, expires = str(answer["token"]), int(answer["expires_at"])
        if not answer.get("ok") or len(token) != 64:
            raise ValueError("not ok")
    except (ValueError, KeyError, TypeError) as exc:
        # The helper's own words may name paths or WordPress internals: log, don't answer.
        log.warning(
            "the WordPress helper failed",
            extra={"environment_id": environment_id, "output": stdout[-2000:]},
        )
        raise WordPressHelperError(
            "WordPress on the node could not issue a login",
            details={"hint": "see the daemon's log; check the environment's health"},
        ) from exc
    if answer.get("fallback"):
        # The site's owner deleted or demoted the environment's administrator: the
        # helper issued the login for the site's first administrator instead.
        log.warning(
            "magic login as another administrator",
            extra={
                "environment_id": environment_id,
                "admin_user": admin_user,
                "user_login": str(answer.get("user_login")),
                "reason": str(answer["fallback"]),
            },
        )
    expires_at = format_ts(datetime.fromtimestamp(expires, UTC))

    def record(tx: WriteTx) -> None:
        event = EnvironmentMagicLoginIssued(environment_id=environment_id, expires_at=expires_at)
        append(tx, f"environment:{environment_id}", None, [event], meta)

    await db.write(record)
    return MagicLogin(
        login_url=f"{preview_url.rstrip('/')}/?pressluft_login={token}", expires_at=expires_at
    )
