"""The asyncssh library, imported without its dependency's deprecation noise.

asyncssh (2.24) names cryptography's DSA types in annotations evaluated at import
time; cryptography (>= 48) deprecates them, so every process that imports asyncssh
printed five `CryptographyDeprecationWarning` tracebacks on stderr — every
command and every daemon start. They are not ours to fix and say nothing to an
operator, so this module ignores exactly that category when the warning is
attributed to an asyncssh module, then imports asyncssh. Every other warning,
ours included, is untouched (see `pressluft/__init__.py`). Import asyncssh only
from here.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh(\.|$)")

import asyncssh  # noqa: E402 — after the filter, which is the point of this module

__all__ = ["asyncssh"]
