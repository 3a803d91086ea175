"""The error tree: every failure a client can see, with its HTTP status and stable code.

    PressluftError                      500 internal_error
    ├── BadRequest                      400 bad_request
    ├── Unauthorized                    401 unauthorized
    │   └── LoginRequired               (dashboard pages: a redirect to /login)
    ├── Forbidden                       403 forbidden
    ├── NotFound                        404 not_found
    ├── MethodNotAllowed                405 method_not_allowed
    ├── Conflict                        409 conflict
    │   └── StreamConflict              409 conflict (an event stream moved)
    ├── PayloadTooLarge                 413 payload_too_large
    ├── UnsupportedMediaType            415 unsupported_media_type
    ├── RateLimited                     429 rate_limited (+ Retry-After)
    ├── ValidationFailed                422 validation_failed
    ├── ServiceUnavailable              503 service_unavailable
    └── DataDirLocked                   (CLI only) another process owns the data dir

Every code is registered in `specs/error-codes.md`; a test keeps the two in step.
The API renders any of these as the envelope `{code, message, details?}`; the raw
cause of an internal error goes to the log, never into a response.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "DataDirLocked",
    "Forbidden",
    "LoginRequired",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PressluftError",
    "RateLimited",
    "ServiceUnavailable",
    "StreamConflict",
    "Unauthorized",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class PressluftError(Exception):
    """Base of all errors Pressluft raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class BadRequest(PressluftError):
    """The request is malformed: bad JSON, unknown field, wrong type, failed schema."""

    status = 400
    code = "bad_request"


class Unauthorized(PressluftError):
    """No valid credentials were presented."""

    status = 401
    code = "unauthorized"


class LoginRequired(Unauthorized):
    """A dashboard page without a session: answered with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        super().__init__("log in to continue")
        self.next_path = next_path


class Forbidden(PressluftError):
    """The credentials are valid but not enough for this operation."""

    status = 403
    code = "forbidden"


class NotFound(PressluftError):
    """The addressed resource or route does not exist."""

    status = 404
    code = "not_found"


class MethodNotAllowed(PressluftError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


class Conflict(PressluftError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"


class StreamConflict(Conflict):
    """An append expected a stream version that is no longer current."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual}, not {expected}",
            details={
                "stream": stream,
                "expected_version": expected,
                "actual_version": actual,
                "hint": "re-read the resource and retry with its current version",
            },
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class PayloadTooLarge(PressluftError):
    """The request body is larger than the server accepts."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(PressluftError):
    """The request body is not of a media type the operation takes (JSON)."""

    status = 415
    code = "unsupported_media_type"


class RateLimited(PressluftError):
    """Too many attempts; `retry_after` seconds until the next may succeed."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(
            message,
            details={"retry_after": retry_after, "hint": f"retry in {retry_after} s"},
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class ValidationFailed(PressluftError):
    """The request is well-formed but its values break a rule."""

    status = 422
    code = "validation_failed"


class BadGateway(PressluftError):
    """A server Pressluft manages did not answer as needed (a direct node query)."""

    status = 502
    code = "bad_gateway"


class ServiceUnavailable(PressluftError):
    """A required part of the daemon is not working."""

    status = 503
    code = "service_unavailable"


class DataDirLocked(PressluftError):
    """Another Pressluft process holds the data directory."""

    code = "data_dir_locked"
