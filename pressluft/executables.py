"""Where the external programs Pressluft runs are found (ansible-playbook, …)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

__all__ = ["find_ansible_playbook"]


def find_ansible_playbook() -> str | None:
    """`ansible-playbook` on PATH, or next to this interpreter (a virtualenv)."""
    found = shutil.which("ansible-playbook")
    if found:
        return found
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.is_file() else None
