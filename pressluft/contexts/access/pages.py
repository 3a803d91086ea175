"""The dashboard's login and API-token pages."""

from __future__ import annotations

import re
from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from pressluft.contexts.access.principals import Principal
from pressluft.contexts.access.service import Access
from pressluft.http.pages import PAGE

__all__ = ["PAGES", "safe_next"]

_SAFE_NEXT = re.compile(r"/[A-Za-z0-9/_.~-]*(\?[A-Za-z0-9/_.~=&%+-]*)?")


def safe_next(path: str) -> str:
    """A same-site path to return to after login; anything else becomes `/`.

    Browsers treat `/\\host` and `/<tab>/host` as `//host` (another site), so only
    plain path characters are allowed.
    """
    return path if _SAFE_NEXT.fullmatch(path) and not path.startswith("//") else "/"


@get("/login", include_in_schema=False, media_type="text/html", opt={"public": True})
async def login_page(
    access: NamedDependency[Access],
    next_path: Annotated[str, QueryParameter(name="next", max_length=2000)] = "/",
) -> Template:
    target = safe_next(next_path)  # never an open redirect
    return Template(
        template_name="login.html",
        context={"page": "login", "next": target, "has_users": await access.has_users()},
    )


@get("/tokens", include_in_schema=False, media_type="text/html", opt=PAGE)
async def tokens_page(principal: NamedDependency[Principal]) -> Template:
    return Template(template_name="tokens.html", context={"page": "tokens", "principal": principal})


PAGES = [login_page, tokens_page]
