"""Pressluft as an operator gets it: the wheel built from a source tree (today's, or
an old commit's), installed into a fresh virtual environment or a plain target
directory, and an environment for its processes in which no checkout is visible.
Installs use pip's own cache, so only the first run downloads."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Variables that would put another copy of Pressluft (or another interpreter's
#: packages) in front of the installed one.
_SHADOWING = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment with no Pressluft setting, no Python path
    variable and no PATH entry inside the repository (its .venv/bin)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PRESSLUFT_") and k not in _SHADOWING
    }
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not _inside(Path(p), REPO)]
    env["PATH"] = os.pathsep.join(path)
    env.update(extra)
    return env


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def build_wheel(source: Path, out: Path) -> Path:
    """`pip wheel --no-deps` of a source tree (hatchling, in pip's build isolation)."""
    out.mkdir(parents=True, exist_ok=True)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)]
    )
    (wheel,) = out.glob("pressluft-*.whl")
    return wheel


def install_venv(wheel: Path, venv: Path) -> Path:
    """A fresh virtual environment with the wheel and its dependencies; its bin dir."""
    _run([sys.executable, "-m", "venv", str(venv)], env=clean_env())
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
         env=clean_env())  # fmt: skip
    return venv / "bin"


def export_commit(commit: str, target: Path) -> Path:
    """The repository's tree at `commit` (needs history: CI runs on a full clone)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = target.with_suffix(".tar")
    with archive.open("wb") as out:
        done = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit],
            stdout=out, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(
            f"git archive {commit} failed (a shallow clone? the test needs history): {done.stderr}"
        )
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    archive.unlink()
    return target


def install_target(wheel: Path, target: Path) -> Path:
    """The wheel alone (no dependencies) in a plain directory, for PYTHONPATH."""
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
          str(wheel)], env=clean_env())  # fmt: skip
    return target
