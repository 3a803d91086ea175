"""A Debian 13 (trixie) lab node with systemd as PID 1, end to end (specs/nodes.md
NOD-36, NOD-37, NOD-38): the trixie node image on a private dockerd, a lab node
registered with `init: systemd`, provisioned twice (the playbooks' systemd branch:
units enabled and running), a WordPress site and its staging clone on it, a restart
of the node that systemd comes back from — and a node whose os-release says it is
another system, refused at the check.

One node and one site serve every test of the module (module-scoped engine,
runtime and client, in one event loop): a cold run builds the trixie image once
(a few minutes; later runs find it in ~/.cache/pressluft/node-images).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from pressluft.clock import FrozenClock
from pressluft.config import resolve
from pressluft.runners.docker import DockerLab
from pressluft.runners.images import ImageInputs, image_tag
from pressluft.runtime import Runtime
from tests.conftest import contract_client, make_token
from tests.support.dockerd import PrivateDockerd, node_image
from tests.support.jobs import job, log_lines, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: The stack's units on Debian 13 (PHP 8.4); nftables is a oneshot that stays active;
#: pressluft-cache-purge is the page cache's purge socket (specs/cache.md).
UNITS = (
    "nginx",
    "php8.4-fpm",
    "mariadb",
    "redis-server",
    "fail2ban",
    "nftables",
    "pressluft-cache-purge",
)


@dataclass
class Lab:
    dockerd: PrivateDockerd
    tag: str
    lab: DockerLab
    runtime: Runtime
    client: httpx.AsyncClient
    node_id: str = ""
    site: dict[str, str] | None = None


@pytest.fixture(scope="module")
def trixie_engine() -> Iterator[tuple[PrivateDockerd, str]]:
    """A private dockerd with the trixie node image (built, or found in its cache)."""
    dockerd = PrivateDockerd().start()
    try:
        yield dockerd, node_image(dockerd, "trixie")
    finally:
        dockerd.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    trixie_engine: tuple[PrivateDockerd, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Lab]:
    """A daemon whose lab nodes run the trixie image, and an admin's client."""
    dockerd, tag = trixie_engine
    data_dir: Path = tmp_path_factory.mktemp("trixie") / "data"
    overrides = {
        "data_dir": str(data_dir),
        "cpu_affinity": "off",
        "docker_host": dockerd.url,
        "node_image": tag,
        "lab_systemd": "true",
    }
    runtime = Runtime(resolve("serve", overrides, environ={})[0], FrozenClock())
    await runtime.start()
    lab = DockerLab(dockerd.url)
    try:
        token = await make_token(runtime, ["admin"], name="test-admin")
        async with contract_client(runtime, {"Authorization": f"Bearer {token}"}) as client:
            yield Lab(dockerd, tag, lab, runtime, client)
    finally:
        lab.close()
        await runtime.stop()


async def _ended_ok(runtime: Runtime, job_id: str, within: float) -> str:
    """The job's log, once it succeeded; its log in the failure as soon as an attempt
    failed (the frozen clock never brings the retry)."""

    async def settled() -> bool:
        view = await job(runtime, job_id)
        return view.status in ("succeeded", "failed", "cancelled") or view.error_code is not None

    await until(settled, within=within, step=0.5)
    view = await job(runtime, job_id)
    log = "\n".join(t for _, _, t in await log_lines(runtime, job_id))
    if view.status != "succeeded":
        raise AssertionError(f"{view.status} {view.error_code}: {log[-4000:]}")
    return log


def _exec(lab: DockerLab, container_id: str, *command: str) -> tuple[int, str]:
    run = lab.client.api.exec_create(container_id, list(command))
    output = lab.client.api.exec_start(run["Id"]).decode(errors="replace")
    return int(lab.client.api.exec_inspect(run["Id"])["ExitCode"]), output


