"""One provisioned lab node with one WordPress site, shared by the test modules that
need a live site (domains, certificates, cache): built once per test session — a
node provisioning and a site install take minutes, and CI has a time budget.

The daemon is a real `pressluft dev` process on a private dockerd with the node
image. Tests that change the site (a domain, the cache flags) leave it as they
found it or say what they changed; tests that need a second environment clone it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pressluft.runners.docker import DockerLab
from tests.support.bind import BindServer
from tests.support.daemon import Daemon
from tests.support.dockerd import PrivateDockerd, node_image
from tests.support.pebble import Pebble

SITE_TITLE = "Live Shop"


@dataclass
class LiveSite:
    """The shared daemon, its lab node and the site on it."""

    daemon: Daemon
    dockerd: PrivateDockerd
    node: dict[str, Any]  # the node's view (ports, container)
    site_id: str
    environment_id: str
    preview_url: str
    #: The ACME CA the daemon uses (its HTTP-01 port: the node's published HTTP port)
    #: and the DNS server it checks domains at.
    pebble: Pebble
    dns: BindServer
    lab: DockerLab = field(repr=False)

    @property
    def http_port(self) -> int:
        return int(self.node["ports"]["http"])

    @property
    def https_port(self) -> int:
        return int(self.node["ports"]["https"])

    @property
    def container_id(self) -> str:
        return str(self.node["container"]["id"])

    def api(self) -> httpx.Client:
        """An API client with an admin token (close it, or use it as a context manager)."""
        return httpx.Client(base_url=self.daemon.url, headers=self.daemon.auth(), timeout=30)

    def job_ok(self, job_id: str, within: float = 600) -> dict[str, object]:
        """The job once it has succeeded; its log in the failure when it ended otherwise."""
        job = self.daemon.job_ended(job_id, within)
        if job["status"] != "succeeded":
            raise AssertionError(f"{job}\n{self.job_log(job_id)[-4000:]}")
        return job

    def job_log(self, job_id: str) -> str:
        reply = httpx.get(f"{self.daemon.url}/api/jobs/{job_id}/log", headers=self.daemon.auth())
        return reply.text

    def exec(self, *command: str) -> tuple[int, str]:
        """A command in the node's container (as root): exit code and output."""
        api = self.lab.client.api
        run = api.exec_create(self.container_id, list(command))
        output = api.exec_start(run["Id"]).decode(errors="replace")
        return int(api.exec_inspect(run["Id"])["ExitCode"]), output

    def get(self, path: str = "/", host: str | None = None, **kwargs: Any) -> httpx.Response:
        """A request to the node's nginx (its published HTTP port) for a host (default:
        the site's preview host, with the port WordPress expects)."""
        netloc = host or httpx.URL(self.preview_url).netloc.decode()
        return httpx.get(
            f"http://127.0.0.1:{self.http_port}{path}",
            headers={"Host": netloc, **kwargs.pop("headers", {})},
            timeout=30,
            **kwargs,
        )


def start_live_site(workdir: Path, dns: BindServer) -> LiveSite:
    """Start the daemon, create and provision a lab node, create the site; start the
    daemon's ACME CA once the node's HTTP port is known."""
    dockerd = PrivateDockerd().start()
    daemon: Daemon | None = None
    lab: DockerLab | None = None
    # Its ports are chosen now (the daemon is told its directory); it starts below.
    pebble = Pebble(dns.address, 0, root=workdir / "pebble")
    try:
        tag = node_image(dockerd)
        host, port = dns.address
        daemon = Daemon(
            workdir / "daemon",
            mode="dev",
            env={
                "PRESSLUFT_DOCKER_HOST": dockerd.url,
                "PRESSLUFT_NODE_IMAGE": tag,
                "PRESSLUFT_ACME_DIRECTORY": pebble.directory_url,
                "PRESSLUFT_ACME_CA_BUNDLE": str(pebble.ca_bundle),
                "PRESSLUFT_DNS_RESOLVER": f"{host}:{port}",
                # Renewals of short-lived test certificates are found within seconds.
                "PRESSLUFT_CERTIFICATE_SCAN_SECONDS": "5",
            },
        ).start()
        daemon.wait_ready(60)
        lab = DockerLab(dockerd.url)
        with httpx.Client(base_url=daemon.url, headers=daemon.auth(), timeout=30) as http:
            node = http.post("/api/nodes", json={"provider": "docker", "name": "live"}).json()
            _ok(daemon, node["job_id"], 300)
            provision = http.post(f"/api/nodes/{node['node_id']}/provision").json()
            _ok(daemon, provision["job_id"], 900)
            view = http.get(f"/api/nodes/{node['node_id']}").json()
            reply = http.post(
                "/api/sites",
                json={
                    "name": SITE_TITLE,
                    "slug": "live",
                    "node_id": node["node_id"],
                    "title": SITE_TITLE,
                },
            )
            assert reply.status_code == 202, reply.text
            accepted = reply.json()
            _ok(daemon, accepted["job_id"], 600)
            site = http.get(f"/api/sites/{accepted['site_id']}").json()
        production = next(
            e for e in site["environments"] if e["id"] == site["primary_environment_id"]
        )
        # The CA validates HTTP-01 on the node's published HTTP port.
        pebble.http_port = int(view["ports"]["http"])
        pebble.start()
        return LiveSite(
            daemon=daemon,
            dockerd=dockerd,
            node=view,
            site_id=accepted["site_id"],
            environment_id=production["id"],
            preview_url=production["preview_url"],
            pebble=pebble,
            dns=dns,
            lab=lab,
        )
    except BaseException:
        pebble.stop()
        if lab is not None:
            lab.close()
        if daemon is not None:
            daemon.stop()
        dockerd.stop()
        raise


def stop_live_site(live: LiveSite) -> None:
    try:
        live.daemon.stop()
    finally:
        live.pebble.stop()
        live.lab.close()
        live.dockerd.stop()


def _ok(daemon: Daemon, job_id: str, within: float) -> None:
    job = daemon.job_ended(job_id, within)
    if job["status"] != "succeeded":
        log = httpx.get(f"{daemon.url}/api/jobs/{job_id}/log", headers=daemon.auth())
        raise AssertionError(f"{job}\n{log.text[-4000:]}")


def until(predicate: Any, within: float = 30, every: float = 0.5) -> Any:
    """The predicate's first truthy value, asked every `every` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        time.sleep(every)
