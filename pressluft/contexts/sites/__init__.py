"""Sites: WordPress sites and their environments (production, staging,
clones), built and removed on their node; magic login.

Its `Feature` is in `feature.py`; other contexts use only what this package
exports: an environment as a command reads it, its names on its node, the errors
a command about an environment raises, and the page-cache purge a job runs after
changing what an environment serves, the HTTP health check, a throwaway clone
(built and removed on its node, never recorded: a restore drill's), the event of an
environment's deletion (other projectors drop what they keep of it), the events of a
restore and of a release change (the backups and releases capabilities record them;
this one projects them), the health checks of what an environment serves; a section of a
site's page is a `SiteSection`. A restore into a new environment is a `BackupSource`
(the plan a `FromBackup`) whose job builds the copy with `EnvCreate.build_copy` and
records it built with `record_provisioned`."""

from __future__ import annotations

from pressluft.contexts.sites.cache_workers import purge_environment_cache
from pressluft.contexts.sites.environments import BackupSource, FromBackup
from pressluft.contexts.sites.events import (
    EnvironmentDeleted,
    EnvironmentReleaseActivated,
    EnvironmentReleaseChangeRequested,
    EnvironmentReleaseChangeReverted,
    EnvironmentReleasesPruned,
    EnvironmentRestored,
    EnvironmentRestoreRequested,
    EnvironmentRestoreReverted,
)
from pressluft.contexts.sites.loaders import ENVIRONMENT_JOB, EnvironmentJob, env_names
from pressluft.contexts.sites.magic_login import EnvironmentNotActive
from pressluft.contexts.sites.pages import SiteSection
from pressluft.contexts.sites.queries import (
    EnvironmentNotFound,
    EnvironmentView,
    SiteView,
    get_environment,
)
from pressluft.contexts.sites.workers import (
    WP_HELPER,
    EnvCreate,
    build_throwaway,
    built_release,
    check_environment,
    check_http,
    record_provisioned,
    remove_throwaway,
)

__all__ = [
    "ENVIRONMENT_JOB",
    "WP_HELPER",
    "BackupSource",
    "EnvCreate",
    "EnvironmentDeleted",
    "EnvironmentJob",
    "EnvironmentNotActive",
    "EnvironmentNotFound",
    "EnvironmentReleaseActivated",
    "EnvironmentReleaseChangeRequested",
    "EnvironmentReleaseChangeReverted",
    "EnvironmentReleasesPruned",
    "EnvironmentRestoreRequested",
    "EnvironmentRestoreReverted",
    "EnvironmentRestored",
    "EnvironmentView",
    "FromBackup",
    "SiteSection",
    "SiteView",
    "build_throwaway",
    "built_release",
    "check_environment",
    "check_http",
    "env_names",
    "get_environment",
    "purge_environment_cache",
    "record_provisioned",
    "remove_throwaway",
]
