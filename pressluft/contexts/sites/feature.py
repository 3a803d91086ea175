"""The sites capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from pressluft.contexts.sites.events import (
    EnvironmentCreated,
    EnvironmentDeleted,
    EnvironmentDeletionRequested,
    EnvironmentFailed,
    EnvironmentMagicLoginIssued,
    EnvironmentProvisioned,
    EnvironmentReset,
    SiteCreated,
    SiteReset,
)
from pressluft.contexts.sites.projector import SITES_PROJECTOR
from pressluft.contexts.sites.routes import SITE_ROUTES
from pressluft.feature import Feature

__all__ = ["FEATURE"]

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
    ),
    projectors=(SITES_PROJECTOR,),
    routes=tuple(SITE_ROUTES),
)
