"""Secrets at rest: one master key and AES-GCM sealed rows.

The master key is 32 random bytes in `<data dir>/secrets/master.key` (0600),
created on first run (written to a temp file, fsynced, linked into place, the
directory fsynced) and never re-created while secrets sealed with it exist.
`seal` encrypts a secret into the `secrets` table inside the caller's
transaction and returns its id; events and state tables store only that id. The
secret's id and purpose are bound as associated data, so a sealed row cannot be
moved to another id. Losing the key loses every secret: back it up with the
database.
"""

from __future__ import annotations

import hashlib
import os
import secrets as _random
import sqlite3
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pressluft.ids import new_id

__all__ = ["Vault", "VaultError"]


class VaultError(RuntimeError):
    """A secret cannot be opened (missing, wrong key, tampered)."""


def _write_new_file(path: Path, content: bytes) -> None:
    """Create `path` (0600) with `content` durably and atomically; never overwrite."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)  # fails if another process created the key meanwhile
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Vault:
    """Seals and opens secrets with the data dir's master key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise VaultError("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"pressluft-key-id:" + key).hexdigest()[:16]

    @classmethod
    def load_or_create(cls, secrets_dir: Path, *, sealed: int = 0) -> Vault:
        """The data dir's vault; creates the key file (0600) on first use.

        Refuses to mint a new key while `sealed` secrets exist: they were sealed
        with the missing key, which has to be restored from a backup.
        """
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = secrets_dir / "master.key"
        if path.exists():
            if (path.stat().st_mode & 0o077) != 0:
                raise VaultError(f"{path} must be readable by its owner only (chmod 600)")
            key = path.read_bytes()
            if len(key) != 32:
                raise VaultError(f"{path} is not a Pressluft master key (expected 32 bytes)")
            return cls(key)
        if sealed:
            raise VaultError(
                f"the master key {path} is missing but {sealed} secret(s) are sealed with it; "
                "restore it from your backup of the data directory"
            )
        key = _random.token_bytes(32)
        _write_new_file(path, key)
        return cls(key)

    def seal(self, conn: sqlite3.Connection, purpose: str, plaintext: bytes, now: str) -> str:
        """Store `plaintext` encrypted; returns the new secret's id."""
        secret_id = "sec_" + new_id()
        nonce = _random.token_bytes(12)
        ciphertext = self._aead.encrypt(nonce, plaintext, self._aad(secret_id, purpose))
        conn.execute(
            "INSERT INTO secrets (id, purpose, key_id, nonce, ciphertext, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (secret_id, purpose, self.key_id, nonce, ciphertext, now),
        )
        return secret_id

    def open(self, conn: sqlite3.Connection, secret_id: str) -> bytes:
        row = conn.execute(
            "SELECT purpose, key_id, nonce, ciphertext FROM secrets WHERE id = ?", (secret_id,)
        ).fetchone()
        if row is None:
            raise VaultError(f"secret {secret_id} does not exist")
        purpose, key_id, nonce, ciphertext = row
        if key_id != self.key_id:
            raise VaultError(f"secret {secret_id} was sealed with another master key")
        try:
            return self._aead.decrypt(nonce, ciphertext, self._aad(secret_id, purpose))
        except InvalidTag:
            raise VaultError(f"secret {secret_id} failed authentication") from None

    @staticmethod
    def destroy(conn: sqlite3.Connection, secret_id: str) -> None:
        """Forget a secret for good (its ciphertext is deleted)."""
        conn.execute("DELETE FROM secrets WHERE id = ?", (secret_id,))

    @staticmethod
    def _aad(secret_id: str, purpose: str) -> bytes:
        return f"{secret_id}\x00{purpose}".encode()
