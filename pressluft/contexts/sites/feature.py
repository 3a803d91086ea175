"""The sites capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.sites.cache_workers import cache_workers
from pressluft.contexts.sites.events import (
    EnvironmentCacheChanged,
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentDeletionRequested,
    EnvironmentFailed,
    EnvironmentMagicLoginIssued,
    EnvironmentProvisioned,
    EnvironmentReleaseActivated,
    EnvironmentReleaseChangeRequested,
    EnvironmentReleaseChangeReverted,
    EnvironmentReleasesPruned,
    EnvironmentReset,
    EnvironmentRestored,
    EnvironmentRestoreRequested,
    EnvironmentRestoreReverted,
    SiteCreated,
    SiteReset,
)
from pressluft.contexts.sites.failures import CODES
from pressluft.contexts.sites.pages import PAGES
from pressluft.contexts.sites.projector import SITES_PROJECTOR
from pressluft.contexts.sites.routes import SITE_ROUTES
from pressluft.contexts.sites.service import Sites
from pressluft.contexts.sites.workers import site_workers
from pressluft.feature import Feature, Kernel, Parts

__all__ = ["FEATURE"]


def _assemble(kernel: Kernel) -> Parts:
    return Parts(
        workers=[*site_workers(kernel.config.wordpress_source), *cache_workers()],
        services={"sites": Sites(kernel.db, kernel.writer, kernel.vault)},
    )


FEATURE = Feature(
    name="sites",
    events=(
        SiteCreated,
        EnvironmentCreated,
        EnvironmentProvisioned,
        EnvironmentFailed,
        EnvironmentMagicLoginIssued,
        EnvironmentDeletionRequested,
        EnvironmentDeleted,
        EnvironmentReset,
        SiteReset,
        EnvironmentCacheChanged,
        EnvironmentRestoreRequested,
        EnvironmentRestored,
        EnvironmentRestoreReverted,
        EnvironmentReleaseChangeRequested,
        EnvironmentReleaseActivated,
        EnvironmentReleaseChangeReverted,
        EnvironmentReleasesPruned,
    ),
    projectors=(SITES_PROJECTOR,),
    failure_codes=CODES,
    routes=tuple(SITE_ROUTES),
    pages=PAGES,
    templates=Path(str(resources.files("pressluft.contexts.sites") / "templates")),
    migrations=Path(str(resources.files("pressluft.contexts.sites") / "migrations")),
    assemble=_assemble,
)
