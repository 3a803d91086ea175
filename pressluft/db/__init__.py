"""Storage: SQLite connections, migrations and the group-committing writer."""

from pressluft.db.connection import SQLITE_MIN_VERSION, open_sync
from pressluft.db.database import (
    RETRY_AFTER_SECONDS,
    CommitInfo,
    Database,
    WriteTx,
    is_unavailable,
    unavailable,
    write_now,
)
from pressluft.db.migrate import (
    MigrationError,
    current_version,
    latest_version,
    migrate,
    migrate_file,
)

__all__ = [
    "RETRY_AFTER_SECONDS",
    "SQLITE_MIN_VERSION",
    "CommitInfo",
    "Database",
    "MigrationError",
    "WriteTx",
    "current_version",
    "is_unavailable",
    "latest_version",
    "migrate",
    "migrate_file",
    "open_sync",
    "unavailable",
    "write_now",
]
