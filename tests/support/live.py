"""One provisioned lab node with one WordPress site, shared by the test modules that
need a live site (domains, certificates, cache): built once per test session — a
node provisioning and a site install take minutes, and CI has a time budget.

The daemon is a real `pressluft dev` process on a private dockerd with the node
image. Tests that change the site (a domain, the cache flags) leave it as they
found it or say what they changed; tests that need a second environment clone it,
and tests that need sites of their own make them on the live node and delete them
again (`create_site`, `delete_sites`; the `live_sites` and `live_environments`
fixtures delete what a test made when it ends).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pressluft.runners.docker import DockerLab
from pressluft.vault import Vault
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

    # -- sites a test makes beside the live one ------------------------------------

    def create_site(self, name: str, slug: str, **fields: str) -> dict[str, str]:
        """A new site on the live node through the API, once its job has succeeded:
        the 202's `{job_id, site_id, environment_id}`. Tests delete it again
        (`delete_sites`, e.g. through the `live_sites` fixture)."""
        with self.api() as api:
            reply = api.post(
                "/api/sites",
                json={"name": name, "slug": slug, "node_id": self.node["id"], **fields},
            )
        assert reply.status_code == 202, reply.text
        accepted: dict[str, str] = reply.json()
        self.job_ok(accepted["job_id"], 900)
        return accepted

    def delete_environments(self, *environment_ids: str) -> None:
        """Delete staging or clone environments a test made, side by side, and wait for
        the jobs. The jobs of their sites still queued or running end first; one
        already deleted is skipped."""
        with self.api() as api:
            envs = [api.get(f"/api/environments/{env_id}").json() for env_id in environment_ids]
            self._settle(api, {str(env["site_id"]) for env in envs})
            jobs = []
            for env_id in environment_ids:
                env = api.get(f"/api/environments/{env_id}").json()
                if env["status"] == "deleted":
                    continue
                reply = api.delete(f"/api/environments/{env_id}", params={"confirm": env["slug"]})
                assert reply.status_code == 202, reply.text
                jobs.append(reply.json()["job_id"])
        for job_id in jobs:
            self.job_ok(job_id, 600)

    def delete_sites(self, *site_ids: str) -> None:
        """Delete sites a test made, each with its other environments first, side by
        side, and wait for the jobs: the live node is left with the sites it had. The
        sites' jobs still queued or running end first; a site already deleted is
        skipped."""
        with self.api() as api:
            self._settle(api, set(site_ids))
            sites = [api.get(f"/api/sites/{site_id}").json() for site_id in site_ids]
            sites = [site for site in sites if site["status"] != "deleted"]
        self.delete_environments(
            *(
                env["id"]
                for site in sites
                for env in site["environments"]
                if env["id"] != site["primary_environment_id"] and env["status"] != "deleted"
            )
        )
        with self.api() as api:
            jobs = []
            for site in sites:
                reply = api.delete(f"/api/sites/{site['id']}", params={"confirm": site["slug"]})
                assert reply.status_code == 202, reply.text
                jobs.append(reply.json()["job_id"])
        for job_id in jobs:
            self.job_ok(job_id, 600)

    def _settle(self, api: httpx.Client, site_ids: set[str]) -> None:
        """Until the sites' queued and running jobs have ended."""
        for site_id in site_ids:
            for status in ("queued", "running"):
                page = api.get("/api/jobs", params={"site_id": site_id, "status": status})
                for job in page.json()["items"]:
                    self.daemon.job_ended(str(job["id"]), 900)

    # -- the daemon's database, read beside it ---------------------------------------

    @contextlib.contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """A connection to the daemon's database, for reading what the API does not
        show (its events, its sealed secrets); the daemon keeps writing meanwhile."""
        with contextlib.closing(sqlite3.connect(self.daemon.data_dir / "pressluft.db")) as conn:
            conn.execute("PRAGMA busy_timeout = 5000")
            yield conn

    def vault(self) -> Vault:
        """The daemon's vault (its master key), to open a secret read with `db()`."""
        return Vault((self.daemon.data_dir / "secrets" / "master.key").read_bytes())


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
                # Pruning is seen without making six releases first (specs/releases.md).
                "PRESSLUFT_RELEASES_KEEP": "2",
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
