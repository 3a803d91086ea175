"""Sites for real: WordPress sites made through the API on the session's live lab node
(tests/support/live.py: a node from the node image on a private dockerd, provisioned
through the API) beside its site — served on their preview hosts, isolated from each
other and from the live site, cloned and deleted again; and the node's lock scopes
with two sites' jobs and a provisioning of that node.

A site a test makes is deleted when it ends (`live_sites`); the live site is left
as it was."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pressluft.config import resolve
from pressluft.contexts.sites.loaders import env_names
from tests.support.contract import ContractValidator
from tests.support.live import LiveSite, until

pytestmark = pytest.mark.daemon


@pytest.fixture
def api(live: LiveSite, contract: ContractValidator) -> Iterator[httpx.Client]:
    """The live daemon's API with an admin token; every answer checked against the
    contract."""

    def validate(response: httpx.Response) -> None:
        response.read()
        contract.check(
            response.request.method,
            response.request.url.path,
            response.status_code,
            response.headers.get("content-type", ""),
            response.content,
        )

    with httpx.Client(
        base_url=live.daemon.url,
        headers=live.daemon.auth(),
        timeout=30,
        event_hooks={"response": [validate]},
    ) as client:
        yield client


def _log(api: httpx.Client, job_id: str) -> str:
    """Every line of a job's log, as text."""
    lines: list[str] = []
    after = 0
    while True:
        page = api.get(f"/api/jobs/{job_id}/log", params={"after": after, "limit": 5000}).json()
        lines += [line["text"] for line in page["lines"]]
        if not page["lines"]:
            return "\n".join(lines)
        after = page["next_after"]


def _wp(live: LiveSite, env: dict[str, str], php: str) -> str:
    """PHP with WordPress loaded (CLI, as the environment's user); its last output line."""
    script = (
        f"cd {env['env_root']} && runuser -u {env['env_user']} -- php -r "
        f'\'define("WP_USE_THEMES", false); require "current/wp-load.php"; {php}\''
    )
    code, output = live.exec("sh", "-c", script)
    assert code == 0, output
    return output.strip().splitlines()[-1] if output.strip() else ""


def _helper(live: LiveSite, env: dict[str, str], request: str) -> object:
    """The PHP helper on the node as the environment's user (the JSON request on stdin)."""
    script = (
        f"cd {env['env_root']} && printf '%s' '{request}' | runuser -u {env['env_user']} --"
        f" php /usr/local/lib/pressluft/pressluft-wp.php {env['env_root']}/current"
    )
    code, output = live.exec("sh", "-c", script)
    assert code == 0, output
    return json.loads(output.splitlines()[-1])


def _follow(web: httpx.Client, host: str, path: str) -> httpx.Response:
    """GET with the host's redirects followed — each one to the same host (a copy
    that sends its visitors to the site it was copied from would fail here)."""
    answer = web.get(path, headers={"Host": host})
    for _ in range(5):
        if answer.status_code not in (301, 302):
            break
        location = answer.headers["location"]
        assert location.startswith(f"http://{host}/"), location
        answer = web.get(location.split(host, 1)[1], headers={"Host": host})
    return answer


