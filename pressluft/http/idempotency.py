"""Idempotency keys: a retried mutation answers its first response instead of acting twice.

A request carrying `Idempotency-Key` runs its command through `guarded`, in
the command's own transaction: when the caller already used the key (and it
has not expired) with the same request fingerprint, the recorded response is
returned and the command does not run; with a different fingerprint the
request fails with 422 `idempotency_key_reused`; otherwise the command runs
and its response is recorded in the same transaction — so two concurrent
retries cannot both act (the single writer serializes them). Responses are
sealed in the vault (a new API token's secret is one). Only successful
responses are recorded: a failed request changed nothing and may be retried
with the same key. Keys belong to the actor and expire after
`idempotency_ttl_seconds`; the housekeeping job deletes expired ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

import msgspec

from pressluft.clock import format_ts
from pressluft.db import WriteTx
from pressluft.errors import ValidationFailed
from pressluft.vault import Vault

__all__ = ["Answered", "IdempotencyKeyReused", "fingerprint", "guarded", "prune_expired"]

T = TypeVar("T")

PURPOSE = "idempotent-response"


class IdempotencyKeyReused(ValidationFailed):
    """The key was used before with a different request."""

    code = "idempotency_key_reused"


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same": method, path (with query) and body bytes."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Answered(Generic[T]):
    """A command's result, and whether it is the replay of an earlier request's."""

    value: T
    replayed: bool


def guarded(
    vault: Vault,
    actor: str,
    key: str,
    print_: str,
    ttl_seconds: int,
    command: Callable[[WriteTx], T],
    result_type: type[T],
    status_code: int,
) -> Callable[[WriteTx], Answered[T]]:
    """`command`, run at most once per (actor, key) while the key lives."""

    def wrapped(tx: WriteTx) -> Answered[T]:
        row = tx.conn.execute(
            "SELECT fingerprint, response_ref FROM idempotency_keys"
            " WHERE actor = ? AND key = ? AND expires_at > ?",
            (actor, key, tx.now_ts),
        ).fetchone()
        if row is not None:
            if row[0] != print_:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used with a different request",
                    details={"hint": "use a new key for a new request"},
                )
            body = vault.open(tx.conn, row[1])
            return Answered(msgspec.json.decode(body, type=result_type), replayed=True)
        _forget(tx, actor, key)  # an expired use of the same key
        value = command(tx)
        ref = vault.seal(tx.conn, PURPOSE, msgspec.json.encode(value), tx.now_ts)
        expires = format_ts(tx.now + timedelta(seconds=ttl_seconds))
        tx.conn.execute(
            "INSERT INTO idempotency_keys (actor, key, fingerprint, status_code, response_ref,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (actor, key, print_, status_code, ref, tx.now_ts, expires),
        )
        return Answered(value, replayed=False)

    return wrapped


def _forget(tx: WriteTx, actor: str, key: str) -> None:
    row = tx.conn.execute(
        "DELETE FROM idempotency_keys WHERE actor = ? AND key = ? RETURNING response_ref",
        (actor, key),
    ).fetchone()
    if row is not None:
        Vault.destroy(tx.conn, row[0])


def prune_expired(tx: WriteTx) -> int:
    """Delete expired keys and their sealed responses; returns how many."""
    refs = tx.conn.execute(
        "DELETE FROM idempotency_keys WHERE expires_at <= ? RETURNING response_ref",
        (tx.now_ts,),
    ).fetchall()
    for (ref,) in refs:
        Vault.destroy(tx.conn, ref)
    return len(refs)
