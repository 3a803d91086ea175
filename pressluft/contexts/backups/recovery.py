"""The recovery kit: what brings the control plane back on a fresh machine.

`pressluft recovery-kit export` creates the recovery key once (32 random bytes,
sealed in the vault; the password of the control plane's own repository
`{prefix}/control-plane` in the default backup target) and writes the kit: the key
and the default target with its secret key. Store it offline: with the bucket it restores every
node's key and every site's repository password. Exporting again gives the same key.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import Callable

import msgspec

from pressluft.contexts.backups.commands import (
    BackupNotConfigured,
    JobAccepted,
    target_in_effect,
)
from pressluft.contexts.backups.events import RecoveryKitExported
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.jobs.workers import JobWorker, NoArgs, enqueue_job
from pressluft.vault import Vault

__all__ = [
    "CONTROL_PLANE_PATH",
    "KIT_FORMAT",
    "ControlPlaneBackups",
    "RecoveryKit",
    "control_plane_backups",
    "export_kit_command",
    "parse_kit",
    "request_control_plane_backup",
]

KIT_FORMAT = "pressluft-recovery-kit/1"
#: Where under the target's prefix the control plane's own repository is.
CONTROL_PLANE_PATH = "control-plane"


class KitTarget(msgspec.Struct, frozen=True, kw_only=True):
    endpoint: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str


class RecoveryKit(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    recovery_key: str
    target: KitTarget
    exported_at: str
    instructions: str = (
        "Keep this file offline (a password manager, a printed copy in a safe). With it "
        "and the bucket, `pressluft restore-control-plane --kit <this file> --data-dir "
        "<empty dir>` brings back nodes, sites, keys and the event log on a new machine."
    )


def parse_kit(raw: bytes) -> RecoveryKit:
    """A kit file's contents (ValueError when it is not one)."""
    try:
        kit = msgspec.json.decode(raw, type=RecoveryKit)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a recovery kit: {exc}") from exc
    if kit.format != KIT_FORMAT:
        raise ValueError(f"not a recovery kit of this version ({kit.format!r})")
    return kit


def export_kit_command(vault: Vault, meta: Meta) -> Callable[[WriteTx], RecoveryKit]:
    """The kit; the recovery key is created (and sealed) on the first export."""

    def command(tx: WriteTx) -> RecoveryKit:
        target = tx.conn.execute(
            "SELECT endpoint, region, bucket, prefix, access_key_id, secret_id"
            " FROM backup_targets WHERE site_id IS NULL AND status = 'active'"
        ).fetchone()
        if target is None:
            raise BackupNotConfigured(
                "no backup target is configured: the kit names where the backups are",
                details={"hint": "configure one first: PUT /api/backup-target"},
            )
        row = tx.conn.execute("SELECT secret_id FROM recovery_kit WHERE id = 1").fetchone()
        if row is None:
            key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            secret_id = vault.seal(tx.conn, "recovery_key", key.encode(), tx.now_ts)
        else:
            secret_id = str(row[0])
            key = vault.open(tx.conn, secret_id).decode()
        append(tx, "recovery_kit", None, [RecoveryKitExported(secret_id=secret_id)], meta)
        endpoint, region, bucket, prefix, key_id, target_secret = target
        return RecoveryKit(
            format=KIT_FORMAT,
            recovery_key=key,
            target=KitTarget(
                endpoint=endpoint,
                region=region,
                bucket=bucket,
                prefix=prefix,
                access_key_id=key_id,
                secret_access_key=vault.open(tx.conn, target_secret).decode(),
            ),
            exported_at=tx.now_ts,
        )

    return command


class ControlPlaneCopy(msgspec.Struct, frozen=True, kw_only=True):
    snapshot_id: str
    job_id: str
    sha256: str
    size_bytes: int
    events: int
    created_at: str


class ControlPlaneBackups(msgspec.Struct, frozen=True, kw_only=True):
    #: When the recovery kit was last exported (None: never — no copy can be made).
    recovery_kit_exported_at: str | None
    items: list[ControlPlaneCopy]


def control_plane_backups(conn: sqlite3.Connection) -> ControlPlaneBackups:
    """The control plane's own copies, newest first (the last 50)."""
    kit = conn.execute("SELECT exported_at FROM recovery_kit WHERE id = 1").fetchone()
    rows = conn.execute(
        "SELECT snapshot_id, job_id, sha256, size_bytes, events, created_at"
        " FROM control_plane_backups ORDER BY created_at DESC LIMIT 50"
    ).fetchall()
    names = ("snapshot_id", "job_id", "sha256", "size_bytes", "events", "created_at")
    return ControlPlaneBackups(
        recovery_kit_exported_at=None if kit is None else str(kit[0]),
        items=[ControlPlaneCopy(**dict(zip(names, r, strict=True))) for r in rows],
    )


def request_control_plane_backup(
    meta: Meta, worker: type[JobWorker[NoArgs]]
) -> Callable[[WriteTx], JobAccepted]:
    """A copy of the control plane now (409 without a target or an exported kit)."""

    def command(tx: WriteTx) -> JobAccepted:
        if target_in_effect(tx.conn, None) is None:
            raise BackupNotConfigured(
                "no backup target is configured",
                details={"hint": "configure one first: PUT /api/backup-target"},
            )
        if tx.conn.execute("SELECT 1 FROM recovery_kit WHERE id = 1").fetchone() is None:
            raise BackupNotConfigured(
                "no recovery kit was exported: the copy would have no key",
                details={"hint": "run `pressluft recovery-kit export` and store the kit offline"},
            )
        return JobAccepted(job_id=enqueue_job(tx, worker, NoArgs(), meta))

    return command