@pytest.mark.spec("SIT-3", "SIT-4", "SIT-7", "SIT-8", "SIT-9", "SIT-12")
def test_sites_on_a_lab_node_serve_wordpress_and_are_isolated(
    live: LiveSite, api: httpx.Client, live_sites: list[str]
) -> None:
    http_port, title = live.http_port, "Acme Shop"
    reply = api.post(
        "/api/sites",
        json={"name": title, "slug": "acme", "node_id": live.node["id"], "title": title},
    )
    assert reply.status_code == 202, reply.text
    acme = reply.json()
    live_sites.append(acme["site_id"])
    live.job_ok(acme["job_id"], within=600)
    log = _log(api, acme["job_id"])
    assert "health: http 200" in log, log[-3000:]  # from the control plane
    for check in ("installed", "database", "http"):  # on the node
        assert f"Health check {check}:" in log, log[-3000:]

    # SIT-3: active, a healthy release, WordPress answering on the preview host.
    site = api.get(f"/api/sites/{acme['site_id']}").json()
    assert site["status"] == "active", site
    (env,) = site["environments"]
    assert (env["status"], env["health_status"]) == ("active", "healthy")
    assert env["current_release_id"] and env["wordpress_version"]
    # A lab node's URL works from the operator's browser: *.localhost is loopback,
    # and the port is the node's published HTTP port (fixed for its life).
    uuid8 = acme["environment_id"][:8]
    assert site["preview_url"] == f"http://{uuid8}.localhost:{http_port}"
    acme_host = site["preview_url"].split("://", 1)[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as web:
        home = web.get("/", headers={"Host": acme_host})
        assert home.status_code == 200 and title in home.text
        admin = web.get("/wp-admin/", headers={"Host": acme_host})
        assert admin.status_code == 302, admin.status_code
        assert admin.headers["location"].startswith(f"http://{acme_host}/wp-login.php")
        # Each site its own administrator, whose login WordPress does not list:
        # the first post's author has a neutral public name.
        assert env["admin_user"].startswith("admin-"), env
        users = web.get("/?rest_route=/wp/v2/users", headers={"Host": acme_host})
        assert users.status_code == 200, users.text[:500]
        assert [u["slug"] for u in users.json()] == ["administrator"], users.text
        assert env["admin_user"] not in users.text and "pressluft-admin" not in users.text
    # WordPress cron runs from the system, as the environment's user; visits do not.
    acme_names = env_names(acme["environment_id"], acme["site_id"])
    cron = f"/etc/cron.d/pressluft-{acme['environment_id']}"
    code, entry = live.exec("cat", cron)
    assert code == 0 and f"* * * * * {acme_names['env_user']} cd " in entry, entry
    assert "wp-cron.php" in entry and "open_basedir" in entry
    assert _wp(live, acme_names, 'echo DISABLE_WP_CRON ? "off" : "on";') == "off"

    # SIT-4: separate users, pools and databases; PHP of one cannot read the other's
    # files — the other here being the live site, on the same node.
    names = {
        "acme": (acme["environment_id"], acme_names),
        "live": (live.environment_id, env_names(live.environment_id, live.site_id)),
    }
    assert names["acme"][1]["env_user"] != names["live"][1]["env_user"]
    for env_id, env_ in names.values():
        assert live.exec("id", env_["env_user"])[0] == 0
        pool = f"/etc/php/8.2/fpm/pool.d/pressluft-{env_id}.conf"
        assert live.exec("test", "-f", pool)[0] == 0
    code, databases = live.exec("mariadb", "-N", "-e", "SHOW DATABASES")
    assert code == 0 and names["acme"][1]["db_name"] in databases
    assert names["live"][1]["db_name"] in databases
    # open_basedir, not only file modes: a world-readable file outside the root is
    # refused as well as the other environment's files.
    other_config = f"{names['live'][1]['env_root']}/shared/wp-config.php"
    readable = "/usr/local/lib/pressluft/pressluft-wp.php"  # 0644, root's
    assert live.exec("test", "-r", readable)[0] == 0
    probe = (
        "<?php foreach (['" + other_config + "', '" + readable + "'] as $f) {"
        " echo @file_get_contents($f) === false ? 'DENIED' : 'READ', ' '; }"
        " echo ini_get('open_basedir');"
    )
    acme_root = acme_names["env_root"]
    target = f"{acme_root}/current/pressluft-probe.php"
    write = f"cat > {target} <<'EOF'\n{probe}\nEOF\nchown {acme_names['env_user']} {target}"
    assert live.exec("sh", "-c", write)[0] == 0
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as web:
        answer = web.get("/pressluft-probe.php", headers={"Host": acme_host})
    assert answer.status_code == 200, answer.text
    assert answer.text.split() == ["DENIED", "DENIED", f"{acme_root}/"], answer.text

    # SIT-7: magic login — into wp-admin once; the same URL again, or a fresh one
    # opened after its 60 s, is refused.
    acme_env = acme["environment_id"]

    def login_url() -> str:
        reply = api.post(f"/api/environments/{acme_env}/magic-login")
        assert reply.status_code == 200, reply.text
        return str(reply.json()["login_url"])

    def open_login(web: httpx.Client, url: str) -> httpx.Response:
        return web.get(url.split(acme_host, 1)[1], headers={"Host": acme_host})

    url = login_url()
    assert url.startswith(f"http://{acme_host}/?pressluft_login=")
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as web:
        first = open_login(web, url)
        assert first.status_code == 302, first.text[:500]
        assert first.headers["location"].endswith("/wp-admin/")
        dashboard = web.get("/wp-admin/", headers={"Host": acme_host})
        assert dashboard.status_code == 200 and 'id="wpadminbar"' in dashboard.text
    with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as web:
        again = open_login(web, url)
        assert again.status_code == 403 and "wordpress_logged_in" not in str(again.cookies)
        late = login_url()
        # An event due now: the system's cron runs it (no visit can: DISABLE_WP_CRON).
        probe = 'wp_schedule_single_event(time() - 5, "pressluft_probe");'
        probe += ' echo wp_next_scheduled("pressluft_probe") ? "due" : "none";'
        assert _wp(live, acme_names, probe) == "due"
        time.sleep(61)  # past its 60 s (waiting for a state, not timing a result)
        expired = open_login(web, late)
        assert expired.status_code == 403
    with live.db() as db:
        issued = db.execute(
            "SELECT actor, data FROM events"
            " WHERE type = 'environment.magic_login_issued' AND stream = ?",
            (f"environment:{acme_env}",),
        ).fetchall()
    assert len(issued) == 2 and all("pressluft_login" not in data for _, data in issued)
    assert all(actor for actor, _ in issued)  # who asked

    def cron_ran() -> bool:
        ask = 'echo wp_next_scheduled("pressluft_probe") ? "due" : "none";'
        return _wp(live, acme_names, ask) == "none"

    until(cron_ran, within=180, every=2)  # cron runs each minute: waiting, not timing

    _clone_then_delete(live, api, acme)


def _clone_then_delete(live: LiveSite, api: httpx.Client, acme: dict[str, str]) -> None:
    """SIT-9: a staging copy serves production's content with its URLs rewritten
    (serialized values still valid); SIT-12: deleting it, then the site, leaves
    nothing of them on the node and destroys their secrets."""
    site_id, production_id = acme["site_id"], acme["environment_id"]
    production = env_names(production_id, site_id)
    url = api.get(f"/api/environments/{production_id}").json()["preview_url"]
    host = url.split("://", 1)[1]
    # Content made on production before the clone: a post linking to production, and an
    # option holding production's URL in a serialized array.
    post = (
        f"cd {production['env_root']} && runuser -u {production['env_user']} -- php -r "
        '\'define("WP_USE_THEMES", false); require "current/wp-load.php";'
        f' echo wp_insert_post(["post_title" => "Made before the clone",'
        f' "post_content" => "See {url}/about", "post_status" => "publish"]);\''
    )
    code, output = live.exec("sh", "-c", post)
    assert code == 0 and output.strip().splitlines()[-1].isdigit(), output
    post_id = output.strip().splitlines()[-1]
    option = {"home": f"{url}/x", "nested": {"list": [url, 7]}}
    request = json.dumps({"command": "option-set", "name": "pressluft_probe", "value": option})
    assert _helper(live, production, request)["ok"] is True  # type: ignore[index]
    # A cell the rewrite must leave alone (custom serialization, opaque to unserialize):
    # the clone's job log lists it.
    payload = f'x:i:0;a:1:{{i:0;s:{len(url)}:"{url}";}};m:a:0:{{}}'
    custom = f'C:11:"ArrayObject":{len(payload)}:{{{payload}}}'
    insert = (
        "INSERT INTO wp_options (option_name, option_value, autoload)"
        f" VALUES ('pressluft_custom', '{custom}', 'no'); SELECT LAST_INSERT_ID();"
    )
    code, output = live.exec("mariadb", "-N", production["db_name"], "-e", insert)
    assert code == 0, output
    custom_id = output.strip().splitlines()[-1]

    reply = api.post(
        f"/api/sites/{site_id}/environments",
        json={
            "name": "Staging",
            "slug": "staging",
            "type": "staging",
            "source_environment_id": production_id,
        },
    )
    assert reply.status_code == 202, reply.text
    staging_id = reply.json()["environment_id"]
    cloning = api.get(f"/api/environments/{staging_id}").json()
    assert cloning["status"] in ("cloning", "active")
    live.job_ok(reply.json()["job_id"], within=600)
    log = _log(api, reply.json()["job_id"])
    assert "search-replace left 1 cell(s) unchanged" in log, log[-3000:]
    assert f"skipped: wp_options.option_value where option_id={custom_id}:" in log, log[-3000:]
    staging_view = api.get(f"/api/environments/{staging_id}").json()
    assert staging_view["status"] == "active", staging_view
    assert staging_view["source_environment_id"] == production_id
    assert api.get(f"/api/sites/{site_id}").json()["status"] == "active"
    staging_url = staging_view["preview_url"]
    staging_host = staging_url.split("://", 1)[1]
    assert staging_host != host

    with httpx.Client(base_url=f"http://127.0.0.1:{live.http_port}", timeout=60) as web:
        page = _follow(web, staging_host, f"/?p={post_id}")
        assert page.status_code == 200 and "Made before the clone" in page.text, page.text[:500]
        assert f"{staging_url}/about" in page.text and host not in page.text
        original = _follow(web, host, f"/?p={post_id}")
        assert original.status_code == 200 and f"{url}/about" in original.text  # untouched
    staging = env_names(staging_id, site_id)
    # The staging administrator (production's, copied) has staging's own password.
    admin_user = staging_view["admin_user"]
    assert admin_user == api.get(f"/api/environments/{production_id}").json()["admin_user"]
    vault = live.vault()
    with live.db() as db:
        passwords = {
            env_id: vault.open(db, secret).decode()
            for env_id, secret in db.execute(
                "SELECT id, admin_secret_id FROM environments WHERE id IN (?, ?)",
                (production_id, staging_id),
            )
        }
    check = '$u = get_user_by("login", "%s"); echo wp_check_password("%s", $u->user_pass, $u->ID) ? "yes" : "no";'
    for names, env_id, expected in (
        (staging, staging_id, "yes"),
        (staging, production_id, "no"),
        (production, production_id, "yes"),
    ):
        got = _wp(live, names, check % (admin_user, passwords[env_id]))
        assert got == expected, (names["env_user"], env_id)
    request = json.dumps({"command": "option-get", "name": "pressluft_probe"})
    copied = _helper(live, staging, request)
    # Unserialized by WordPress: the lengths were recomputed for the longer URL.
    assert copied["value"] == {  # type: ignore[index]
        "home": f"{staging_url}/x",
        "nested": {"list": [staging_url, 7]},
    }

    # SIT-8 (reference 37): WordPress failing on the node (here: its configuration gone)
    # answers 502 wp_helper_error, the node's output withheld.
    config = f"{staging['env_root']}/shared/wp-config.php"
    assert live.exec("mv", config, f"{config}.off")[0] == 0
    broken = api.post(f"/api/environments/{staging_id}/magic-login")
    assert (broken.status_code, broken.json()["code"]) == (502, "wp_helper_error"), broken.text
    assert staging["env_root"] not in broken.text and "wp-config" not in broken.text

    with live.db() as db:
        secrets = db.execute(
            "SELECT db_secret_id, admin_secret_id FROM environments WHERE site_id = ?",
            (site_id,),
        ).fetchall()
    refused = api.delete(f"/api/sites/{site_id}", params={"confirm": "acme"})
    assert (refused.status_code, refused.json()["code"]) == (409, "site_has_environments")
    gone = api.delete(f"/api/environments/{staging_id}", params={"confirm": "staging"})
    assert gone.status_code == 202, gone.text
    live.job_ok(gone.json()["job_id"], within=300)
    gone = api.delete(f"/api/sites/{site_id}", params={"confirm": "acme"})
    assert gone.status_code == 202, gone.text
    live.job_ok(gone.json()["job_id"], within=300)
    site = api.get(f"/api/sites/{site_id}").json()
    assert site["status"] == "deleted" and site["deleted_at"]
    assert {e["status"] for e in site["environments"]} == {"deleted"}

    # Nothing of either is left on the node, and their secrets are gone.
    for env_id, names in ((production_id, production), (staging_id, staging)):
        assert live.exec("id", names["env_user"])[0] != 0
        for path in (
            f"/etc/php/8.2/fpm/pool.d/pressluft-{env_id}.conf",
            f"/etc/nginx/sites-enabled/pressluft-{env_id}.conf",
            names["env_root"],
        ):
            assert live.exec("test", "-e", path)[0] != 0, path
        assert live.exec("grep", "-q", env_id, "/etc/hosts")[0] != 0
        code, found = live.exec(
            "mariadb",
            "-N",
            "-e",
            "SELECT CONCAT(SCHEMA_NAME) FROM information_schema.SCHEMATA UNION ALL"
            " SELECT User FROM mysql.user",
        )
        assert code == 0 and names["db_name"] not in found, found
    assert live.exec("test", "-e", f"/var/www/sites/{site_id}")[0] != 0
    ids = [secret for row in secrets for secret in row]
    assert len(ids) == 4
    with live.db() as db:
        left = db.execute(
            f"SELECT count(*) FROM secrets WHERE id IN ({','.join('?' * len(ids))})", ids
        ).fetchone()[0]
    assert left == 0
    # The node's default server answers the gone host: it closes without a response (444).
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{live.http_port}", timeout=30) as web,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        web.get("/", headers={"Host": staging_host})
    # The live site on the same node still answers.
    assert live.get("/").status_code == 200


@pytest.mark.spec("JOB-40", "JOB-41", "JOB-42", "JOB-44")
def test_site_jobs_share_a_lab_node_and_its_provisioning_waits_for_them(
    live: LiveSite, api: httpx.Client, live_sites: list[str]
) -> None:
    """Two sites' jobs run on one node at the same time (node_site_jobs = 2); a
    provisioning queued after them starts only when both have ended, and nothing of
    the node starts beside it; a second check or provisioning request while one is
    active answers that job and queues nothing.

    The node is the live one, provisioned again: provisioning is idempotent, and
    a fresh node would cost minutes of creating and provisioning for no more
    evidence (the lock scopes are the queue's, whatever the node holds)."""
    # The daemon's setting, resolved as it resolved it (its environment, no option).
    assert resolve("dev", {}, environ=live.daemon.env)[0].node_site_jobs == 2
    node_id = live.node["id"]

    def node_jobs() -> dict[str, dict[str, Any]]:
        page = api.get("/api/jobs", params={"node_id": node_id, "limit": 500}).json()
        return {str(job["id"]): job for job in page["items"]}

    before = set(node_jobs())
    site_jobs = []
    for slug in ("gamma", "delta"):
        reply = api.post(
            "/api/sites", json={"name": slug.title(), "slug": slug, "node_id": node_id}
        )
        assert reply.status_code == 202, reply.text
        live_sites.append(reply.json()["site_id"])
        site_jobs.append(reply.json()["job_id"])
    provision = api.post(f"/api/nodes/{node_id}/provision")
    assert provision.status_code == 202, provision.text
    checks = []
    for _ in range(2):  # both while the provisioning waits or runs: the check is behind it
        reply = api.post(f"/api/nodes/{node_id}/check")
        assert reply.status_code == 202, reply.text
        checks.append(reply.json()["job_id"])
    again = api.post(f"/api/nodes/{node_id}/provision")
    assert again.status_code == 202, again.text
    # JOB-44: the second request of each names the active job.
    assert checks[0] == checks[1]
    assert again.json()["job_id"] == provision.json()["job_id"]

    for job_id in [*site_jobs, provision.json()["job_id"], checks[0]]:
        live.job_ok(job_id, within=900)
    jobs = node_jobs()
    # One job per request that queued one: two site jobs, one provisioning, one check.
    by_type = sorted(str(job["job_type"]) for i, job in jobs.items() if i not in before)
    assert by_type == ["node_check", "node_provision", "site_create", "site_create"], by_type
    a, b = (jobs[j] for j in site_jobs)
    prov, check = jobs[provision.json()["job_id"]], jobs[checks[0]]
    for job in (a, b, prov, check):  # one attempt each: the times are of that attempt
        assert job["attempt_count"] == 1, job
    # JOB-40: the two site jobs ran at the same time on one node.
    assert max(a["started_at"], b["started_at"]) < min(a["finished_at"], b["finished_at"])
    # JOB-41/42: the provisioning, queued after them, waited for both; the check,
    # queued after the provisioning, waited for it.
    assert prov["started_at"] >= max(a["finished_at"], b["finished_at"])
    assert check["started_at"] >= prov["finished_at"]
    # The live site came through its node's provisioning.
    assert live.get("/").status_code == 200