def _put(lab: DockerLab, container_id: str, path: str, text: str) -> None:
    """Write a file into the container (root's, 0644) through the engine."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(path.rsplit("/", 1)[1])
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    assert lab.client.api.put_archive(container_id, path.rsplit("/", 1)[0], buffer.getvalue())


async def _container(stack: Lab) -> str:
    node = (await stack.client.get(f"/api/nodes/{stack.node_id}")).json()
    return str(node["container"]["id"])


async def _answers(stack: Lab, preview_url: str, title: str) -> None:
    """The environment's home page answers 200 with its title (on the node's port)."""
    host = preview_url.split("://", 1)[1]
    port = host.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
        home = await web.get("/", headers={"Host": host})
    assert home.status_code == 200 and title in home.text, (home.status_code, home.text[:500])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provisioned(stack: Lab) -> list[str]:
    """A systemd lab node, provisioned twice: the two provisioning jobs' logs."""
    client, runtime = stack.client, stack.runtime
    reply = await client.post(
        "/api/nodes", json={"provider": "docker", "name": "trixie", "init": "systemd"}
    )
    assert reply.status_code == 202, reply.text
    stack.node_id = reply.json()["node_id"]
    await _ended_ok(runtime, reply.json()["job_id"], within=300)
    logs = []
    for _ in (1, 2):
        queued = await client.post(f"/api/nodes/{stack.node_id}/provision")
        assert queued.status_code == 202, queued.text
        logs.append(await _ended_ok(runtime, queued.json()["job_id"], within=900))
    return logs


@pytest.mark.spec("NOD-37")
async def test_the_trixie_image_is_its_own_and_boots_systemd(
    stack: Lab, provisioned: list[str]
) -> None:
    assert stack.tag.startswith("pressluft-node:trixie-")
    assert stack.tag == image_tag(ImageInputs(suite="trixie"))
    assert stack.tag != image_tag(ImageInputs())  # bookworm's
    container_id = await _container(stack)
    code, version = _exec(stack.lab, container_id, "php", "-r", "echo PHP_VERSION;")
    assert code == 0 and version.startswith("8.4."), version
    code, release = _exec(stack.lab, container_id, "cat", "/etc/debian_version")
    assert code == 0 and release.startswith("13"), release


@pytest.mark.spec("NOD-38")
async def test_provisioning_runs_the_systemd_branch_and_again_changes_nothing(
    stack: Lab, provisioned: list[str]
) -> None:
    first, second = provisioned
    assert "systemd=True" in first, first[-3000:]  # node_facts: the service manager
    assert "provisioned: profile" in second and "changed=0" in second, second[-3000:]
    node = (await stack.client.get(f"/api/nodes/{stack.node_id}")).json()
    assert node["status"] == "active" and node["readiness"]["is_ready"] is True, node
    assert node["resources"]["init"] == "systemd"
    container_id = node["container"]["id"]
    inspected = stack.lab.client.api.inspect_container(container_id)
    assert inspected["Path"] == "/lib/systemd/systemd", inspected["Path"]
    code, comm = _exec(stack.lab, container_id, "cat", "/proc/1/comm")
    assert (code, comm.strip()) == (0, "systemd")


