"""The data directory: its layout, permissions and the single-owner lock.

<data dir>/            0700
  pressluft.db         the SQLite database (+ -wal, -shm)
  pressluft.lock       held (flock) by the one daemon or CLI writer using the dir
  secrets/             0700: master.key (0600)
  jobs/                per-job working directories (later issues)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from pressluft.errors import DataDirLocked

__all__ = ["DataDirLock", "prepare"]


def prepare(data_dir: Path) -> None:
    """Create the data directory tree with private permissions.

    The database file is created 0600 before SQLite opens it: SQLite gives its
    `-wal` and `-shm` files the same mode as the database file.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for sub in ("secrets", "jobs"):
        (data_dir / sub).mkdir(mode=0o700, exist_ok=True)
    database = data_dir / "pressluft.db"
    if not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))


class DataDirLock:
    """An exclusive lock on the data dir, so two writers never share one database."""

    def __init__(self, data_dir: Path, purpose: str) -> None:
        self.path = data_dir / "pressluft.lock"
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirLocked(
                f"the data directory {self.path.parent} is in use by {holder}",
                details={"hint": "stop the running daemon first, or use another --data-dir"},
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.purpose})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
