"""The backups capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.backups.clone_worker import EnvFromBackup
from pressluft.contexts.backups.control_plane_worker import ControlPlaneBackup
from pressluft.contexts.backups.drill_worker import BackupVerify
from pressluft.contexts.backups.events import (
    BackupCompleted,
    BackupDrillOverdueNoticed,
    BackupDrillStarted,
    BackupDrillThrowawayRemoved,
    BackupExpired,
    BackupFailed,
    BackupOverdueNoticed,
    BackupRepositoryAdopted,
    BackupRepositoryCreated,
    BackupRequested,
    BackupScheduleChanged,
    BackupStarted,
    BackupTargetConfigured,
    BackupTargetRemoved,
    BackupTargetRetired,
    BackupVerificationFailed,
    BackupVerified,
    ControlPlaneCopyOverdueNoticed,
    ControlPlaneCopyStored,
    RecoveryKitExported,
)
from pressluft.contexts.backups.failures import CODES
from pressluft.contexts.backups.into_new import RestoreIntoNew
from pressluft.contexts.backups.pages import PAGES, backups_section
from pressluft.contexts.backups.projector import BACKUPS_PROJECTOR
from pressluft.contexts.backups.routes import BACKUP_ROUTES
from pressluft.contexts.backups.schedules import BackupScan
from pressluft.contexts.backups.service import Backups
from pressluft.contexts.backups.workers import (
    BackupCleanup,
    BackupCreate,
    Storage,
    backup_workers,
)
from pressluft.feature import Feature, Kernel, Parts
from pressluft.jobs.scheduler import Schedule

__all__ = ["FEATURE"]

#: The cleanup's interval (reference: every 6 h) and the scheduled backups' scan's.
CLEANUP_EVERY_SECONDS = 6 * 3600
SCAN_EVERY_SECONDS = 15 * 60
#: The control plane's own backup: its database is small and deduplicates.
CONTROL_PLANE_EVERY_SECONDS = 6 * 3600


def _assemble(kernel: Kernel) -> Parts:
    cleanup = Schedule(
        job_type=BackupCleanup.kind,
        every_seconds=CLEANUP_EVERY_SECONDS,
        first_after_seconds=300,
        node_lock="shared",
        max_attempts=BackupCleanup.max_attempts,
        timeout_seconds=BackupCleanup.timeout_seconds,
    )
    scan = Schedule(
        job_type=BackupScan.kind,
        every_seconds=SCAN_EVERY_SECONDS,
        first_after_seconds=120,
        node_lock="shared",
        max_attempts=BackupScan.max_attempts,
        timeout_seconds=BackupScan.timeout_seconds,
    )
    storage = Storage(kernel.config.data_dir / "cache" / "restic")
    own = Schedule(
        job_type=ControlPlaneBackup.kind,
        every_seconds=CONTROL_PLANE_EVERY_SECONDS,
        first_after_seconds=600,
        node_lock="shared",
        max_attempts=ControlPlaneBackup.max_attempts,
        timeout_seconds=ControlPlaneBackup.timeout_seconds,
    )
    return Parts(
        workers=[
            *backup_workers(storage),
            BackupVerify(storage),
            EnvFromBackup(storage),
            ControlPlaneBackup(kernel.config.data_dir, storage.cache_dir),
            BackupScan(BackupCreate, BackupVerify, kernel.config.restore_drill_hours),
        ],
        schedules=[cleanup, scan, own],
        services={"backups": Backups(kernel.db, kernel.writer, kernel.vault, storage.cache_dir)},
        site_sections=[backups_section()],
        backup_sources=[RestoreIntoNew(EnvFromBackup)],
    )


FEATURE = Feature(
    name="backups",
    events=(
        BackupTargetConfigured,
        BackupTargetRemoved,
        BackupTargetRetired,
        BackupRepositoryCreated,
        BackupRepositoryAdopted,
        BackupRequested,
        BackupStarted,
        BackupCompleted,
        BackupFailed,
        BackupOverdueNoticed,
        BackupExpired,
        BackupVerified,
        BackupVerificationFailed,
        BackupScheduleChanged,
        BackupOverdueNoticed,
        RecoveryKitExported,
        ControlPlaneCopyStored,
        BackupDrillStarted,
        BackupDrillThrowawayRemoved,
        BackupDrillOverdueNoticed,
        ControlPlaneCopyOverdueNoticed,
    ),
    projectors=(BACKUPS_PROJECTOR,),
    failure_codes=CODES,
    routes=tuple(BACKUP_ROUTES),
    pages=tuple(PAGES),
    templates=Path(str(resources.files("pressluft.contexts.backups") / "templates")),
    migrations=Path(str(resources.files("pressluft.contexts.backups") / "migrations")),
    assemble=_assemble,
)
