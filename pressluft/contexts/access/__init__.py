"""Access: users, sessions, API tokens, the principal of a request, rate limits.

Its `Feature` is in `feature.py`. Other contexts use only what this package
exports: who is calling (the principal a page or route receives).
"""

from __future__ import annotations

from pressluft.contexts.access.principals import Principal

__all__ = ["Principal"]
