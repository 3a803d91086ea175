"""Route handlers of the API, one module per resource."""

from litestar.types import ControllerRouterHandler

from pressluft.api.routes.access import ACCESS_ROUTES
from pressluft.api.routes.audit import AUDIT_ROUTES
from pressluft.api.routes.contract import CONTRACT_ROUTES
from pressluft.api.routes.events import EVENT_ROUTES
from pressluft.api.routes.health import HEALTH_ROUTES
from pressluft.api.routes.jobs import JOB_ROUTES
from pressluft.api.routes.metrics import METRICS_ROUTES
from pressluft.api.routes.nodes import NODE_ROUTES
from pressluft.api.routes.settings import SETTINGS_ROUTES
from pressluft.api.routes.sites import SITE_ROUTES
from pressluft.api.routes.tokens import TOKEN_ROUTES

__all__ = ["API_ROUTES"]

API_ROUTES: list[ControllerRouterHandler] = [
    *ACCESS_ROUTES,
    *AUDIT_ROUTES,
    *CONTRACT_ROUTES,
    *EVENT_ROUTES,
    *HEALTH_ROUTES,
    *JOB_ROUTES,
    *METRICS_ROUTES,
    *NODE_ROUTES,
    *SITE_ROUTES,
    *SETTINGS_ROUTES,
    *TOKEN_ROUTES,
]
