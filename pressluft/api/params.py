"""Strict requests: query parameters as the contract declares them, JSON bodies
only, no body where it declares none, and `Idempotency-Key` only where it is
declared, once.

`query_guard` (installed app-wide, after the access guard) refuses a query
parameter the operation does not declare (a misspelt filter would otherwise
answer with everything), one given twice, and an integer parameter that is not
written in digits (Litestar read `limit=1.0` as 1), and a request body sent to
an operation that takes none (`{"reason": …}` on a cancel would otherwise be
dropped without a word), and an `Idempotency-Key` given twice or sent to an
operation that does not take it (magic login issues a new URL each call: the
client would believe its retry safe). Litestar also turns the text `null` into None for
optional parameters; `query_int` and `query_choice` parse such parameters from
text instead. Every refusal is 400 naming the parameter or the body, but a body
that is not JSON where the operation takes one, which is 415. All of it runs after
the access guard: who asks comes first, so a caller without credentials or scope
learns nothing about the operation's request rules.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from litestar.connection import ASGIConnection, Request
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers.base import BaseRouteHandler

from pressluft.api.contract import load_contract
from pressluft.errors import BadRequest, UnsupportedMediaType
from pressluft.http.params import bad_query

__all__ = [
    "IDEMPOTENCY_KEY",
    "bodiless",
    "declared_queries",
    "idempotent",
    "query_guard",
]

IDEMPOTENCY_KEY = "Idempotency-Key"
_DIGITS = re.compile(r"[0-9]{1,19}")
_INTEGER = re.compile(r"-?[0-9]+")  # its range is the handler's to check
_METHODS = ("get", "put", "post", "patch", "delete")

#: Operations that ignore their query: uptime monitors and load balancers add
#: cache-busting parameters to health probes, and a refused probe reads as "down".
OPEN_QUERY = frozenset({"getHealth"})


@lru_cache(maxsize=1)
def bodiless() -> frozenset[str]:
    """operationIds of the operations whose contract declares no request body."""
    document = load_contract()
    return frozenset(
        str(op["operationId"])
        for item in (document.get("paths") or {}).values()
        for method in _METHODS
        if (op := item.get(method)) is not None and "requestBody" not in op
    )


@lru_cache(maxsize=1)
def idempotent() -> frozenset[str]:
    """operationIds of the operations that declare the `Idempotency-Key` header."""
    document = load_contract()
    shared = (document.get("components") or {}).get("parameters") or {}
    found = set()
    for item in (document.get("paths") or {}).values():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            for param in [*item.get("parameters", []), *op.get("parameters", [])]:
                if "$ref" in param:
                    param = shared[param["$ref"].rsplit("/", 1)[1]]
                if param.get("in") == "header" and param.get("name") == IDEMPOTENCY_KEY:
                    found.add(str(op["operationId"]))
    return frozenset(found)


@lru_cache(maxsize=1)
def declared_queries() -> dict[str, dict[str, bool]]:
    """operationId → {query parameter: whether it is an integer}, from the contract."""
    document = load_contract()
    shared = (document.get("components") or {}).get("parameters") or {}
    table: dict[str, dict[str, bool]] = {}
    for item in (document.get("paths") or {}).values():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            params: dict[str, bool] = {}
            for param in [*item.get("parameters", []), *op.get("parameters", [])]:
                if "$ref" in param:
                    param = shared[param["$ref"].rsplit("/", 1)[1]]
                if param.get("in") == "query":
                    kind = (param.get("schema") or {}).get("type")
                    kinds = kind if isinstance(kind, list) else [kind]
                    params[param["name"]] = "integer" in kinds
            table[str(op["operationId"])] = params
    return table


async def query_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Refuse query parameters the handler's operation does not take as given,
    and a body it does not take."""
    operation = getattr(handler, "operation_id", None)
    if not isinstance(operation, str) or operation in OPEN_QUERY:
        return  # a dashboard page, or a probe
    if operation not in bodiless() and not _json_or_none(connection):
        raise UnsupportedMediaType(
            "request bodies must be JSON",
            details={"hint": "send Content-Type: application/json"},
        )
    declared = declared_queries().get(operation, {})
    raw = connection.scope["query_string"].decode("latin-1")
    seen: set[str] = set()
    for name, value in parse_qsl(raw, keep_blank_values=True):
        if name not in declared:
            raise bad_query(name, _unknown(name, declared))
        if name in seen:
            raise bad_query(name, "given more than once")
        seen.add(name)
        if declared[name] and not _INTEGER.fullmatch(value):
            raise bad_query(name, "expected an integer, written in digits")
    keys = connection.headers.getall(IDEMPOTENCY_KEY.lower(), [])
    if keys and operation not in idempotent():
        raise _bad_key(
            "not taken by this operation",
            "send the request without it: a key cannot make this operation's retries safe",
        )
    if len(keys) > 1:
        raise _bad_key("given more than once", "send one key")
    if operation in bodiless() and await _has_body(connection):
        raise BadRequest(
            "invalid request: body: this operation takes no request body",
            details={
                "errors": [{"field": "body", "message": "not taken here", "in": "body"}],
                "hint": "send the request without a body",
            },
        )


def _bad_key(message: str, hint: str) -> BadRequest:
    return BadRequest(
        f"invalid request: {IDEMPOTENCY_KEY}: {message}",
        details={
            "errors": [{"field": IDEMPOTENCY_KEY, "message": message, "in": "header"}],
            "hint": hint,
        },
    )


def _json_or_none(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """The request sends no body, or one declared JSON (`application/json`, `+json`)."""
    length = connection.headers.get("content-length")
    if length is not None and length.strip() in ("", "0"):
        return True
    if length is None and "transfer-encoding" not in connection.headers:
        return True
    media = connection.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def _has_body(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    length = connection.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    if "transfer-encoding" not in connection.headers:
        return False
    # Chunked, of unknown length: some clients send an empty one. Read up to its
    # first bytes (the operation takes no body, so nothing else will; reading it
    # whole would answer a large one 413, which such an operation does not declare).
    if isinstance(connection, Request):
        try:
            async for chunk in connection.stream():
                if chunk:
                    return True
        except RequestEntityTooLarge:
            return True
        return False
    return True


def _unknown(name: str, declared: dict[str, bool]) -> str:
    if not declared:
        return "not a parameter of this operation, which takes none"
    close = difflib.get_close_matches(name, list(declared), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"not a parameter of this operation ({hint}it takes {', '.join(sorted(declared))})"
