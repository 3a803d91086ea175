"""What the README's install test needs, offline: the install steps read from the
README, a Debian 12 image with systemd as PID 1 and the packages those steps ask
apt for, and a wheelhouse of Pressluft's dependencies.

The image is built with debootstrap (minbase bookworm + systemd, systemd-sysv,
dbus and the README's apt packages), its apt sources emptied (containers have no
network: `apt-get update` then reads nothing and `apt-get install -y` finds the
packages installed, so the README's apt lines run for real and change nothing),
and cached as a tarball named by a hash of its inputs under
~/.cache/pressluft/service-images. The wheelhouse (`pip wheel` of the checkout,
i.e. every dependency) is cached under ~/.cache/pressluft/wheelhouse by a hash of
pyproject.toml; Pressluft's own wheel is built fresh from the checkout each run.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import docker
from docker.errors import ImageNotFound

CACHE = Path(os.environ.get("PRESSLUFT_TEST_CACHE", Path.home() / ".cache/pressluft"))
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
#: What systemd as PID 1 needs in the image (the README's packages come on top).
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3")
#: Bump to rebuild the image with the mirror's current packages.
EPOCH = "1"
MARKER = "<!-- install-steps"


def install_steps(readme: str) -> str:
    """The fenced shell block right after the README's `<!-- install-steps … -->` line."""
    _, found, rest = readme.partition(MARKER)
    assert found, "README.md has no <!-- install-steps --> block"
    match = re.match(r"[^\n]*-->\n```sh\n(.*?)\n```\n", rest, re.DOTALL)
    assert match, "the install-steps marker must be followed by a ```sh block"
    return match.group(1)


def apt_packages(steps: str) -> list[str]:
    """The packages the steps' `apt-get install` lines name."""
    packages: set[str] = set()
    for line in steps.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["apt-get", "install"]:
            packages.update(w for w in words[2:] if not w.startswith("-"))
    return sorted(packages)


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def image_tag(packages: list[str]) -> str:
    inputs = f"{SUITE} {MIRROR} {_arch()} epoch={EPOCH} " + " ".join(
        sorted({*BASE_PACKAGES, *packages})
    )
    inputs += "\n" + inspect.getsource(_build_tarball)  # how it is built
    return f"pressluft-service-test:{SUITE}-{hashlib.sha256(inputs.encode()).hexdigest()[:16]}"


def _build_tarball(packages: list[str], tarball: Path) -> None:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise RuntimeError("building the service test image needs root and debootstrap")
    cache = CACHE / "service-images" / "debootstrap"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=tarball.parent))
    root = work / "rootfs"
    try:
        include = ",".join(sorted({*BASE_PACKAGES, *packages}))
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={include}",
             f"--cache-dir={cache}", SUITE, str(root), MIRROR],
            check=True, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        # No network in the container: no sources, so `apt-get update` reads nothing.
        (root / "etc/apt/sources.list").write_text("")
        for leftover in (root / "var/lib/apt/lists").glob("*_*"):
            leftover.unlink()
        (root / "etc/machine-id").write_text("")  # systemd makes one at boot
        (root / "etc/hostname").write_text("pressluft-server\n")
        for path in (root / "var/cache/apt/archives").glob("*.deb"):
            path.unlink()
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(root),
             "-cf", str(work / "rootfs.tar"), "."],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        (work / "rootfs.tar").replace(tarball)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{exc.cmd[0]} failed: {(exc.stderr or '')[-2000:]}") from None
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)


def service_image(docker_url: str, packages: list[str]) -> str:
    """The image's tag in the engine, built (or taken from the cache) and imported."""
    tag = image_tag(packages)
    tarball = CACHE / "service-images" / (tag.replace(":", "_") + ".tar")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    if not tarball.is_file():
        _build_tarball(packages, tarball)
    client = docker.DockerClient(base_url=docker_url, timeout=600)
    try:
        try:
            client.images.get(tag)
        except ImageNotFound:
            repository, _, version = tag.partition(":")
            client.api.import_image_from_file(
                str(tarball),
                repository=repository,
                tag=version,
                changes=['CMD ["/lib/systemd/systemd"]'],
            )
    finally:
        client.close()
    return tag


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


def wheelhouse(checkout: Path) -> Path:
    """Wheels of every dependency of the checkout (cached by pyproject.toml's hash)."""
    digest = hashlib.sha256((checkout / "pyproject.toml").read_bytes()).hexdigest()[:16]
    where = CACHE / "wheelhouse" / f"py{sys.version_info[0]}{sys.version_info[1]}-{digest}"
    if not (where / ".complete").exists():
        where.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix="partial-", dir=where.parent))
        _pip("wheel", "--quiet", "--wheel-dir", str(partial), str(checkout))
        for own in partial.glob("pressluft-*.whl"):
            own.unlink()  # built fresh each run
        (partial / ".complete").touch()
        shutil.rmtree(where, ignore_errors=True)
        partial.replace(where)
    return where


def build_wheel(checkout: Path, into: Path) -> Path:
    """The README's build step: `pip wheel --no-deps` of the checkout."""
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(checkout))
    (wheel,) = into.glob("pressluft-*.whl")
    return wheel
