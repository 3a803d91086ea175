"""The sites capability's job failure codes (code → retryable), raised by its
workers: `specs/error-codes.md` lists them."""

from __future__ import annotations

from pressluft.jobs.failures import register_codes

__all__ = [
    "CACHE_PURGE_FAILED",
    "CACHE_PURGE_UNVERIFIED",
    "CODES",
    "ENV_CLONE_FAILED",
    "ENV_NOT_ACTIVE",
    "ENV_SOURCE_UNAVAILABLE",
    "OBJECT_CACHE_UNAVAILABLE",
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

#: The node's privileged purge command failed or did not answer.
CACHE_PURGE_FAILED = "CACHE_PURGE_FAILED"
#: After a purge, a purged URL did not answer `X-FastCGI-Cache: MISS`.
CACHE_PURGE_UNVERIFIED = "CACHE_PURGE_UNVERIFIED"
#: A cache job's environment is no longer active when the job runs.
ENV_NOT_ACTIVE = "ENV_NOT_ACTIVE"
#: A toggle asked for the object cache, which the node's role does not apply yet.
OBJECT_CACHE_UNAVAILABLE = "OBJECT_CACHE_UNAVAILABLE"

CODES = register_codes(
    {
        CACHE_PURGE_FAILED: True,
        CACHE_PURGE_UNVERIFIED: True,
        ENV_NOT_ACTIVE: False,
        OBJECT_CACHE_UNAVAILABLE: False,
        SITE_HEALTH_FAILED: True,
        SITE_INSTALL_FAILED: False,
        ENV_CLONE_FAILED: True,
        ENV_SOURCE_UNAVAILABLE: False,
    }
)
