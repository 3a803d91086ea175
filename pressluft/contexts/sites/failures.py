"""The sites capability's job failure codes (code → retryable), raised by its
workers: `specs/error-codes.md` lists them."""

from __future__ import annotations

from pressluft.jobs.failures import register_codes

__all__ = [
    "CODES",
    "ENV_CLONE_FAILED",
    "ENV_SOURCE_UNAVAILABLE",
    "SITE_HEALTH_FAILED",
    "SITE_INSTALL_FAILED",
]

#: A new environment did not pass its health checks.
SITE_HEALTH_FAILED = "SITE_HEALTH_FAILED"
#: WordPress's installer refused the request.
SITE_INSTALL_FAILED = "SITE_INSTALL_FAILED"
#: Copying the source environment or rewriting its URLs failed.
ENV_CLONE_FAILED = "ENV_CLONE_FAILED"
#: A clone's source is no longer active with a release when its job runs.
ENV_SOURCE_UNAVAILABLE = "ENV_SOURCE_UNAVAILABLE"

CODES = register_codes(
    {
        SITE_HEALTH_FAILED: True,
        SITE_INSTALL_FAILED: False,
        ENV_CLONE_FAILED: True,
        ENV_SOURCE_UNAVAILABLE: False,
    }
)
