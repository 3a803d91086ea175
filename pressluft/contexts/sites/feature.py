"""The sites capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from pressluft.api.routes.sites import SITE_ROUTES
from pressluft.events.projectors import SITES_PROJECTOR
from pressluft.events.types.sites import (
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
