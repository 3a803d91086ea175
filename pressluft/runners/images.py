"""The node image for the docker provider: built offline from a debootstrap root
filesystem with the whole stack baked in (provisioning needs no network), tagged
by a content hash of its inputs and rebuilt only when they change.

`image_tag(inputs)` hashes the package list, the build script, the node's init
script, the suite, the mirrors, the architecture and an `epoch` knob (bump it to
pick up package updates); the root filesystem tarball is not reproducible, so
the inputs — never the output — name the image. `build_tarball` runs
`image/build-rootfs.sh` (root, debootstrap) into a cache dir; `import_tarball`
imports it into a Docker engine with `node-init` as its command (a no-op when the
tag is there). Blocking; the CLI runs it.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FILES", "RELEASES", "ImageInputs", "build_tarball", "image_tag", "import_tarball"]

#: The build script, the package list and the node's init script.
FILES = Path(__file__).parent / "image"
_FORMAT = "1"
#: The Debian releases a node image is built from (and Pressluft supports on nodes).
RELEASES = ("bookworm", "trixie")


@dataclass(frozen=True)
class ImageInputs:
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    #: Bump to rebuild with the mirrors' current packages (same inputs otherwise).
    epoch: str = "0"


def _packages() -> list[str]:
    lines = (FILES / "packages.txt").read_text().splitlines()
    return sorted({line.split("#", 1)[0].strip() for line in lines} - {""})


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def image_tag(inputs: ImageInputs) -> str:
    digest = hashlib.sha256()
    for part in (
        f"format={_FORMAT}",
        f"suite={inputs.suite} mirror={inputs.mirror} security={inputs.security_mirror}",
        f"arch={_arch()} epoch={inputs.epoch}",
        *_packages(),
    ):
        digest.update(part.encode() + b"\n")
    for name in ("build-rootfs.sh", "node-init"):
        digest.update(f"== {name}\n".encode() + (FILES / name).read_bytes())
    return f"pressluft-node:{inputs.suite}-{digest.hexdigest()[:16]}"


def build_tarball(inputs: ImageInputs, cache_dir: Path, log: Callable[[str], None]) -> Path:
    """The root filesystem tarball for `inputs`, built unless the cache has it."""
    tag = image_tag(inputs)
    tarball = cache_dir / (tag.replace(":", "_") + ".tar")
    if tarball.is_file():
        log(f"cached: {tarball}")
        return tarball
    if os.geteuid() != 0:
        raise PermissionError("building the node image needs root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None:
        raise FileNotFoundError("debootstrap is missing (apt-get install debootstrap)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir))
    env = {
        **os.environ,
        "SUITE": inputs.suite,
        "MIRROR": inputs.mirror,
        "SECURITY_MIRROR": inputs.security_mirror,
        "CACHE": str(cache_dir / "packages"),
        "TAG": tag,
    }
    try:
        with subprocess.Popen(
            # Through bash, not its exec bit: an installer may not keep a package file's mode.
            ["bash", str(FILES / "build-rootfs.sh"), str(work)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as build:
            assert build.stdout is not None
            for line in build.stdout:
                log(line.rstrip())
        if build.returncode != 0:
            logs = sorted(work.glob("*.log"))
            tail = logs[-1].read_text(errors="replace")[-1500:] if logs else ""
            raise RuntimeError(f"the node image build failed (exit {build.returncode})\n{tail}")
        (work / "rootfs.tar").replace(tarball)
    finally:
        # The build unmounted what it mounted; a root filesystem holds no mounts now.
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    return tarball


def import_tarball(docker_url: str, tarball: Path, tag: str) -> bool:
    """Import `tarball` as `tag` into the engine; False when the tag was there."""
    import docker  # here: every `pressluft` command imports this module's callers
    from docker.errors import ImageNotFound

    client = docker.DockerClient(base_url=docker_url, timeout=600)
    try:
        try:
            client.images.get(tag)
            return False
        except ImageNotFound:
            pass
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=version,
            changes=[
                'CMD ["/usr/local/sbin/node-init"]',
                "EXPOSE 22 80 443",
                f"LABEL pressluft.image.inputs={tag}",
            ],
        )
        return True
    finally:
        client.close()
