"""Sites: WordPress sites and their environments (production, staging,
clones), built and removed on their node; magic login.

Its `Feature` is in `feature.py`; other contexts use only what this package
exports: an environment as a command reads it, its names on its node and the
errors a command about an environment raises."""

from __future__ import annotations

from pressluft.contexts.sites.loaders import ENVIRONMENT_JOB, EnvironmentJob, env_names
from pressluft.contexts.sites.magic_login import EnvironmentNotActive
from pressluft.contexts.sites.queries import EnvironmentNotFound, EnvironmentView, get_environment

__all__ = [
    "ENVIRONMENT_JOB",
    "EnvironmentJob",
    "EnvironmentNotActive",
    "EnvironmentNotFound",
    "EnvironmentView",
    "env_names",
    "get_environment",
]
