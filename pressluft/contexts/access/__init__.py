"""Access: users, sessions, API tokens, the principal of a request, rate limits.

Its `Feature` is in `feature.py`; other contexts use only what this package exports."""
