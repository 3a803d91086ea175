"""Events of backups (stream `backup:<id>`), the storage targets (stream
`backup_target:<target id>`; the one target of before per-site targets: `backup_target`),
the sites' restic repositories (stream `backup_repository:<site>`), restore drills'
throwaway environments (stream `backup_drill:<job id>`) and the control plane's own
copies (stream `control_plane`)."""

from __future__ import annotations

from typing import Literal

from pressluft.events.types.base import Event

__all__ = [
    "LEGACY_TARGET_ID",
    "BackupCompleted",
    "BackupDrillOverdueNoticed",
    "BackupDrillStarted",
    "BackupDrillThrowawayRemoved",
    "BackupExpired",
    "BackupFailed",
    "BackupOverdueNoticed",
    "BackupRepositoryAdopted",
    "BackupRepositoryCreated",
    "BackupRequested",
    "BackupScheduleChanged",
    "BackupStarted",
    "BackupTargetConfigured",
    "BackupTargetRemoved",
    "BackupTargetRetired",
    "BackupVerificationFailed",
    "BackupVerified",
    "ControlPlaneCopyOverdueNoticed",
    "ControlPlaneCopyStored",
    "RecoveryKitExported",
]

Scope = Literal["db", "files", "full"]
Reason = Literal["manual", "scheduled", "pre_restore", "pre_update", "pre_promote", "pre_import"]

#: The target of the events of before per-site targets (no target id): the default one.
LEGACY_TARGET_ID = "legacy"


class BackupTargetConfigured(Event, frozen=True, tag="backup_target.configured"):
    """The S3-compatible target passed its probe (an object written, read back and
    deleted) and is where the backups of its scope go (active); its secret key is
    sealed in the vault. The same target again (same place and scope): a new key."""

    endpoint: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_id: str
    target_id: str = LEGACY_TARGET_ID
    #: The site whose own target it is; None: the default target.
    site_id: str | None = None


class BackupTargetRetired(Event, frozen=True, tag="backup_target.retired"):
    """The target was replaced or removed while backups are in it: none goes there
    any more; its secret stays sealed so they restore, download and expire."""

    target_id: str


class BackupTargetRemoved(Event, frozen=True, tag="backup_target.removed"):
    """The target is gone, its secret destroyed (the objects in the bucket stay):
    removed with no backup in it, or retired and its last backup expired."""

    target_id: str = LEGACY_TARGET_ID


class BackupRepositoryCreated(Event, frozen=True, tag="backup_repository.created"):
    """A site's restic repository in a target (its URL); its password is sealed in
    the vault."""

    site_id: str
    url: str
    secret_id: str
    target_id: str = LEGACY_TARGET_ID


class BackupRepositoryAdopted(Event, frozen=True, tag="backup_repository.adopted"):
    """A target of another scope at the repository's place took it over: its key opens
    the repository from now on (the site's new backups go on in it)."""

    site_id: str
    url: str
    target_id: str


class BackupRequested(Event, frozen=True, tag="backup.requested"):
    """A backup of an environment was asked for; its `backup_create` job takes it
    (pending). Kept until `retention_until` unless a newer rule keeps it longer."""

    backup_id: str
    site_id: str
    environment_id: str
    node_id: str
    scope: Scope
    reason: Reason
    job_id: str
    retention_until: str


class BackupStarted(Event, frozen=True, tag="backup.started"):
    """Its job began streaming it from the node (running)."""

    backup_id: str
    job_id: str
    storage_path: str


class BackupCompleted(Event, frozen=True, tag="backup.completed"):
    """Every object is stored and its checksum recorded (completed)."""

    backup_id: str
    job_id: str
    checksum: str
    size_bytes: int
    added_bytes: int
    #: The manifest: objects (name, snapshot, sha256, bytes), tables and row counts,
    #: file count and bytes, WordPress version, source URL.
    manifest: dict[str, object]


class BackupFailed(Event, frozen=True, tag="backup.failed"):
    """A backup another job took for itself failed (a backup job's own failure is its
    job's: the job ends failed and the backup with it)."""

    backup_id: str
    job_id: str
    code: str
    message: str


class BackupExpired(Event, frozen=True, tag="backup.expired"):
    """Its retention passed: the cleanup forgot its objects (expired)."""

    backup_id: str
    job_id: str


class BackupVerificationFailed(Event, frozen=True, tag="backup.verification_failed"):
    """A restore drill of it failed (its code and message): what an operator must see."""

    backup_id: str
    job_id: str
    code: str
    message: str


class BackupVerified(Event, frozen=True, tag="backup.verified"):
    """A restore drill restored it and compared it to its manifest."""

    backup_id: str
    job_id: str
    restore_seconds: float


class BackupScheduleChanged(Event, frozen=True, tag="backup_schedule.changed"):
    """An environment's scheduled backups: every `every_hours` hours (0: none)."""

    environment_id: str
    every_hours: int


class BackupOverdueNoticed(Event, frozen=True, tag="backup.overdue_noticed"):
    """A production environment has no completed backup for over 26 hours (recorded
    once until a backup completes): what an operator must see."""

    environment_id: str
    site_id: str
    #: Its last completed backup (None: never).
    last_backup_id: str | None
    last_completed_at: str | None


class BackupDrillOverdueNoticed(Event, frozen=True, tag="backup.drill_overdue_noticed"):
    """A production environment with a completed backup has had no backup proven by a
    restore drill for `overdue_hours` (twice `restore_drill_hours`) — the drills did not
    run or kept failing (recorded once until a drill passes): what an operator must see."""

    environment_id: str
    site_id: str
    overdue_hours: int
    #: Its last proven backup and when (None: never).
    last_verified_backup_id: str | None
    last_verified_at: str | None
    #: The last drill's failure (`outcome: CODE: message`; None when none failed).
    last_drill_error: str | None


class BackupDrillStarted(Event, frozen=True, tag="backup.drill_started"):
    """A restore drill (`job_id`) is about to build its throwaway environment on the
    node, recorded before anything there changes: until `backup.drill_throwaway_removed`
    it may be there (a drill killed with the daemon leaves it to the next drill)."""

    job_id: str
    backup_id: str
    site_id: str
    environment_id: str
    node_id: str
    throwaway_id: str


class BackupDrillThrowawayRemoved(Event, frozen=True, tag="backup.drill_throwaway_removed"):
    """The throwaway environment of drill `drill_job_id` is gone from its node, removed
    by job `job_id`: the drill itself, or the environment's next drill."""

    drill_job_id: str
    job_id: str
    site_id: str
    throwaway_id: str


class RecoveryKitExported(Event, frozen=True, tag="recovery_kit.exported"):
    """The recovery kit was exported (the key only as a vault id; the same key on
    every export): the control plane may back itself up."""

    secret_id: str


class ControlPlaneCopyStored(Event, frozen=True, tag="control_plane.copy_stored"):
    """The control plane's database and vault key are in its own repository."""

    snapshot_id: str
    job_id: str
    sha256: str
    size_bytes: int
    #: The event log's head in the copy.
    events: int


class ControlPlaneCopyOverdueNoticed(Event, frozen=True, tag="control_plane.copy_overdue_noticed"):
    """A target is configured and the control plane has no copy for over 24 hours
    (recorded once until a copy is stored): what an operator must see."""

    #: Its last copy and when (None: never).
    last_snapshot_id: str | None
    last_copied_at: str | None
    #: False: no recovery kit was exported, so no copy can be made.
    recovery_kit_exported: bool