@pytest.mark.spec("NOD-38")
async def test_the_stack_runs_as_enabled_systemd_units(stack: Lab, provisioned: list[str]) -> None:
    container_id = await _container(stack)
    _, active = _exec(stack.lab, container_id, "systemctl", "is-active", *UNITS)
    assert active.split() == ["active"] * len(UNITS), active
    _, enabled = _exec(stack.lab, container_id, "systemctl", "is-enabled", *UNITS)
    assert enabled.split() == ["enabled"] * len(UNITS), enabled
    # Restarting nftables replaces Pressluft's table and leaves everyone else's (fail2ban's).
    assert _exec(stack.lab, container_id, "nft", "add", "table", "inet", "neighbour")[0] == 0
    assert _exec(stack.lab, container_id, "systemctl", "restart", "nftables")[0] == 0
    _, tables = _exec(stack.lab, container_id, "nft", "list", "tables")
    assert "inet neighbour" in tables and "inet pressluft" in tables, tables
    assert _exec(stack.lab, container_id, "nft", "delete", "table", "inet", "neighbour")[0] == 0
    # The facts query reads systemd's view and names php-fpm by the node's PHP.
    facts = (await stack.client.get(f"/api/nodes/{stack.node_id}/facts")).json()
    assert facts["os"] == "Debian GNU/Linux 13 (trixie)", facts
    for unit in ("nginx", "php8.4-fpm", "mariadb", "redis-server", "fail2ban", "ssh"):
        assert facts["services"][unit] == "active", facts["services"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(stack: Lab, provisioned: list[str]) -> dict[str, str]:
    """A WordPress site on the node (its ids, URL and title)."""
    title = "Trixie Times"
    reply = await stack.client.post(
        "/api/sites",
        json={"name": title, "slug": "times", "node_id": stack.node_id, "title": title},
    )
    assert reply.status_code == 202, reply.text
    accepted = reply.json()
    await _ended_ok(stack.runtime, accepted["job_id"], within=600)
    view = (await stack.client.get(f"/api/sites/{accepted['site_id']}")).json()
    return {
        "site_id": accepted["site_id"],
        "environment_id": accepted["environment_id"],
        "preview_url": view["preview_url"],
        "title": title,
    }


@pytest.mark.spec("NOD-38")
async def test_a_site_and_its_staging_clone_answer(stack: Lab, site: dict[str, str]) -> None:
    await _answers(stack, site["preview_url"], site["title"])
    container_id = await _container(stack)
    pool = f"/etc/php/8.4/fpm/pool.d/pressluft-{site['environment_id']}.conf"
    assert _exec(stack.lab, container_id, "test", "-f", pool)[0] == 0
    reply = await stack.client.post(
        f"/api/sites/{site['site_id']}/environments",
        json={
            "name": "Staging",
            "slug": "staging",
            "type": "staging",
            "source_environment_id": site["environment_id"],
        },
    )
    assert reply.status_code == 202, reply.text
    await _ended_ok(stack.runtime, reply.json()["job_id"], within=600)
    staging = (await stack.client.get(f"/api/environments/{reply.json()['environment_id']}")).json()
    assert staging["status"] == "active", staging
    await _answers(stack, staging["preview_url"], site["title"])


@pytest.mark.spec("NOD-38")
async def test_after_a_restart_systemd_brings_the_stack_and_the_site_back(
    stack: Lab, site: dict[str, str]
) -> None:
    client, runtime, url = stack.client, stack.runtime, f"/api/nodes/{stack.node_id}"
    stopped = await client.post(f"{url}/stop")
    assert stopped.status_code == 202, stopped.text
    await _ended_ok(runtime, stopped.json()["job_id"], within=120)
    started = await client.post(f"{url}/start")
    assert started.status_code == 202, started.text
    await _ended_ok(runtime, started.json()["job_id"], within=300)
    node = (await client.get(url)).json()
    assert node["status"] == "active" and node["readiness"]["is_ready"] is True, node
    container_id = node["container"]["id"]
    # Booted again: wait for systemd to finish starting the units (a condition, no clock).
    _, state = _exec(stack.lab, container_id, "systemctl", "is-system-running", "--wait")
    assert state.strip() == "running", state
    _, active = _exec(stack.lab, container_id, "systemctl", "is-active", *UNITS)
    assert active.split() == ["active"] * len(UNITS), active
    await _answers(stack, site["preview_url"], site["title"])


@pytest.mark.spec("NOD-36")
async def test_a_node_that_says_it_is_another_system_is_refused_at_the_check(
    stack: Lab, site: dict[str, str]
) -> None:
    # Last in the module: it changes the node's os-release (and puts it back).
    client, runtime, url = stack.client, stack.runtime, f"/api/nodes/{stack.node_id}"
    container_id = await _container(stack)
    code, original = _exec(stack.lab, container_id, "cat", "/etc/os-release")
    assert code == 0
    # /etc/os-release is a link to /usr/lib/os-release: replace the link with a file.
    assert _exec(stack.lab, container_id, "rm", "-f", "/etc/os-release")[0] == 0
    _put(
        stack.lab,
        container_id,
        "/etc/os-release",
        'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\n',
    )
    try:
        checked = await client.post(f"{url}/check")
        assert checked.status_code == 202, checked.text
        log = await _ended_ok(runtime, checked.json()["job_id"], within=120)
        assert "os_unsupported: the node runs Ubuntu 24.04.1 LTS" in log, log
        readiness = (await client.get(url)).json()["readiness"]
        assert readiness["is_ready"] is False and readiness["reason_codes"] == ["os_unsupported"]
        (guidance,) = readiness["guidance"]
        assert "Debian 12 (bookworm)" in guidance and "Debian 13 (trixie)" in guidance
        refused = await client.post(f"{url}/provision")
        assert (refused.status_code, refused.json()["code"]) == (409, "node_not_ready")
    finally:
        _exec(stack.lab, container_id, "ln", "-sf", "../usr/lib/os-release", "/etc/os-release")
    # Debian 13 again: ready again.
    checked = await client.post(f"{url}/check")
    await _ended_ok(runtime, checked.json()["job_id"], within=120)
    assert (await client.get(url)).json()["readiness"]["is_ready"] is True
    assert "Debian GNU/Linux 13" in original
