"""The failure taxonomy: every way a job can fail has a stable code and a retry rule.

Handlers raise `JobFailure(code, message)`; the retry rule comes from `CODES`
(`specs/error-codes.md` lists them). Retryable failures with attempts left go back
to the queue after the job type's backoff; everything else fails the job.
"""

from __future__ import annotations

__all__ = ["CODES", "JobCancelledError", "JobFailure", "retryable"]

#: code → retryable. Append-only, like the HTTP codes.
CODES: dict[str, bool] = {
    # The reference's table.
    "JOB_TIMEOUT": False,
    "ANSIBLE_TIMEOUT": True,
    "ANSIBLE_PLAY_ERROR": True,
    "ANSIBLE_HOST_FAILED": True,
    "ANSIBLE_HOST_UNREACHABLE": True,
    "ANSIBLE_SYNTAX_ERROR": False,
    "ANSIBLE_UNEXPECTED_ERROR": False,
    "ANSIBLE_UNKNOWN_EXIT": False,
    # Pressluft's.
    "LEASE_EXPIRED": True,
    "DAEMON_STOPPED": True,  # a graceful stop interrupted the attempt (not counted)
    "JOB_TYPE_UNKNOWN": False,
    "HANDLER_ERROR": False,
    "PROCESS_FAILED": False,
    "DIAGNOSTIC_RETRYABLE": True,
    "DIAGNOSTIC_FATAL": False,
    # Sites.
    "SITE_HEALTH_FAILED": True,
    "SITE_INSTALL_FAILED": False,
    "ENV_CLONE_FAILED": True,
    "ENV_SOURCE_UNAVAILABLE": False,
}


def register_codes(codes: dict[str, bool]) -> dict[str, bool]:
    """Add a capability's failure codes (code → retryable), from the module that
    raises them; returns `codes`. A code registered again must keep its rule."""
    for code, again in codes.items():
        if CODES.setdefault(code, again) != again:
            raise ValueError(f"job error code {code} registered with another retry rule")
    return codes


def retryable(code: str) -> bool:
    return CODES.get(code, False)


class JobFailure(Exception):
    """A handler's classified failure."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unregistered job error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        return retryable(self.code)


class JobCancelledError(Exception):
    """Raised by a worker (or its subprocess runner) that stopped because it was asked to."""
