"""What a context's dashboard pages share: the marker the access guard knows them by."""

from __future__ import annotations

__all__ = ["PAGE"]

#: Marks a dashboard page for the access guard (GET, needs a session).
PAGE = {"page": True}
