"""Sites: WordPress sites and their environments (production, staging,
clones), built and removed on their node; magic login.

Its `Feature` is in `feature.py`; other contexts use only what this package
exports: an environment as a command reads it, its names on its node, the errors
a command about an environment raises, and the page-cache purge a job runs after
changing what an environment serves, the event of an environment's deletion
(other projectors drop what they keep of it); a section of a site's page is a `SiteSection`."""

from __future__ import annotations

from pressluft.contexts.sites.cache_workers import purge_environment_cache
from pressluft.contexts.sites.events import EnvironmentDeleted
from pressluft.contexts.sites.loaders import ENVIRONMENT_JOB, EnvironmentJob, env_names
from pressluft.contexts.sites.magic_login import EnvironmentNotActive
from pressluft.contexts.sites.pages import SiteSection
from pressluft.contexts.sites.queries import (
    EnvironmentNotFound,
    EnvironmentView,
    SiteView,
    get_environment,
)

__all__ = [
    "ENVIRONMENT_JOB",
    "EnvironmentDeleted",
    "EnvironmentJob",
    "EnvironmentNotActive",
    "EnvironmentNotFound",
    "EnvironmentView",
    "SiteSection",
    "SiteView",
    "env_names",
    "get_environment",
    "purge_environment_cache",
]
