"""The data directory: its layout, permissions and the single-owner lock.

<data dir>/            0700
  pressluft.db         the SQLite database (+ -wal, -shm)
  pressluft.lock       names the one daemon or CLI writer using the dir (the dir
                       itself is flocked: deleting this file does not unlock it)
  secrets/             0700: master.key (0600)
  jobs/                per-job working directories (later issues)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import NoReturn

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


#: Tries to lock a path that is swapped (renamed, deleted, recreated) while we lock it.
_LOCK_TRIES = 5
_HOLDER_FILE_NOTE = (
    "# The data directory itself is locked (flock); this file only names the holder.\n"
    "# Deleting it does not release the lock.\n"
)


class DataDirLock:
    """An exclusive lock on the data dir, so two writers never share one database.

    The lock is an `flock` on the data directory itself: a directory cannot be
    unlinked while it holds the database, so nobody sidesteps the lock by deleting
    a file that looks stale (a lock *file* can be deleted under its holder, and the
    next process then locks a new file with the same name). After locking, the
    descriptor must still be the directory at the path (not one renamed away
    meanwhile), or it tries again.

    `pressluft.lock` is locked as well (with the same identity check), so a
    daemon of an earlier version, which locks only that file, and this one
    exclude each other; it holds the holder's pid and purpose while held
    (emptied on release), for the operator and the refusal message.
    """

    def __init__(self, data_dir: Path, purpose: str) -> None:
        # Resolved: a data dir reached through a symlink (a volume mounted elsewhere)
        # is locked as the directory it names, and its identity checks compare alike.
        data_dir = data_dir.resolve()
        self.data_dir = data_dir
        self.path = data_dir / "pressluft.lock"
        self.purpose = purpose
        self._dir_fd: int | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        dir_fd = _lock_identical(self.data_dir, os.O_RDONLY | os.O_DIRECTORY)
        if dir_fd is None:
            self._refuse()
        try:
            fd = _lock_identical(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW)
        except BaseException:
            os.close(dir_fd)
            raise
        if fd is None:  # an earlier version's daemon, which locks only the file
            os.close(dir_fd)
            self._refuse()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.purpose})\n{_HOLDER_FILE_NOTE}".encode(), 0)
        self._dir_fd, self._fd = dir_fd, fd

    def _refuse(self) -> NoReturn:
        raise DataDirLocked(
            f"the data directory {self.data_dir} is in use by {self.holder()}",
            details={"hint": "stop the running daemon first, or use another --data-dir"},
        )

    def holder(self) -> str:
        """Who holds the lock, as well as can be told: `pid N (purpose)`."""
        try:
            recorded = self.path.read_text(errors="replace").partition("\n")[0].strip()
        except OSError:
            recorded = ""
        pid = _flock_holder(self.data_dir)
        if pid is None:
            return recorded or "another process"
        if recorded.startswith(f"pid {pid} "):
            return recorded
        return f"pid {pid}"

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._dir_fd is not None:
            fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
            os.close(self._dir_fd)
            self._dir_fd = None

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


def _lock_identical(path: Path, flags: int) -> int | None:
    """Open `path` and flock it (exclusive, non-blocking): the locked descriptor, or
    None when another process holds the lock. The descriptor must still be the
    file at `path` once locked (not one deleted or renamed away meanwhile)."""
    for _ in range(_LOCK_TRIES):
        fd = os.open(path, flags | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        held = os.fstat(fd)
        try:
            current = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            return fd
        os.close(fd)  # we locked a file no longer at the path: lock the one that is
    raise DataDirLocked(
        f"{path} keeps changing while it is being locked",
        details={"hint": "is another program deleting or replacing it?"},
    )


def _flock_holder(path: Path) -> int | None:
    """The pid that holds an exclusive flock on `path`, from /proc/locks (Linux)."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            table = locks.read()
    except OSError:
        return None
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2154892 0 EOF" ("->" marks a waiter)
        if fields[1:2] == ["FLOCK"] and fields[3:4] == ["WRITE"] and fields[5:6] == [inode]:
            return int(fields[4]) if fields[4].isdigit() else None
    return None
