"""Events of sites (stream `site:<id>`) and their environments (stream
`environment:<id>`): created, provisioned on their node (a release), failed,
reset, deleted; their cache flags changed; restored from a backup."""

from __future__ import annotations

from typing import Literal

from pressluft.events.types.base import Event

__all__ = [
    "EnvironmentCacheChanged",
    "EnvironmentCreated",
    "EnvironmentDeleted",
    "EnvironmentDeletionRequested",
    "EnvironmentFailed",
    "EnvironmentMagicLoginIssued",
    "EnvironmentProvisioned",
    "EnvironmentReset",
    "EnvironmentRestoreRequested",
    "EnvironmentRestoreReverted",
    "EnvironmentRestored",
    "SiteCreated",
    "SiteReset",
]


class SiteCreated(Event, frozen=True, tag="site.created"):
    site_id: str
    name: str
    slug: str
    #: The production environment, created with the site (`environment.created`).
    primary_environment_id: str


class EnvironmentCreated(Event, frozen=True, tag="environment.created"):
    """An environment was asked for; its job builds it on the node (status creating)."""

    environment_id: str
    site_id: str
    name: str
    slug: str
    environment_type: Literal["production", "staging", "clone"]
    node_id: str
    preview_url: str
    #: Sealed secrets (vault ids): the database password, the WordPress admin password.
    db_secret_id: str
    admin_secret_id: str
    source_environment_id: str | None = None
    promotion_preset: Literal["content-protect", "commerce-protect"] = "content-protect"
    fastcgi_cache_enabled: bool = True
    redis_cache_enabled: bool = True
    #: The WordPress administrator's login (magic login signs in as it); a clone's is
    #: its source's (copied with the database). None in events from before sites had
    #: their own: `pressluft-admin`.
    admin_user: str | None = None
    #: A copy of its source filled from this backup of it (the backups capability's
    #: job restores the backup into it), not the source as it is now.
    source_backup_id: str | None = None


class EnvironmentProvisioned(Event, frozen=True, tag="environment.provisioned"):
    """Its job built it and the health checks passed: it serves this release (active)."""

    environment_id: str
    job_id: str
    release_id: str
    release_path: str
    source_type: Literal["wordpress", "clone", "backup"]
    source_ref: str
    wordpress_version: str | None = None


class EnvironmentFailed(Event, frozen=True, tag="environment.failed"):
    """Its job (building or deleting it) failed for good: the environment is failed
    until an admin resets or deletes it; a production environment takes its site along."""

    environment_id: str
    job_id: str
    error_code: str


class EnvironmentMagicLoginIssued(Event, frozen=True, tag="environment.magic_login_issued"):
    """An operator got a one-time wp-admin login (the token itself is not recorded)."""

    environment_id: str
    expires_at: str


class EnvironmentDeletionRequested(Event, frozen=True, tag="environment.deletion_requested"):
    """An admin asked for its deletion; its job removes it from the node (deleting).
    Deleting a site's production environment deletes the site."""

    environment_id: str
    job_id: str


class EnvironmentDeleted(Event, frozen=True, tag="environment.deleted"):
    """Nothing of it is left on its node and its secrets are destroyed (deleted)."""

    environment_id: str
    job_id: str


class EnvironmentCacheChanged(Event, frozen=True, tag="environment.cache_changed"):
    """Its `env_cache_toggle` job applied these cache flags on the node (None: a flag
    the request left as it was)."""

    environment_id: str
    job_id: str
    fastcgi_cache_enabled: bool | None = None
    redis_cache_enabled: bool | None = None


class EnvironmentReset(Event, frozen=True, tag="environment.reset"):
    """An admin brought the failed environment back to active after its checks."""

    environment_id: str


class SiteReset(Event, frozen=True, tag="site.reset"):
    """An admin brought the failed site back to active after its checks."""

    site_id: str


class EnvironmentRestoreRequested(Event, frozen=True, tag="environment.restore_requested"):
    """Its `env_restore` job began to restore a backup into it (active → restoring)."""

    environment_id: str
    job_id: str
    backup_id: str


class EnvironmentRestored(Event, frozen=True, tag="environment.restored"):
    """The backup is served and the health checks passed (restoring → active). A
    restore of the files serves them in a new release; a database-only restore keeps
    the release (release_id None)."""

    environment_id: str
    job_id: str
    backup_id: str
    release_id: str | None = None
    release_path: str | None = None
    wordpress_version: str | None = None


class EnvironmentRestoreReverted(Event, frozen=True, tag="environment.restore_reverted"):
    """The restore failed or was interrupted: the node serves what it served before
    again (restoring → active, same release)."""

    environment_id: str
    job_id: str
    backup_id: str
    reason: str
