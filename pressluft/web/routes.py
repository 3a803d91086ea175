"""The dashboard shell: its static files (JS, CSS). Every page is a context's
(`contexts/<name>/pages.py`, its templates beside it); the shell's templates
(`templates/`: the layout, the not-found page) are shared by all.

Forms and actions talk only to the public API (`/api/...`). Every page but
`/login` needs a session (the access guard redirects to `/login`); pages
receive the `principal` to show who is logged in.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "WEB_ROUTES"]

#: Resources of the installed package (a directory on disk: Litestar serves and
#: Jinja reads files), never paths beside a source tree.
_HERE = Path(str(resources.files("pressluft.web")))
TEMPLATES_DIR = _HERE / "templates"
STATIC_DIR = _HERE / "static"

WEB_ROUTES: list[ControllerRouterHandler] = [
    create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
]
