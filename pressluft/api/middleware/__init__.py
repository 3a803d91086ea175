"""What runs around every HTTP request, one concern per module, outermost first:

- `correlation`: accepts a well-formed `X-Request-ID` or generates one, exposes it
  to the code (context variable, `scope["state"]`), echoes it on the response;
- `access_log`: records latency and status by route template, writes one access
  line, and notes a client that goes away before its response starts (counted
  and logged as 499, `scope["state"]["client_gone"]` for the error handler);
- `headers`: the security headers on every response (and HSTS over TLS);
- `hosts`: 421 to requests addressed to a host name the daemon does not serve (a
  daemon bound to loopback answers only loopback names: no DNS rebinding);
- `options`: OPTIONS on API paths, answered from the contract's methods.

Each is plain ASGI. The order matters: the 421 and OPTIONS answers carry the
headers and the correlation id and are logged; the access line is written while
the correlation id is still set.
"""

from __future__ import annotations

from collections.abc import Callable

from litestar.types import ASGIApp

from pressluft.api.middleware.access_log import CLIENT_CLOSED_REQUEST, access_log
from pressluft.api.middleware.correlation import REQUEST_ID_PATTERN, correlation
from pressluft.api.middleware.headers import HSTS_HEADER, SECURITY_HEADERS, security_headers
from pressluft.api.middleware.hosts import host_policy, only_allowed_hosts
from pressluft.api.middleware.options import contract_options
from pressluft.metrics import Metrics

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "HSTS_HEADER",
    "REQUEST_ID_PATTERN",
    "SECURITY_HEADERS",
    "host_policy",
    "request_context_middleware",
]


def request_context_middleware(
    metrics: Metrics, allows_host: Callable[[str | None], bool] = lambda host: True
) -> Callable[[ASGIApp], ASGIApp]:
    """The layers around `app`, outermost first (see the module's docstring)."""

    def factory(app: ASGIApp) -> ASGIApp:
        inner = contract_options(app)
        inner = only_allowed_hosts(inner, allows_host)
        inner = security_headers(inner)
        inner = access_log(inner, metrics)
        return correlation(inner)

    return factory
