"""The settings capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.settings.events import SettingsChanged
from pressluft.contexts.settings.pages import PAGES
from pressluft.contexts.settings.projector import SETTINGS_PROJECTOR
from pressluft.contexts.settings.routes import SETTINGS_ROUTES
from pressluft.contexts.settings.service import Settings
from pressluft.feature import Feature, Parts

__all__ = ["FEATURE"]

FEATURE = Feature(
    name="settings",
    events=(SettingsChanged,),
    projectors=(SETTINGS_PROJECTOR,),
    routes=tuple(SETTINGS_ROUTES),
    pages=tuple(PAGES),
    templates=Path(str(resources.files("pressluft.contexts.settings") / "templates")),
    # The table is the core's (0002); changes after the capabilities got their own
    # migrations live here, in the one numbering.
    migrations=Path(str(resources.files("pressluft.contexts.settings") / "migrations")),
    assemble=lambda k: Parts(services={"settings": Settings(k.db, k.writer, k.vault)}),
)
