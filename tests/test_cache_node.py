"""The page cache on a real lab node (specs/cache.md), on the session's live site:
cached for anonymous visitors in the environment's own zone, bypassed for logged-in
users, carts, credentials and the REST API, purged through the API and verified,
purged by WordPress's own changes through the privileged path (CLI PHP through sudo,
PHP-FPM through the node's purge socket), turned off and on.
The site is left as it was found (page cache on, no post added).

Measured on a lab node (2 shared cores): a `cache_purge` job of one URL — one SSH
command, then the verifying GET — takes about 1.1 s from queued to succeeded; an
`env_cache_toggle` (an ansible-playbook run) about 20 s. The test prints both (-s).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
import uuid

import httpx
import pytest

from tests.support.live import LiveSite

pytestmark = pytest.mark.daemon

PURGE = "/usr/local/sbin/pressluft-cache-purge"
SOCKET = "/run/pressluft/cache-purge.sock"
#: A client of the purge socket, run on the node: stdin is the request, the answer is printed.
ASK = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.settimeout(30)\n"
    f"s.connect({SOCKET!r})\n"
    "s.sendall(sys.stdin.buffer.read())\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "print(s.makefile().readline().strip())\n"
)


def _cache(live: LiveSite, path: str, **headers: str) -> str | None:
    reply = live.get(path, headers=headers)
    assert reply.status_code in (200, 301, 302, 404), (path, reply.status_code)
    return reply.headers.get("x-fastcgi-cache")


def _env_user(live: LiveSite) -> str:
    return "wp_" + live.environment_id.replace("-", "")[:12]


def _as_user(live: LiveSite, script: str) -> tuple[int, str]:
    """A shell command as the environment's Linux user on the node."""
    return live.exec("runuser", "-u", _env_user(live), "--", "sh", "-c", script)


def _php(live: LiveSite, code: str) -> str:
    """PHP (CLI) as the environment's user with WordPress loaded."""
    root = f"/var/www/sites/{live.site_id}/{live.environment_id}/current"
    wp = f"define('WP_USE_THEMES', false); require '{root}/wp-load.php'; {code}"
    rc, out = _as_user(live, f"cd {root} && php -r {shlex.quote(wp)}")
    assert rc == 0, out
    return out


def _ask(live: LiveSite, user: str, request: str, feed: str = "") -> dict[str, object]:
    """The purge socket's answer to a request sent by a Linux user of the node (the
    request, or what the shell command `feed` prints)."""
    feed = feed or f"printf '%s' {shlex.quote(request)}"
    script = f"{feed} | python3 -c {shlex.quote(ASK)}"
    rc, out = live.exec("runuser", "-u", user, "--", "sh", "-c", script)
    assert rc == 0, out
    return dict(json.loads(out.strip().splitlines()[-1]))


def _unique(tag: str) -> str:
    return f"/?cch={tag}-{uuid.uuid4().hex[:8]}"


def _log(live: LiveSite, job_id: str) -> str:
    """A job's log lines, as text."""
    return "\n".join(line["text"] for line in json.loads(live.job_log(job_id))["lines"])


def _cache_file(live: LiveSite, key: str) -> str:
    digest = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return f"/var/cache/nginx/pressluft/{live.environment_id}/{digest[-1]}/{digest[-3:-1]}/{digest}"


def _set_cache(live: LiveSite, **flags: bool) -> dict[str, object]:
    with live.api() as api:
        reply = api.patch(f"/api/environments/{live.environment_id}/cache", json=flags)
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
    started = time.monotonic()
    live.job_ok(job_id)
    print(f"env_cache_toggle {flags}: {time.monotonic() - started:.1f} s")
    with live.api() as api:
        return dict(api.get(f"/api/environments/{live.environment_id}").json())


@pytest.mark.spec("CCH-5")
def test_anonymous_pages_are_cached_in_the_environments_own_zone(live: LiveSite) -> None:
    path = _unique("cached")
    assert _cache(live, path) == "MISS"
    assert _cache(live, path) == "HIT"
    host = live.preview_url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0]
    rc, out = live.exec("test", "-f", _cache_file(live, f"httpGET{host}{path}"))
    assert rc == 0, f"no cached file where the purge command looks ({out})"
    rc, out = live.exec("cat", f"/etc/nginx/conf.d/pressluft-cache-{live.environment_id}.conf")
    assert rc == 0 and f"/var/cache/nginx/pressluft/{live.environment_id} " in out, out


