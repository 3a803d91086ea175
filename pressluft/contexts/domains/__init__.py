"""Domains: custom domains of environments (DNS and CAA preflight, HTTP-01
certificates from the control plane's own ACME account, server blocks, the URL
change procedure) and the inventory of certificates.

Its `Feature` is in `feature.py`; other contexts use only what this package exports:
the DNS-01 providers it has an adapter for and their credential rules (the settings
check the credentials they store with them)."""

from __future__ import annotations

from pressluft.contexts.domains.probes import (
    DNS01_PROVIDERS,
    Dns01CredentialsInvalid,
    credential_fields,
    dns01_provider,
)

__all__ = ["DNS01_PROVIDERS", "Dns01CredentialsInvalid", "credential_fields", "dns01_provider"]
