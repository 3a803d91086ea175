"""The printable-name rule for names people give things (sites, environments, tokens).

A name is shown in the dashboard, the CLI and logs: 1-100 printable characters
(no control, format or separator characters other than the space — so no NUL,
CR/LF, right-to-left override or zero-width character that would make
`abc\u202egpj.exe` read as "abcexe.jpg"), no surrounding spaces, and at least
one letter or digit (any script's; `_` is punctuation, so `___` is no name).

The contract's `PrintableName` pattern says as much as a pattern can that means
the same in ECMA-262 and Python `re`; it is never stricter than this function.
"""

from __future__ import annotations

__all__ = ["NAME_RULE", "is_printable_name"]

NAME_RULE = "1-100 printable characters with a letter or digit, no surrounding spaces"


def is_printable_name(value: str) -> bool:
    return (
        1 <= len(value) <= 100
        and value.isprintable()
        and value.strip() == value
        and any(char.isalnum() for char in value)
    )
