"""Domains: custom domains of environments (DNS and CAA preflight, HTTP-01
certificates from the control plane's own ACME account, server blocks, the URL
change procedure) and the inventory of certificates.

Its `Feature` is in `feature.py`; other contexts use only what this package exports."""

from __future__ import annotations

__all__: list[str] = []
