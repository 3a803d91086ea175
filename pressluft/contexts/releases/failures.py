"""The releases capability's job failure codes (code → retryable), raised by its
workers: `specs/error-codes.md` lists them."""

from __future__ import annotations

from pressluft.jobs.failures import register_codes

__all__ = [
    "CODES",
    "RELEASE_FAILED",
    "RELEASE_GONE",
    "RELEASE_INTERRUPTED",
    "RELEASE_UNHEALTHY",
]

#: The release is no longer on the node (removed by hand): nothing was switched.
RELEASE_GONE = "RELEASE_GONE"
#: A step of the change failed on the node (its stderr in the message), or the node did
#: not answer before the switch.
RELEASE_FAILED = "RELEASE_FAILED"
#: The release failed its health checks: the node serves the previous one again.
RELEASE_UNHEALTHY = "RELEASE_UNHEALTHY"
#: The daemon stopped during the change: the next attempt put back what was served.
RELEASE_INTERRUPTED = "RELEASE_INTERRUPTED"

CODES = register_codes(
    {
        RELEASE_FAILED: False,
        RELEASE_GONE: False,
        RELEASE_UNHEALTHY: False,
        RELEASE_INTERRUPTED: False,
    }
)
