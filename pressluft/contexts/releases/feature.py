"""The releases capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.releases.failures import CODES
from pressluft.contexts.releases.pages import releases_section
from pressluft.contexts.releases.routes import RELEASE_ROUTES
from pressluft.contexts.releases.service import Releases
from pressluft.contexts.releases.workers import release_workers
from pressluft.feature import Feature, Kernel, Parts

__all__ = ["FEATURE"]


def _assemble(kernel: Kernel) -> Parts:
    return Parts(
        workers=release_workers(kernel.config.releases_keep),
        services={"releases": Releases(kernel.db, kernel.writer)},
        site_sections=[releases_section()],
    )


FEATURE = Feature(
    name="releases",
    events=(),
    projectors=(),
    failure_codes=CODES,
    routes=tuple(RELEASE_ROUTES),
    pages=(),
    templates=Path(str(resources.files("pressluft.contexts.releases") / "templates")),
    migrations=None,
    assemble=_assemble,
)
