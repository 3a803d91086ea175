"""Password hashing: argon2id, off the event loop's CPU.

Hashing and verifying take ~100 ms of CPU by design. They run in a small
executor whose threads release the loop's CPU pin (see `pressluft/affinity.py`),
so a login never stalls the loop. Verifying against an unknown account still
costs one verification (of a fixed dummy hash), so response times do not reveal
which emails exist.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import argon2

from pressluft.affinity import release_current_thread

__all__ = ["MIN_PASSWORD_LENGTH", "PasswordHasher", "password_problem"]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


def password_problem(password: str) -> str | None:
    """Why `password` is not acceptable for a new password, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"use at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"use at most {MAX_PASSWORD_LENGTH} characters"
    return None


class PasswordHasher:
    """argon2id with the library's default (RFC 9106 low-memory) parameters."""

    def __init__(self, workers: int = 2, max_pending: int = 16) -> None:
        self._argon = argon2.PasswordHasher()
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers
        #: Verifications allowed to wait at once; beyond, logins are turned away.
        self.max_pending = max_pending
        self.pending = 0
        self._dummy = self._argon.hash("pressluft-dummy-password")

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._workers,
                thread_name_prefix="pressluft-argon2",
                initializer=release_current_thread,
            )
        return self._pool

    def hash_sync(self, password: str) -> str:
        return self._argon.hash(password)

    def verify_sync(self, encoded: str | None, password: str) -> bool:
        try:
            return self._argon.verify(encoded or self._dummy, password) and encoded is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    async def hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor(), self.hash_sync, password
        )

    async def verify(self, encoded: str | None, password: str) -> bool:
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor(), self.verify_sync, encoded, password
            )
        finally:
            self.pending -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
