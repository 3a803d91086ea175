"""Sites: WordPress sites and their environments (production, staging,
clones), built and removed on their node; magic login.

Its `Feature` is in `feature.py`; other contexts use only what this package
exports: an environment as a command reads it, its names on its node, the errors
a command about an environment raises, and the page-cache purge a job runs after
changing what an environment serves, the HTTP health check, a throwaway clone
(built and removed on its node, never recorded: a restore drill's), the event of an
environment's deletion (other projectors drop what they keep of it), the events of a
restore (the backups capability records them; this one projects them); a section of a
site's page is a `SiteSection`."""

from __future__ import annotations

from pressluft.contexts.sites.cache_workers import purge_environment_cache
from pressluft.contexts.sites.events import (
    EnvironmentDeleted,
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
from pressluft.contexts.sites.workers import build_throwaway, check_http, remove_throwaway

__all__ = [
    "ENVIRONMENT_JOB",
    "EnvironmentDeleted",
    "EnvironmentJob",
    "EnvironmentNotActive",
    "EnvironmentNotFound",
    "EnvironmentRestoreRequested",
    "EnvironmentRestoreReverted",
    "EnvironmentRestored",
    "EnvironmentView",
    "SiteSection",
    "SiteView",
    "build_throwaway",
    "check_http",
    "env_names",
    "get_environment",
    "purge_environment_cache",
    "remove_throwaway",
]
