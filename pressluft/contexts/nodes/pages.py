"""The nodes context's dashboard page: `/nodes` (its table and actions talk to
`/api/nodes`, live through the event stream)."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Template

from pressluft.contexts.access import Principal
from pressluft.contexts.nodes.service import Nodes
from pressluft.http.pages import PAGE

__all__ = ["PAGES"]


@get("/nodes", include_in_schema=False, media_type="text/html", opt=PAGE)
async def nodes_page(
    principal: NamedDependency[Principal], nodes: NamedDependency[Nodes]
) -> Template:
    context = {"page": "nodes", "principal": principal, "lab_systemd": nodes.providers.lab_systemd}
    return Template(template_name="nodes.html", context=context)


PAGES = [nodes_page]
