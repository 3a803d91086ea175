"""Query parameters as routes check them: strict integers and choices, 400 naming the field."""

from __future__ import annotations

import re

from pressluft.errors import BadRequest

__all__ = ["bad_query", "query_choice", "query_int"]

_DIGITS = re.compile(r"[0-9]{1,19}")


def bad_query(name: str, message: str) -> BadRequest:
    return BadRequest(
        f"invalid request: {name}: {message}",
        details={"errors": [{"field": name, "message": message, "in": "query"}]},
    )


def query_int(name: str, raw: str | None, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise bad_query(name, f"expected an integer from {low} to {high}")
    return int(raw)


def query_choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str | None:
    if raw is None:
        return None
    if raw not in choices:
        raise bad_query(name, f"expected one of {', '.join(choices)}")
    return raw
