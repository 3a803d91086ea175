"""The application factory: one Litestar app serving the API, the dashboard and /metrics.

`create_asgi` is what gets served: the app wrapped in the request-context
middleware, which must also see requests no route matched (404s get the
correlation id and security headers too).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp

from pressluft.api.bodies import StrictBody
from pressluft.api.deps import (
    provide_context,
    provide_credential_watch,
    provide_principal,
)
from pressluft.api.errors import handle_exception
from pressluft.api.middleware import host_policy, request_context_middleware
from pressluft.api.params import query_guard
from pressluft.api.routes.contract import CONTRACT_ROUTES
from pressluft.api.security import access_guard, requirements
from pressluft.contexts.access.service import Access
from pressluft.runtime import Runtime
from pressluft.web import TEMPLATES_DIR, WEB_ROUTES

__all__ = ["create_app", "create_asgi", "guard_request", "request_guard"]


async def request_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Who asks (the access guard), then what (the query guard)."""
    await access_guard(connection, handler)
    await query_guard(connection, handler)


def _constant(value: object) -> Callable[[], object]:
    def provide() -> object:
        return value

    return provide


async def guard_request(request: Request[Any, Any, Any]) -> None:
    """`request_guard` as the app's before-request hook, for every handler (the route
    table test holds that no layer replaces it). Not a Litestar guard: Litestar calls
    each guard with a copy of the route handler (~16 µs, a tenth of a request's
    time); the hook runs at the same point (before parameters are parsed) with the
    handler the request was routed to."""
    await request_guard(request, request.route_handler)


def create_app(runtime: Runtime, *, own_runtime: bool = False) -> Litestar:
    """Build the app around `runtime`.

    With `own_runtime`, the app's lifespan starts and stops the runtime (tests
    with an in-process client); otherwise the server does (`pressluft.server`).
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        if own_runtime:
            await runtime.start()
        try:
            yield
        finally:
            if own_runtime:
                await runtime.stop()

    app = Litestar(
        route_handlers=[
            *(r for f in runtime.features for r in (*f.routes, *f.pages)),
            *CONTRACT_ROUTES,
            *WEB_ROUTES,
        ],
        dependencies={
            "ctx": Provide(provide_context, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
            "watch": Provide(provide_credential_watch, sync_to_thread=False),
            "site_sections": Provide(
                _constant(tuple(s for parts in runtime.parts for s in parts.site_sections)),
                use_cache=True,
                sync_to_thread=False,
            ),
            "backup_sources": Provide(
                _constant(tuple(s for parts in runtime.parts for s in parts.backup_sources)),
                use_cache=True,
                sync_to_thread=False,
            ),
            **{
                name: Provide(_constant(service), use_cache=True, sync_to_thread=False)
                for parts in runtime.parts
                for name, service in parts.services.items()
            },
        },
        before_request=guard_request,
        dto=StrictBody,
        exception_handlers={Exception: handle_exception},
        lifespan=[lifespan],
        template_config=TemplateConfig(
            directory=[
                Path(TEMPLATES_DIR),
                *(f.templates for f in runtime.features if f.templates is not None),
            ],
            engine=JinjaTemplateEngine,
        ),
        openapi_config=None,
        logging_config=None,
        request_max_body_size=runtime.config.max_body_bytes,
        debug=False,
    )
    app.state.runtime = runtime
    app.state.kernel = runtime.kernel
    app.state.access = runtime.service("access", Access)
    app.state.requirements = requirements()
    return app


def create_asgi(runtime: Runtime, *, own_runtime: bool = False) -> ASGIApp:
    """The served ASGI application: `create_app` inside the request-context middleware."""
    allows_host = host_policy(runtime.config.host, runtime.config.allowed_hosts)
    app = create_app(runtime, own_runtime=own_runtime)
    return request_context_middleware(runtime.metrics, allows_host)(app)
