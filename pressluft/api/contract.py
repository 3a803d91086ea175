"""The OpenAPI contract: where it lives, and the operations it declares vs. the app's.

`openapi/pressluft.yaml` (a link to the package's `contract/pressluft.yaml`) is
the single source of truth for the HTTP API. The structural check compares the
set of (method, path, operationId, success status) of the file with the routes
the running app actually has. Dashboard pages and static files are not part of
the API and are excluded.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from litestar import Litestar

__all__ = [
    "Operation",
    "allowed_methods",
    "app_operations",
    "contract_bytes",
    "contract_operations",
    "contract_path",
    "is_api_path",
    "load_contract",
]

Operation = tuple[str, str, str, int]

_METHODS = ("get", "put", "post", "patch", "delete")


def contract_path() -> Path:
    """The contract file, a resource of the package (`openapi/pressluft.yaml` in a
    checkout links to it)."""
    return Path(str(resources.files("pressluft") / "contract" / "pressluft.yaml"))


@lru_cache(maxsize=1)
def contract_bytes() -> bytes:
    return contract_path().read_bytes()


@lru_cache(maxsize=1)
def load_contract() -> dict[str, Any]:
    document = yaml.safe_load(contract_bytes())
    if not isinstance(document, dict):
        raise ValueError("the OpenAPI document is not a mapping")
    return document


def _success(responses: dict[Any, Any]) -> int:
    codes = sorted(int(c) for c in responses if str(c).isdigit() and 200 <= int(c) < 300)
    if len(codes) != 1:
        raise ValueError(f"an operation must declare exactly one 2xx response, got {codes}")
    return codes[0]


def contract_operations(document: dict[str, Any] | None = None) -> set[Operation]:
    document = document or load_contract()
    ops: set[Operation] = set()
    for path, item in (document.get("paths") or {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is not None:
                ops.add(
                    (method.upper(), path, str(op.get("operationId")), _success(op["responses"]))
                )
    return ops


@lru_cache(maxsize=1)
def _path_methods() -> tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]:
    """(path pattern, its methods) per path."""
    table = []
    for template, item in (load_contract().get("paths") or {}).items():
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        methods = tuple(sorted(m.upper() for m in item if m in _METHODS))
        table.append((re.compile(regex), methods))
    return tuple(table)


def allowed_methods(path: str) -> list[str] | None:
    """The methods the contract declares for `path`; None if no operation matches it."""
    for pattern, methods in _path_methods():
        if pattern.match(path):
            return list(methods)
    return None


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


def app_operations(app: Litestar) -> set[Operation]:
    ops: set[Operation] = set()
    for route in app.routes:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        if not is_api_path(path):
            continue
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method in ("OPTIONS", "HEAD"):
                    continue
                ops.add((method, path, str(handler.operation_id), int(handler.status_code)))
    return ops
