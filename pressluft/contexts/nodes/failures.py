"""The nodes context's job failure codes (code → retryable), as its workers raise them."""

from __future__ import annotations

from pressluft.jobs.failures import register_codes

__all__ = ["CODES"]

CODES = register_codes(
    {
        # Nodes (direct SSH).
        "NODE_UNREACHABLE": True,
        "NODE_AUTH_FAILED": True,
        "HOST_KEY_MISMATCH": False,
        "NODE_NOT_CHECKED": False,
        # Machine providers (docker lab nodes).
        "PROVIDER_UNAVAILABLE": False,
        "NODE_IMAGE_MISSING": False,
        "LIMIT_NOT_ENFORCED": False,
        "DOCKER_ERROR": True,
        "CONTAINER_MISSING": False,
    }
)