@pytest.mark.spec("CCH-6")
def test_logged_in_users_carts_credentials_and_the_rest_api_bypass_it(live: LiveSite) -> None:
    for headers in (
        {"Cookie": "wordpress_logged_in_abc=admin%7C1"},
        {"Cookie": "woocommerce_items_in_cart=1"},
        {"Cookie": "wp_woocommerce_session_abc=1"},
        {"Authorization": "Basic YWRtaW46c2VjcmV0"},
    ):
        path = _unique("bypass")
        assert [_cache(live, path, **headers) for _ in range(2)] == ["BYPASS", "BYPASS"], headers
    for path in ("/?rest_route=/", "/index.php?rest_route=/wp/v2/posts", "/wp-json/"):
        seen = [_cache(live, path) for _ in range(2)]
        assert "HIT" not in seen, (path, seen)


@pytest.mark.spec("CCH-7")
def test_a_purge_through_the_api_is_verified(live: LiveSite) -> None:
    path = _unique("purge")
    assert [_cache(live, path) for _ in range(2)] == ["MISS", "HIT"]
    url = live.preview_url.rstrip("/") + path
    with live.api() as api:
        reply = api.post(
            f"/api/environments/{live.environment_id}/cache/purge", json={"urls": [url]}
        )
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["job_id"]
    started = time.monotonic()
    live.job_ok(job_id, within=120)
    print(f"cache_purge of one URL: {time.monotonic() - started:.2f} s (queued to succeeded)")
    log = _log(live, job_id)
    assert f"verified: {url} is a MISS now" in log, log
    assert "one SSH command" in log, log
    # The job's own GET re-cached the page: it is served from the cache again.
    assert _cache(live, path) == "HIT"
    # Everything: the directory is emptied, the home page verified.
    with live.api() as api:
        everything = api.post(f"/api/environments/{live.environment_id}/cache/purge").json()
    live.job_ok(everything["job_id"], within=120)
    assert '"urls": "all"' in _log(live, everything["job_id"])
    assert _cache(live, path) == "MISS"


@pytest.mark.spec("CCH-8")
def test_the_environments_user_purges_its_own_cache_only(live: LiveSite) -> None:
    path = _unique("sudo")
    assert [_cache(live, path) for _ in range(2)] == ["MISS", "HIT"]
    url = live.preview_url.rstrip("/") + path
    rc, out = _as_user(
        live, f"echo {shlex.quote(url)} | sudo -n {PURGE} {live.environment_id} --stdin"
    )
    assert rc == 0 and '"files": 1' in out, out
    assert _cache(live, path) == "MISS"
    other = str(uuid.uuid4())
    rc, out = _as_user(live, f"echo '*' | sudo -n {PURGE} {other} --stdin")
    assert rc != 0, out
    rc, out = _as_user(live, f"sudo -n {PURGE} {live.environment_id} {shlex.quote(url)}")
    assert rc != 0, out  # URLs only on stdin: the sudoers line allows no other form
    rc, out = _as_user(live, f"rm -f /var/cache/nginx/pressluft/{live.environment_id}/x")
    assert rc != 0  # the PHP user cannot touch nginx's files itself
    rc, out = live.exec("visudo", "-cf", f"/etc/sudoers.d/pressluft-cache-{live.environment_id}")
    assert rc == 0, out


@pytest.mark.spec("CCH-9")
def test_a_post_published_through_wordpress_shows_at_once(live: LiveSite) -> None:
    assert _cache(live, "/") in ("MISS", "HIT")
    assert _cache(live, "/") == "HIT"
    title = f"Fresh news {uuid.uuid4().hex[:8]}"
    assert title not in live.get("/").text
    post_id = _php(
        live,
        "echo wp_insert_post(['post_title' => '" + title + "', 'post_status' => 'publish',"
        " 'post_content' => 'hot off the press'], true);",
    ).strip()
    assert post_id.isdigit(), post_id
    try:
        home = live.get("/")
        assert home.headers.get("x-fastcgi-cache") == "MISS", home.headers
        assert title in home.text
        headers = _php(
            live,
            "$h = apply_filters('site_status_page_cache_supported_cache_headers', []);"
            " echo isset($h['x-fastcgi-cache']) && $h['x-fastcgi-cache']('HIT') ? 'yes' : 'no';",
        )
        assert headers.strip().endswith("yes"), headers
    finally:  # leave the site as it was: the deletion purges the home page too
        _php(live, f"wp_delete_post({int(post_id) if post_id.isdigit() else 0}, true);")
    assert title not in live.get("/").text


