"""Every error response is the envelope `{code, message, details?}`.

One exception handler maps our `PressluftError`s by their status and code,
Litestar's own exceptions (validation, unknown route, wrong method, body too
large) into the same shape, a body cut short by a client that went away into a
400 nobody receives (no traceback: not our fault), and anything unexpected into
a 500 whose message names only the correlation id — the cause goes to the log.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.response import Redirect

from pressluft.api.contract import allowed_methods
from pressluft.errors import LoginRequired, PressluftError
from pressluft.logs import correlation_id, get_logger

__all__ = ["STATUS_CODES", "envelope", "error_response", "handle_exception"]

log = get_logger("pressluft.api")

#: The code used for a bare HTTP status (Litestar's own exceptions).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


#: Messages and details may quote the request (an id from the path, a parameter's
#: name): no text in an error is longer than this.
MESSAGE_MAX_CHARS = 500


def _cut(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MESSAGE_MAX_CHARS else value[: MESSAGE_MAX_CHARS - 1] + "…"
    if isinstance(value, dict):
        return {key: _cut(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item) for item in value]
    return value


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": _cut(message)}
    if details:
        body["details"] = _cut(details)
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    return Response(
        envelope(code, message, details),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]+)`")


def _field_errors(extra: Any) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        field = str(item.get("key", ""))
        unknown = _UNKNOWN_FIELD.search(message)
        if unknown:
            field, message = unknown[1], "unknown field"
        elif field == "data" and message == "'data'":
            field, message = "body", "a JSON request body is required"
        elif field == "data":
            field = "body"
        source = item.get("source")
        entry = {"field": field, "message": message}
        if source is not None:
            entry["in"] = str(getattr(source, "value", source))
        errors.append(entry)
    return errors


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The one exception handler of the app."""
    if isinstance(exc, LoginRequired):
        return Redirect("/login?next=" + quote(exc.next_path, safe="/"), status_code=303)
    if isinstance(exc, PressluftError):
        if exc.status >= 500:
            log.error("request failed: %s", exc.message, extra={"code": exc.code})
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, ValidationException):
        errors = _field_errors(exc.extra)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or str(exc.detail)
        return error_response(
            400,
            "bad_request",
            f"invalid request: {summary}",
            {"errors": errors} if errors else None,
        )
    if isinstance(exc, NotFoundException):
        return error_response(
            404,
            "not_found",
            f"no such resource: {request.method} {request.url.path}",
            {"hint": "see /api/docs for the routes this server has"},
        )
    if isinstance(exc, MethodNotAllowedException):
        allowed = allowed_methods(request.url.path) or []
        return error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}",
            {"allowed": allowed},
            headers={"Allow": ", ".join(allowed)} if allowed else None,
        )
    if isinstance(exc, HTTPException) and request.scope.get("state", {}).get("client_gone"):
        # Litestar's "client disconnected prematurely" (a 500) while reading the
        # body: the client's doing. No traceback; the answer reaches no one.
        log.info("the client closed the connection before sending its whole request")
        return error_response(
            400, "bad_request", "the client closed the connection before sending its whole request"
        )
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        code = STATUS_CODES.get(exc.status_code, "bad_request")
        message = str(exc.detail) if exc.detail else code.replace("_", " ")
        if exc.status_code == 400 and message.startswith("JSON is malformed"):
            message = "the request body is not valid JSON"
        return error_response(exc.status_code, code, message)
    log.error("unhandled error", exc_info=exc)
    return error_response(
        500,
        "internal_error",
        "internal error; the log has details under this correlation id",
        {"correlation_id": correlation_id.get() or "unknown"},
    )
