"""The domains capability's job failure codes (code → retryable), raised by its
workers: `specs/error-codes.md` lists them."""

from __future__ import annotations

from pressluft.jobs.failures import register_codes

__all__ = [
    "ACME_FAILED",
    "ACME_NOT_CONFIGURED",
    "ACME_UNREACHABLE",
    "CAA_FORBIDS",
    "CERTIFICATE_NOT_SERVED",
    "CODES",
    "DNS01_CREDENTIALS_INVALID",
    "DNS_MISMATCH",
    "DNS_UNAVAILABLE",
    "DOMAIN_GONE",
    "DOMAIN_INSTALL_FAILED",
    "PREVIEW_NOT_CONFIGURED",
]

#: A hostname's A/AAAA records do not point at the node (or there are none).
DNS_MISMATCH = "DNS_MISMATCH"
#: The hostname's CAA records do not allow the CA.
CAA_FORBIDS = "CAA_FORBIDS"
#: DNS did not answer (timeout, SERVFAIL): tried again.
DNS_UNAVAILABLE = "DNS_UNAVAILABLE"
#: The CA cannot be reached (connection refused, timeout): tried again.
ACME_UNREACHABLE = "ACME_UNREACHABLE"
#: The CA refused the order or a challenge failed (its problem in the message).
ACME_FAILED = "ACME_FAILED"
#: No ACME directory is set (settings).
ACME_NOT_CONFIGURED = "ACME_NOT_CONFIGURED"
#: After installing, the node does not serve the certificate it was given.
CERTIFICATE_NOT_SERVED = "CERTIFICATE_NOT_SERVED"
#: Writing the server block or the URL change on the node failed.
DOMAIN_INSTALL_FAILED = "DOMAIN_INSTALL_FAILED"
#: The domain or its environment is gone when the job runs.
DOMAIN_GONE = "DOMAIN_GONE"
#: The stored DNS-01 credentials do not fit the provider (or the provider has no adapter).
DNS01_CREDENTIALS_INVALID = "DNS01_CREDENTIALS_INVALID"
#: A preview wildcard was asked for without a preview domain and DNS-01 settings.
PREVIEW_NOT_CONFIGURED = "PREVIEW_NOT_CONFIGURED"

CODES = register_codes(
    {
        DNS_MISMATCH: False,
        CAA_FORBIDS: False,
        DNS_UNAVAILABLE: True,
        ACME_UNREACHABLE: True,
        ACME_FAILED: False,
        ACME_NOT_CONFIGURED: False,
        CERTIFICATE_NOT_SERVED: True,
        DOMAIN_INSTALL_FAILED: True,
        DOMAIN_GONE: False,
        DNS01_CREDENTIALS_INVALID: False,
        PREVIEW_NOT_CONFIGURED: False,
    }
)