@pytest.mark.spec("CCH-9")
def test_purges_asked_for_under_php_fpm_are_run_by_the_cron_line(live: LiveSite) -> None:
    """PHP-FPM cannot run the purge command (proc_open is disabled there): the plugin
    queues the URLs in the pending file, which the environment's cron line hands over."""
    path = _unique("pending")
    assert [_cache(live, path) for _ in range(2)] == ["MISS", "HIT"]
    rc, crontab = live.exec("cat", f"/etc/cron.d/pressluft-{live.environment_id}")
    assert rc == 0, crontab
    (line,) = [
        row
        for row in crontab.splitlines()
        if "cache-purge.pending" in row and not row.startswith("#")
    ]
    user, command = line.split(None, 6)[5:]
    assert user == _env_user(live)
    pending = f"/var/www/sites/{live.site_id}/{live.environment_id}/tmp/cache-purge.pending"
    url = live.preview_url.rstrip("/") + path
    rc, out = _as_user(live, f"echo {shlex.quote(url)} >> {pending} && {command}")
    assert rc == 0, out
    assert _cache(live, path) == "MISS"
    rc, _ = live.exec("test", "-e", pending)
    assert rc != 0  # handed over and gone


@pytest.mark.spec("CCH-12")
def test_a_post_published_under_php_fpm_shows_at_once(live: LiveSite) -> None:
    """A post published by a PHP-FPM request (wp-admin's way, where the exec family is
    disabled) purges through the node's purge socket before the request ends: the very
    next anonymous GET of the home page shows it, no cron minute, no pending file."""
    assert _cache(live, "/") in ("MISS", "HIT")
    assert _cache(live, "/") == "HIT"
    title = f"Fresh from FPM {uuid.uuid4().hex[:8]}"
    assert title not in live.get("/").text
    env_root = f"/var/www/sites/{live.site_id}/{live.environment_id}"
    script = f"pressluft-publish-{uuid.uuid4().hex[:12]}.php"
    code = (
        "<?php\nrequire __DIR__ . '/wp-load.php';\n"
        "$id = wp_insert_post(['post_title' => '" + title + "', 'post_status' => 'publish',"
        " 'post_content' => 'published under FPM'], true);\n"
        "echo PHP_SAPI, ' ', is_wp_error($id) ? $id->get_error_message() : $id;\n"
    )
    rc, out = _as_user(live, f"printf '%s' {shlex.quote(code)} > {env_root}/current/{script}")
    assert rc == 0, out
    post_id = "0"
    try:
        # POST: never cached (nor served from the cache); handled by the pool, as wp-admin is.
        reply = httpx.post(
            f"http://127.0.0.1:{live.http_port}/{script}",
            headers={"Host": httpx.URL(live.preview_url).netloc.decode()},
            timeout=60,
        )
        assert reply.status_code == 200, (reply.status_code, reply.text[:500])
        sapi, post_id = reply.text.strip().split()[-2:]
        assert sapi == "fpm-fcgi" and post_id.isdigit(), reply.text[:500]
        home = live.get("/")
        assert home.headers.get("x-fastcgi-cache") == "MISS", home.headers
        assert title in home.text
        # Purged by the socket, not queued for the cron line.
        rc, _ = live.exec("test", "-s", f"{env_root}/tmp/cache-purge.pending")
        assert rc != 0, "the purge was queued for cron instead of done at once"
        rc, log = live.exec("tail", "-n", "20", "/var/log/pressluft-cache-purge.log")
        assert rc == 0 and f"user={_env_user(live)} environment={live.environment_id}" in log, log
    finally:
        live.exec("rm", "-f", f"{env_root}/current/{script}")
        if post_id.isdigit() and post_id != "0":  # the deletion purges the home page too
            _php(live, f"wp_delete_post({int(post_id)}, true);")
    assert title not in live.get("/").text


