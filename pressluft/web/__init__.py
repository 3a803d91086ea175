"""The dashboard: server-rendered pages over the projections, plain JS from /static."""

from pressluft.web.routes import TEMPLATES_DIR, WEB_ROUTES

__all__ = ["TEMPLATES_DIR", "WEB_ROUTES"]
