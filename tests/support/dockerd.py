"""A private Docker engine for the tests: started in a temp dir with the host's
firewall, forwarding and masquerading left alone and no default bridge
(`../shared/environment.md`), stopped by its PID at the end. Also builds a tiny
test image offline (busybox-static in an otherwise empty root filesystem), and
the node image with `pressluft node-image build` (cached by a hash of its inputs).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker

DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
NODE_IMAGE_CACHE = Path(
    os.environ.get("PRESSLUFT_NODE_IMAGE_CACHE", Path.home() / ".cache/pressluft/node-images")
)
BUSYBOX = Path("/bin/busybox")
TEST_IMAGE = "pressluft-test-busybox:1"


class PrivateDockerd:
    def __init__(self) -> None:
        if not Path(DOCKERD).exists():
            raise RuntimeError("dockerd is missing: `make test` installs docker.io")
        # A short path: the socket's must fit in sockaddr_un (108 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="pl-dockerd-"))
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateDockerd:
        log = (self.root / "dockerd.log").open("wb")
        argv = [DOCKERD, "--data-root", str(self.root / "data")]
        argv += ["--exec-root", str(self.root / "exec"), "-H", self.url]
        argv += ["--pidfile", str(self.root / "dockerd.pid"), "--bridge=none"]
        argv += ["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false"]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.DockerClient(base_url=self.url, timeout=5)
                client.ping()
                client.close()
                return self
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "dockerd.log").read_text(errors="replace")[-2000:]
                    self.stop()  # never leave it running
                    raise RuntimeError(f"dockerd did not start:\n{tail}") from None
                time.sleep(0.1)

    def build_test_image(self) -> str:
        """A root filesystem of busybox-static and its applets, imported as an image."""
        if not BUSYBOX.exists():
            raise RuntimeError("busybox is missing: `make test` installs busybox-static")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name in ("bin", "tmp", "proc", "sys", "dev", "etc"):
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)
            tar.add(str(BUSYBOX), arcname="bin/busybox")
            for applet in ("sh", "sleep", "cat", "echo", "ls"):
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
        client = docker.DockerClient(base_url=self.url, timeout=60)
        try:
            repository, tag = TEST_IMAGE.split(":")
            client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)
        finally:
            client.close()
        return TEST_IMAGE

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:  # containers first: dockerd leaves their shims otherwise
                client = docker.DockerClient(base_url=self.url, timeout=30)
                try:
                    for container in client.containers.list(all=True):
                        container.remove(force=True)
                    for network in client.networks.list():
                        if network.name not in ("bridge", "host", "none"):
                            network.remove()
                finally:
                    client.close()
            except Exception:  # the engine is stopped anyway
                pass
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        subprocess.run(["umount", "-R", str(self.root / "data")], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        os.environ.pop("PRESSLUFT_TEST_DOCKER", None)


def build_node_image(
    dockerd: PrivateDockerd, release: str = "bookworm"
) -> subprocess.CompletedProcess[str]:
    """`pressluft node-image build --release <release>` into `dockerd` (the tag on
    stdout; a cold build takes a minute or two, later ones find the cached tarball and
    image)."""
    return subprocess.run(
        [sys.executable, "-m", "pressluft", "node-image", "build", "--cache-dir",
         str(NODE_IMAGE_CACHE), "--docker-host", dockerd.url, "--release", release],
        capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip


def node_image(dockerd: PrivateDockerd, release: str = "bookworm") -> str:
    """The node image's tag of `release` in `dockerd`, built when missing."""
    built = build_node_image(dockerd, release)
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip()