@pytest.mark.spec("CCH-13")
def test_the_purge_socket_serves_an_environments_user_for_its_own_cache_only(
    live: LiveSite,
) -> None:
    path = _unique("socket")
    assert [_cache(live, path) for _ in range(2)] == ["MISS", "HIT"]
    url = live.preview_url.rstrip("/") + path
    rc, mode = live.exec("stat", "-c", "%a %U", SOCKET)
    assert (rc, mode.strip()) == (0, "666 root"), mode
    # Without systemd, node-init starts what runlevel 2 enables: the socket comes back at boot.
    rc, links = live.exec("sh", "-c", "ls /etc/rc2.d/S*pressluft-cache-purge")
    assert rc == 0, links
    # Not an environment's user (root, nginx's user): refused, whatever the request says.
    for stranger in ("root", "www-data"):
        answer = _ask(live, stranger, f"{url}\n*\n")
        assert answer == {"ok": False, "error": "not an environment's user"}, (stranger, answer)
    assert _cache(live, path) == "HIT"
    # Another environment's user (its own map entry): the peer's uid names its environment,
    # so this environment's URL and even `*` purge nothing here.
    other_user, other_env = f"wp_{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    entry = f"/etc/pressluft/cache-purge-users/{other_user}"
    rc, out = live.exec(
        "sh",
        "-c",
        f"useradd --system --no-create-home --shell /usr/sbin/nologin {other_user}"
        f" && printf '%s\\n' {other_env} > {entry} && chmod 0600 {entry}",
    )
    assert rc == 0, out
    try:
        answer = _ask(live, other_user, f"{url}\n*\n")
        assert answer["ok"] is True and answer["environment_id"] == other_env, answer
        assert answer["files"] == 0, answer
        assert _cache(live, path) == "HIT"
        # Its map entry gone (its environment deleted): no environment's user any more.
        assert live.exec("rm", "-f", entry)[0] == 0
        assert _ask(live, other_user, url)["ok"] is False
    finally:
        live.exec("rm", "-f", entry)
        live.exec("userdel", other_user)
    # This environment's user: purged in its own cache; bounded requests.
    answer = _ask(live, _env_user(live), url + "\n")
    assert answer == {
        "ok": True,
        "environment_id": live.environment_id,
        "files": 1,
        "urls": 1,
    }, answer
    assert _cache(live, path) == "MISS"
    assert _ask(live, _env_user(live), "") == {"ok": False, "error": "no URLs"}
    assert _ask(live, _env_user(live), "rm -rf /\n")["ok"] is False
    too_large = _ask(live, _env_user(live), "", feed=f"yes {shlex.quote(url)} | head -c 300000")
    assert too_large == {"ok": False, "error": "request too large"}, too_large


@pytest.mark.spec("CCH-4")
def test_the_page_cache_turns_off_and_on(live: LiveSite) -> None:
    env = _set_cache(live, fastcgi_cache_enabled=False)
    try:
        assert (env["fastcgi_cache_enabled"], env["redis_cache_enabled"]) == (False, True)
        path = _unique("off")
        assert [_cache(live, path) for _ in range(2)] == [None, None]
        assert _cache(live, "/") is None
        rc, _ = live.exec(
            "test", "-e", f"/etc/nginx/conf.d/pressluft-cache-{live.environment_id}.conf"
        )
        assert rc != 0
    finally:
        env = _set_cache(live, fastcgi_cache_enabled=True)
    assert (env["fastcgi_cache_enabled"], env["redis_cache_enabled"]) == (True, True)
    path = _unique("on")
    assert [_cache(live, path) for _ in range(2)] == ["MISS", "HIT"]


@pytest.mark.spec("CCH-11")
def test_a_clone_purges_its_cache_and_a_deletion_removes_it(live: LiveSite) -> None:
    with live.api() as api:
        reply = api.post(
            f"/api/sites/{live.site_id}/environments",
            json={
                "name": "Cache copy",
                "slug": "cache-copy",
                "type": "clone",
                "source_environment_id": live.environment_id,
            },
        )
        assert reply.status_code == 202, reply.text
        clone, job_id = reply.json()["environment_id"], reply.json()["job_id"]
    live.job_ok(job_id, within=900)
    log = _log(live, job_id)
    assert '"urls": "all"' in log and "is a MISS now" in log, log
    paths = [
        f"/var/cache/nginx/pressluft/{clone}",
        f"/etc/nginx/conf.d/pressluft-cache-{clone}.conf",
        f"/etc/nginx/pressluft/env-{clone}.conf",
        f"/etc/sudoers.d/pressluft-cache-{clone}",
        "/etc/pressluft/cache-purge-users/wp_" + clone.replace("-", "")[:12],
    ]
    for path in paths:
        assert live.exec("test", "-e", path)[0] == 0, path
    with live.api() as api:
        gone = api.delete(f"/api/environments/{clone}", params={"confirm": "cache-copy"})
        assert gone.status_code == 202, gone.text
    live.job_ok(gone.json()["job_id"], within=600)
    for path in paths:
        assert live.exec("test", "-e", path)[0] != 0, f"{path} outlived its environment"
    # The source's cache is untouched by the copy's deletion.
    assert live.exec("test", "-d", f"/var/cache/nginx/pressluft/{live.environment_id}")[0] == 0
