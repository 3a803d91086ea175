"""The dashboard's settings page."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Template

from pressluft.contexts.access import Principal
from pressluft.contexts.domains import DNS01_PROVIDERS, credential_fields
from pressluft.contexts.settings.service import Settings
from pressluft.http.pages import PAGE

__all__ = ["PAGES"]


@get("/settings", include_in_schema=False, media_type="text/html", opt=PAGE)
async def settings_page(
    settings: NamedDependency[Settings], principal: NamedDependency[Principal]
) -> Template:
    return Template(
        template_name="settings.html",
        context={
            "page": "settings",
            "principal": principal,
            "settings": await settings.get(),
            # provider → its credential keys, an optional one marked `?` (app.js)
            "providers": {
                name: [key if required else f"{key}?" for key, required in credential_fields(name)]
                for name in DNS01_PROVIDERS
            },
        },
    )


PAGES = [settings_page]
