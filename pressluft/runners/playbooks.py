"""Which playbooks are Pressluft's: the manifest in the package's `ansible/`
directory, and the check that a directory holds what it names.

A checkout once resolved its `ansible/` directory beside the source tree; an
installed wheel resolved the same name to ansible-core's Python package in
site-packages, and every job failed with a confusing "playbook not found". So
the directory carries a manifest, `pressluft-playbooks.txt`: a header line
(`pressluft-playbooks 1`) that no other directory has, then the playbooks
Pressluft's jobs run, one file name a line (`#` starts a comment).
`tests/test_doctor_playbooks.py` keeps that list equal to the playbooks the
workers name.

`check_playbooks(dir)` answers for `pressluft doctor` (`deep`: every listed
playbook parses as plays and every role it uses is in `roles/`) and for the
daemon's health check (not deep: the manifest, `ansible.cfg` and the listed
files exist — a few stats). A failed check says what is wrong, where it looked
and what to do.

The manifest names files, not their hashes: an operator's edit of a playbook is
theirs to make (the profile revision recorded per provisioning shows it), while
a missing or foreign directory is never what anyone meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from pressluft.runners.ansible import ANSIBLE_DIR, _roles_of

__all__ = ["HEADER", "MANIFEST", "PlaybooksCheck", "check_playbooks", "read_manifest"]

MANIFEST = "pressluft-playbooks.txt"
HEADER = "pressluft-playbooks 1"
_REINSTALL = (
    "reinstall Pressluft (`pip install --force-reinstall pressluft`): its wheel carries them"
)


@dataclass(frozen=True)
class PlaybooksCheck:
    """`problem` None: the directory is Pressluft's and holds every listed playbook."""

    where: Path
    playbooks: tuple[str, ...] = ()
    problem: str | None = None
    hint: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def detail(self) -> str:
        if self.problem is None:
            return f"{len(self.playbooks)} playbooks ({', '.join(self.playbooks)}) at {self.where}"
        return f"{self.problem} (looked in {self.where}); hint: {self.hint}"


def read_manifest(ansible_dir: Path) -> tuple[str, ...] | None:
    """The playbooks the manifest names; None when there is no Pressluft manifest."""
    try:
        text = (ansible_dir / MANIFEST).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[0] != HEADER:
        return None
    return tuple(lines[1:])


def _foreign(ansible_dir: Path) -> str:
    """What a directory without the manifest looks like, for the message."""
    if (ansible_dir / "release.py").is_file() and (ansible_dir / "modules").is_dir():
        return "this is ansible-core's Python package, not Pressluft's playbooks"
    if (ansible_dir / "playbooks").is_dir():
        return f"a playbooks directory without Pressluft's manifest ({MANIFEST})"
    return f"no Pressluft manifest ({MANIFEST}) and no playbooks"


def _unusable(playbook: Path, roles_dir: Path) -> str | None:
    """Why a listed playbook cannot run: not plays, or a role it uses is missing."""
    try:
        plays = yaml.safe_load(playbook.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"{playbook.name} cannot be read ({type(exc).__name__})"
    if not isinstance(plays, list) or not all(isinstance(p, dict) for p in plays):
        return f"{playbook.name} is not a list of plays"
    missing = sorted(name for name in _roles_of(playbook) if not (roles_dir / name).is_dir())
    if missing:
        return f"{playbook.name} uses missing roles: {', '.join(missing)}"
    return None


def check_playbooks(ansible_dir: Path = ANSIBLE_DIR, *, deep: bool = True) -> PlaybooksCheck:
    """Is `ansible_dir` Pressluft's, with every playbook its manifest names?"""
    if not ansible_dir.is_dir():
        return PlaybooksCheck(ansible_dir, problem="the directory is missing", hint=_REINSTALL)
    playbooks = read_manifest(ansible_dir)
    if playbooks is None:
        return PlaybooksCheck(ansible_dir, problem=_foreign(ansible_dir), hint=_REINSTALL)
    if not playbooks:
        problem = "the manifest names no playbook"
        return PlaybooksCheck(ansible_dir, problem=problem, hint=_REINSTALL)
    missing = [name for name in playbooks if not (ansible_dir / "playbooks" / name).is_file()]
    if not (ansible_dir / "ansible.cfg").is_file():
        missing.insert(0, "ansible.cfg")
    if missing:
        problem = f"missing: {', '.join(missing)}"
        return PlaybooksCheck(ansible_dir, playbooks, problem=problem, hint=_REINSTALL)
    if deep:
        for name in playbooks:
            why = _unusable(ansible_dir / "playbooks" / name, ansible_dir / "roles")
            if why is not None:
                return PlaybooksCheck(ansible_dir, playbooks, problem=why, hint=_REINSTALL)
    return PlaybooksCheck(ansible_dir, playbooks)
