"""The backups capability's job failure codes (code → retryable), raised by its
workers: `specs/error-codes.md` lists them."""

from __future__ import annotations

from pressluft.jobs.failures import register_codes

__all__ = [
    "BACKUP_CORRUPT",
    "BACKUP_ENGINE_FAILED",
    "BACKUP_ENGINE_MISSING",
    "BACKUP_NOT_CONFIGURED",
    "BACKUP_NOT_RESTORABLE",
    "BACKUP_PRE_OPERATION_FAILED",
    "BACKUP_REPOSITORY_LOCKED_OUT",
    "BACKUP_SOURCE_FAILED",
    "BACKUP_TARGET_AUTH_FAILED",
    "BACKUP_TARGET_UNREACHABLE",
    "CODES",
    "RESTORE_DRILL_FAILED",
    "RESTORE_FAILED",
    "RESTORE_INTERRUPTED",
]

#: No storage target is configured (settings → backups).
BACKUP_NOT_CONFIGURED = "BACKUP_NOT_CONFIGURED"
#: The storage target does not answer (connection refused, DNS, TLS): tried again.
BACKUP_TARGET_UNREACHABLE = "BACKUP_TARGET_UNREACHABLE"
#: The storage target refuses the access key.
BACKUP_TARGET_AUTH_FAILED = "BACKUP_TARGET_AUTH_FAILED"
#: The site's repository does not open with the password in the vault.
BACKUP_REPOSITORY_LOCKED_OUT = "BACKUP_REPOSITORY_LOCKED_OUT"
#: An object of the backup fails its checksum or its authentication (changed in the bucket).
BACKUP_CORRUPT = "BACKUP_CORRUPT"
#: restic failed otherwise (its last lines in the message): tried again.
BACKUP_ENGINE_FAILED = "BACKUP_ENGINE_FAILED"
#: restic is not installed on the control plane (`apt-get install restic`).
BACKUP_ENGINE_MISSING = "BACKUP_ENGINE_MISSING"
#: The node's dump or archive failed (its stderr in the message): tried again.
BACKUP_SOURCE_FAILED = "BACKUP_SOURCE_FAILED"
#: The backup cannot be restored here: another site's, not completed, expired, or
#: without the scope asked for.
BACKUP_NOT_RESTORABLE = "BACKUP_NOT_RESTORABLE"
#: The backup an operation takes first failed: the operation did not start.
BACKUP_PRE_OPERATION_FAILED = "BACKUP_PRE_OPERATION_FAILED"
#: The restored site failed its health checks: the node serves what it served before.
RESTORE_FAILED = "RESTORE_FAILED"
#: A restore drill's restore failed its checks or differs from the backup's manifest.
RESTORE_DRILL_FAILED = "RESTORE_DRILL_FAILED"
#: The daemon stopped during a restore: the next attempt put back what was served before.
RESTORE_INTERRUPTED = "RESTORE_INTERRUPTED"

CODES = register_codes(
    {
        BACKUP_NOT_CONFIGURED: False,
        BACKUP_TARGET_UNREACHABLE: True,
        BACKUP_TARGET_AUTH_FAILED: False,
        BACKUP_REPOSITORY_LOCKED_OUT: False,
        BACKUP_CORRUPT: False,
        BACKUP_ENGINE_FAILED: True,
        BACKUP_ENGINE_MISSING: False,
        BACKUP_SOURCE_FAILED: True,
        BACKUP_NOT_RESTORABLE: False,
        BACKUP_PRE_OPERATION_FAILED: False,
        RESTORE_FAILED: False,
        RESTORE_INTERRUPTED: False,
        RESTORE_DRILL_FAILED: False,
    }
)
