"""The installed wheel, for real: the package built from this tree, installed into a
fresh virtual environment in a temp dir, run from a scratch directory with no
checkout on `sys.path`, PYTHONPATH or PATH — and it creates and provisions a lab
node with the playbooks it carries and serves a WordPress site it created.

The node image is built (or found in the shared cache) by the installed package's
own `pressluft node-image build`: its build files come from the wheel too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from pressluft.runners.images import ImageInputs, image_tag
from tests.support.daemon import Daemon
from tests.support.dockerd import NODE_IMAGE_CACHE, PrivateDockerd
from tests.support.packaging import REPO, build_wheel, clean_env, install_venv

pytestmark = pytest.mark.daemon

#: Run-time files the wheel must carry (paths inside the installed package).
PACKAGE_FILES = (
    "ansible/pressluft-playbooks.txt",
    "ansible/ansible.cfg",
    "ansible/playbooks/node-provision.yml",
    "ansible/playbooks/site-create.yml",
    "ansible/roles/site_environment/files/pressluft-wp.php",
    "runners/image/build-rootfs.sh",
    "runners/image/node-init",
    "runners/image/packages.txt",
    "contract/pressluft.yaml",
    "db/migrations/0001_event_log.sql",
    "web/templates",
    "web/static",
    "contexts/sites/templates",
)


class Installed(NamedTuple):
    bin: Path
    package: Path  # the installed `pressluft` package directory
    scratch: Path  # a working directory outside the repository


def _run(installed: Installed, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `pressluft`, from the scratch directory, in a clean environment."""
    return subprocess.run(
        [str(installed.bin / "pressluft"), *args],
        cwd=installed.scratch,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    wheel = build_wheel(REPO, root / "dist")
    bin_dir = install_venv(wheel, root / "venv")
    scratch = root / "scratch"
    scratch.mkdir()
    probe = "import pressluft, sys; print(pressluft.__file__); print(sys.path)"
    shown = subprocess.run(
        [str(bin_dir / "python"), "-c", probe],
        cwd=scratch, env=clean_env(), capture_output=True, text=True, timeout=60, check=True,
    ).stdout.splitlines()  # fmt: skip
    package = Path(shown[0]).parent
    assert package.is_relative_to(root / "venv"), shown
    assert str(REPO) not in shown[1], shown[1]  # the checkout is nowhere on sys.path
    return Installed(bin_dir, package, scratch)


class Lab(NamedTuple):
    dockerd: PrivateDockerd
    tag: str


@pytest.fixture(scope="module")
def lab(installed: Installed) -> Iterator[Lab]:
    """A private dockerd with the node image, built by the installed package."""
    dockerd = PrivateDockerd().start()
    try:
        built = _run(
            installed, "node-image", "build", "--cache-dir", str(NODE_IMAGE_CACHE),
            "--docker-host", dockerd.url,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr[-3000:]
        tag = built.stdout.strip()
        assert tag == image_tag(ImageInputs()), built.stderr[-3000:]  # the same build files
        yield Lab(dockerd, tag)
    finally:
        dockerd.stop()


def _until_job_ends(daemon: Daemon, job_id: str, within: float) -> dict[str, object]:
    """The job once it has succeeded; its log in the failure when it ended otherwise."""
    job = daemon.job_ended(job_id, within)
    if job["status"] != "succeeded":
        log = httpx.get(f"{daemon.url}/api/jobs/{job_id}/log", headers=daemon.auth())
        raise AssertionError(f"{job}\n{log.text[-4000:]}")
    return job


@pytest.mark.spec("PKG-1")
def test_the_wheel_carries_every_run_time_file(installed: Installed) -> None:
    for name in PACKAGE_FILES:
        assert (installed.package / name).exists(), name
    # The build script runs through bash (whatever mode the installer left it with).
    script = installed.package / "runners" / "image" / "build-rootfs.sh"
    parsed = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert parsed.returncode == 0, parsed.stderr
    doctor = _run(installed, "doctor", "--data-dir", str(installed.scratch / "doctor"))
    line = next(x for x in doctor.stdout.splitlines() if " playbooks " in x)
    assert line.startswith("OK") and str(installed.package / "ansible") in line, doctor.stdout
    check = _run(installed, "openapi", "check")
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.spec("PKG-1", "DMN-17")
def test_the_installed_daemon_provisions_a_lab_node_and_serves_a_wordpress_site(
    installed: Installed, lab: Lab
) -> None:
    daemon = Daemon(
        installed.scratch / "daemon", mode="serve", command=(str(installed.bin / "pressluft"),)
    )
    daemon.env = clean_env(
        PRESSLUFT_DATA_DIR=str(installed.scratch / "data"),
        PRESSLUFT_DOCKER_HOST=lab.dockerd.url,
        PRESSLUFT_NODE_IMAGE=lab.tag,
    )
    with daemon:
        auth = daemon.auth()
        node = httpx.post(
            f"{daemon.url}/api/nodes", json={"provider": "docker", "name": "web"}, headers=auth
        ).json()
        _until_job_ends(daemon, node["job_id"], 300)
        provision = httpx.post(f"{daemon.url}/api/nodes/{node['node_id']}/provision", headers=auth)
        assert provision.status_code == 202, provision.text
        _until_job_ends(daemon, provision.json()["job_id"], 900)
        view = httpx.get(f"{daemon.url}/api/nodes/{node['node_id']}", headers=auth).json()
        assert view["status"] == "active", view
        http_port = view["ports"]["http"]

        title = "Installed Shop"
        reply = httpx.post(
            f"{daemon.url}/api/sites",
            json={"name": title, "slug": "shop", "node_id": node["node_id"], "title": title},
            headers=auth,
        )
        assert reply.status_code == 202, reply.text
        _until_job_ends(daemon, reply.json()["job_id"], 600)
        site = httpx.get(f"{daemon.url}/api/sites/{reply.json()['site_id']}", headers=auth).json()
        assert site["status"] == "active", site
        host = site["preview_url"].split("://", 1)[1]
        home = httpx.get(f"http://127.0.0.1:{http_port}/", headers={"Host": host}, timeout=30)
        assert home.status_code == 200 and title in home.text, home.text[:2000]
    # DMN-17 on the installed package: a whole life (start, a node's SSH and
    # playbooks, a site) with nothing from a third-party module on the console.
    out = daemon.output()
    assert "Warning" not in out, [x for x in out.splitlines() if "Warning" in x]
