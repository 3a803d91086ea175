"""Sites for real: a lab node from the node image on a private dockerd, created and
provisioned through the API, then WordPress sites on it through the API — served
on their preview hosts, isolated from each other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from pressluft.config import Config, resolve
from pressluft.nodes.docker import DockerLab
from pressluft.runtime import Runtime
from pressluft.services.sites import env_names
from tests.support.dockerd import PrivateDockerd
from tests.support.jobs import log_lines, until_ended


@pytest.fixture
def config(data_dir: Path, image_engine: tuple[PrivateDockerd, str]) -> Config:
    dockerd, tag = image_engine
    overrides = {
        "data_dir": str(data_dir),
        "cpu_affinity": "off",
        "docker_host": dockerd.url,
        "node_image": tag,
    }
    return resolve("serve", overrides, environ={})[0]


def _exec(lab: DockerLab, container_id: str, *command: str) -> tuple[int, str]:
    run = lab.client.api.exec_create(container_id, list(command))
    output = lab.client.api.exec_start(run["Id"]).decode(errors="replace")
    return int(lab.client.api.exec_inspect(run["Id"])["ExitCode"]), output


async def _ended_ok(runtime: Runtime, job_id: str, within: float) -> None:
    view = await until_ended(runtime, job_id, within=within)
    if view.status != "succeeded":
        log = "\n".join(t for _, _, t in await log_lines(runtime, job_id))
        raise AssertionError(f"{view.status} {view.error_code}: {log[-4000:]}")


@pytest.mark.spec("SIT-3", "SIT-4", "SIT-7")
async def test_sites_on_a_lab_node_serve_wordpress_and_are_isolated(
    image_engine: tuple[PrivateDockerd, str], client: httpx.AsyncClient, runtime: Runtime
) -> None:
    dockerd, _ = image_engine
    lab = DockerLab(dockerd.url)
    try:
        reply = await client.post("/api/nodes", json={"provider": "docker", "name": "web"})
        node = reply.json()
        await _ended_ok(runtime, node["job_id"], within=300)
        provision = (await client.post(f"/api/nodes/{node['node_id']}/provision")).json()
        await _ended_ok(runtime, provision["job_id"], within=900)
        view = (await client.get(f"/api/nodes/{node['node_id']}")).json()
        http_port, container_id = view["ports"]["http"], view["container"]["id"]

        created = {}
        for slug, title in (("acme", "Acme Shop"), ("beta", "Beta Blog")):
            reply = await client.post(
                "/api/sites",
                json={"name": title, "slug": slug, "node_id": node["node_id"], "title": title},
            )
            assert reply.status_code == 202, reply.text
            accepted = reply.json()
            await _ended_ok(runtime, accepted["job_id"], within=600)
            created[slug] = accepted
            log = "\n".join(t for _, _, t in await log_lines(runtime, accepted["job_id"]))
            assert "health: http 200" in log, log[-3000:]  # from the control plane
            for check in ("installed", "database", "http"):  # on the node
                assert f"Health check {check}:" in log, log[-3000:]

            # SIT-3: active, a healthy release, WordPress answering on the preview host.
            site = (await client.get(f"/api/sites/{accepted['site_id']}")).json()
            assert site["status"] == "active", site
            (env,) = site["environments"]
            assert (env["status"], env["health_status"]) == ("active", "healthy")
            assert env["current_release_id"] and env["wordpress_version"]
            host = site["preview_url"].split("://", 1)[1]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as web:
                home = await web.get("/", headers={"Host": host})
                assert home.status_code == 200 and title in home.text
                admin = await web.get("/wp-admin/", headers={"Host": host})
                assert admin.status_code == 302, admin.status_code
                assert "wp-login.php" in admin.headers["location"]

        # SIT-4: separate users, pools and databases; PHP of one cannot read the other.
        names = {
            slug: env_names(accepted["environment_id"], accepted["site_id"])
            for slug, accepted in created.items()
        }
        assert names["acme"]["env_user"] != names["beta"]["env_user"]
        for slug, accepted in created.items():
            user = names[slug]["env_user"]
            assert _exec(lab, container_id, "id", user)[0] == 0
            pool = f"/etc/php/8.2/fpm/pool.d/pressluft-{accepted['environment_id']}.conf"
            assert _exec(lab, container_id, "test", "-f", pool)[0] == 0
        code, databases = _exec(lab, container_id, "mariadb", "-N", "-e", "SHOW DATABASES")
        assert code == 0 and names["acme"]["db_name"] in databases
        assert names["beta"]["db_name"] in databases
        # open_basedir, not only file modes: a world-readable file outside the root is
        # refused as well as the other environment's files.
        beta_config = f"{names['beta']['env_root']}/shared/wp-config.php"
        readable = "/usr/local/lib/pressluft/pressluft-wp.php"  # 0644, root's
        assert _exec(lab, container_id, "test", "-r", readable)[0] == 0
        probe = (
            "<?php foreach (['" + beta_config + "', '" + readable + "'] as $f) {"
            " echo @file_get_contents($f) === false ? 'DENIED' : 'READ', ' '; }"
            " echo ini_get('open_basedir');"
        )
        acme_root = names["acme"]["env_root"]
        target = f"{acme_root}/current/pressluft-probe.php"
        write = f"cat > {target} <<'EOF'\n{probe}\nEOF\nchown {names['acme']['env_user']} {target}"
        assert _exec(lab, container_id, "sh", "-c", write)[0] == 0
        acme_host = (
            (await client.get(f"/api/sites/{created['acme']['site_id']}"))
            .json()["preview_url"]
            .split("://", 1)[1]
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as web:
            answer = await web.get("/pressluft-probe.php", headers={"Host": acme_host})
        assert answer.status_code == 200, answer.text
        assert answer.text.split() == ["DENIED", "DENIED", f"{acme_root}/"], answer.text

        # SIT-7: magic login — into wp-admin once; the same URL again, or a fresh one
        # opened after its 60 s, is refused.
        acme_env = created["acme"]["environment_id"]

        async def login_url() -> str:
            reply = await client.post(f"/api/environments/{acme_env}/magic-login", timeout=30)
            assert reply.status_code == 200, reply.text
            return str(reply.json()["login_url"])

        async def open_login(web: httpx.AsyncClient, url: str) -> httpx.Response:
            return await web.get(url.split(acme_host, 1)[1], headers={"Host": acme_host})

        url = await login_url()
        assert url.startswith(f"http://{acme_host}/?pressluft_login=")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as web:
            first = await open_login(web, url)
            assert first.status_code == 302, first.text[:500]
            assert first.headers["location"].endswith("/wp-admin/")
            dashboard = await web.get("/wp-admin/", headers={"Host": acme_host}, timeout=60)
            assert dashboard.status_code == 200 and 'id="wpadminbar"' in dashboard.text
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as web:
            again = await open_login(web, url)
            assert again.status_code == 403 and "wordpress_logged_in" not in str(again.cookies)
            late = await login_url()
            await asyncio.sleep(61)  # past its 60 s (waiting for a state, not timing a result)
            expired = await open_login(web, late)
            assert expired.status_code == 403
        issued = await runtime.db.read(
            lambda c: c.execute(
                "SELECT actor, data FROM events WHERE type = 'environment.magic_login_issued'"
            ).fetchall()
        )
        assert len(issued) == 2 and all("pressluft_login" not in data for _, data in issued)
        assert all(actor for actor, _ in issued)  # who asked
    finally:
        for state in lab.managed():
            lab.destroy(state.node_id)
        lab.close()
