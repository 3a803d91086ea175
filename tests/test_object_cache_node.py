"""The Redis object cache on a live lab node (specs/object-cache.md): the drop-in and the
environment's Redis user after site creation, isolation between two environments of the
node's one Redis, the switch (tasks/object_cache.yml run through Pressluft's runner) and
the removal with the environment.

Uses the session's live site (tests/support/live.py) and a staging clone of it, which the
module deletes at its end; the live site's own environment is left as it was (cache on).
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pressluft.contexts.sites.loaders import env_names
from pressluft.runners.ansible import ANSIBLE_DIR, PlaybookRun, PlaybookSummary, run_playbook
from pressluft.runners.keys import generate_key_pair
from pressluft.runners.ssh import NodeAddress
from tests.support.live import LiveSite, until

pytestmark = pytest.mark.daemon

ADMIN_SECRET = "/etc/redis/pressluft-admin.secret"
#: Commands an environment's Redis user must not run (each would touch or list what is
#: not its own), with their arguments.
REFUSED = (
    ["FLUSHDB"],
    ["FLUSHALL"],
    ["KEYS", "*"],
    ["SCAN", "0"],
    ["RANDOMKEY"],
    ["DBSIZE"],
    ["SELECT", "1"],
    ["SWAPDB", "0", "1"],
    ["CONFIG", "GET", "maxmemory"],
    ["INFO"],
    ["CLIENT", "LIST"],
    ["EVAL", "return redis.call('FLUSHDB')", "0"],
    ["ACL", "LIST"],
)


@pytest.fixture(scope="module")
def staging(live: LiveSite) -> Iterator[dict[str, str]]:
    """A staging clone of the live site's environment (a second environment on the node,
    cache on like its source); deleted at the module's end."""
    with live.api() as api:
        reply = api.post(
            f"/api/sites/{live.site_id}/environments",
            json={
                "name": "Object cache",
                "slug": "objcache",
                "type": "staging",
                "source_environment_id": live.environment_id,
            },
        )
        assert reply.status_code == 202, reply.text
        accepted = reply.json()
        live.job_ok(accepted["job_id"], 900)
        view = api.get(f"/api/environments/{accepted['environment_id']}").json()
    env = {
        "id": view["id"],
        "host": httpx.URL(view["preview_url"]).netloc.decode(),
        **env_names(view["id"], live.site_id),
    }
    yield env
    with live.api() as api:
        gone = api.delete(f"/api/environments/{env['id']}", params={"confirm": "objcache"})
        if gone.status_code == 202:
            live.job_ok(gone.json()["job_id"], 300)


def _production(live: LiveSite) -> dict[str, str]:
    return {"id": live.environment_id, **env_names(live.environment_id, live.site_id)}


def _admin(live: LiveSite, *command: str) -> str:
    """redis-cli on the node as Redis's admin (`default`, the root-only password)."""
    script = f'REDISCLI_AUTH="$(cat {ADMIN_SECRET})" exec redis-cli --user default --raw "$@"'
    code, output = live.exec("sh", "-c", script, "sh", *command)
    assert code == 0, output
    return output


def _password(live: LiveSite, env: dict[str, str]) -> str:
    code, config = live.exec("cat", f"{env['env_root']}/shared/wp-config.php")
    assert code == 0, config
    found = re.search(r"define\( 'WP_REDIS_PASSWORD', '([A-Za-z0-9]+)' \);", config)
    assert found, "no WP_REDIS_PASSWORD in wp-config.php"
    return found.group(1)


def _as_env(live: LiveSite, env: dict[str, str], *command: str) -> str:
    """redis-cli on the node as the environment's own Redis user (its wp-config password)."""
    script = 'REDISCLI_AUTH="$1"; export REDISCLI_AUTH; shift; exec redis-cli --raw "$@"'
    user = f"pressluft_{env['id']}"
    _, output = live.exec("sh", "-c", script, "sh", _password(live, env), "--user", user, *command)
    return output


def _keys(live: LiveSite, env: dict[str, str]) -> list[str]:
    return _admin(live, "--scan", "--pattern", f"pressluft_{env['id']}:*").splitlines()


def _wp(live: LiveSite, env: dict[str, str], php: str) -> str:
    """PHP with WordPress loaded (CLI, as the environment's user); its last output line."""
    script = f"cd {env['env_root']} && runuser -u {env['env_user']} -- php -r " + shlex.quote(
        f'define("WP_USE_THEMES", false); require "current/wp-load.php"; {php}'
    )
    code, output = live.exec("sh", "-c", script)
    assert code == 0, output
    return output.strip().splitlines()[-1] if output.strip() else ""


def _page(live: LiveSite, host: str | None = None) -> httpx.Response:
    reply = live.get("/", host=host)
    assert reply.status_code == 200, reply.text[:500]
    return reply


@pytest.mark.spec("OBJ-1", "OBJ-2")
def test_a_new_site_caches_its_objects_in_redis_under_its_prefix(live: LiveSite) -> None:
    env = _production(live)
    root = env["env_root"]
    code, link = live.exec("readlink", f"{root}/current/wp-content/object-cache.php")
    assert (code, link.strip()) == (0, "../../../shared/object-cache.php")
    code, _ = live.exec("test", "-f", f"{root}/shared/object-cache.php")
    assert code == 0
    _page(live)
    keys = _keys(live, env)
    assert keys, "no key of the environment in Redis after a page load"
    assert [k for k in keys if not k.startswith(f"pressluft_{env['id']}:")] == []
    # WordPress's own view: the drop-in is active and a value comes back from Redis.
    check = _wp(live, env, 'echo wp_using_ext_object_cache() ? "ext" : "memory";')
    assert check == "ext"
    # OBJ-2: nobody gets in without a password; root's admin password works.
    code, anonymous = live.exec("redis-cli", "-h", "127.0.0.1", "ping")
    assert "NOAUTH" in anonymous, anonymous
    assert _admin(live, "ping").strip() == "PONG"
    code, mode = live.exec("stat", "-c", "%U %a", ADMIN_SECRET)
    assert mode.strip() == "root 600"
    code, mode = live.exec("stat", "-c", "%U %G %a", f"{root}/shared/wp-config.php")
    assert mode.strip() == f"{env['env_user']} {env['env_user']} 640"


@pytest.mark.spec("OBJ-3")
def test_an_environment_cannot_read_write_list_or_flush_another_ones_keys(
    live: LiveSite, staging: dict[str, str]
) -> None:
    production = _production(live)
    _page(live)
    _page(live, staging["host"])
    theirs = _keys(live, staging)
    assert theirs, "the clone has no keys after a page load"
    own = _keys(live, production)[0]
    assert _as_env(live, production, "GET", own).strip() != ""
    assert "NOPERM" in _as_env(live, production, "GET", theirs[0])
    assert "NOPERM" in _as_env(live, production, "SET", theirs[0], "x")
    assert "NOPERM" in _as_env(live, production, "DEL", theirs[0])
    assert "NOPERM" in _as_env(live, production, "SET", "unprefixed", "x")
    for command in REFUSED:
        assert "NOPERM" in _as_env(live, production, *command), command
    assert _keys(live, staging) == theirs or set(theirs) <= set(_keys(live, staging))
    # A wrong password is refused, and so is the other environment's user name.
    script = 'REDISCLI_AUTH=wrong exec redis-cli --user "$1" ping'
    _, refused = live.exec("sh", "-c", script, "sh", f"pressluft_{production['id']}")
    assert "WRONGPASS" in refused or "NOAUTH" in refused, refused


@pytest.mark.spec("OBJ-4")
def test_a_flush_in_one_environment_leaves_the_others_keys(
    live: LiveSite, staging: dict[str, str]
) -> None:
    production = _production(live)
    _page(live, staging["host"])
    theirs = {k: _as_env(live, staging, "GET", k) for k in _keys(live, staging)}
    assert theirs
    generation = _admin(live, "HGET", f"pressluft_{production['id']}:gen", "*").strip()
    assert _wp(live, production, 'var_export(wp_cache_flush()); echo "\\n";') == "true"
    assert _admin(live, "HGET", f"pressluft_{production['id']}:gen", "*").strip() != generation
    for key, value in theirs.items():
        assert _as_env(live, staging, "GET", key) == value
    # After its flush the environment still works and caches anew.
    _page(live)
    assert _wp(
        live, production, 'echo wp_cache_get("alloptions", "options") ? "hit" : "miss";'
    ) == ("hit")


def _toggle(live: LiveSite, env: dict[str, str], on: bool, work: Path) -> PlaybookSummary:
    """tasks/object_cache.yml run alone (include_role tasks_from) through Pressluft's runner,
    as the cache toggle's job runs it: a playbook of the role's, the node over SSH."""
    ansible = work / "ansible-dir"
    if not ansible.exists():
        (ansible / "playbooks").mkdir(parents=True)
        shutil.copy(ANSIBLE_DIR / "ansible.cfg", ansible / "ansible.cfg")
        (ansible / "roles").symlink_to(ANSIBLE_DIR / "roles")
        (ansible / "playbooks" / "object-cache-test.yml").write_text(
            "---\n- name: Switch the object cache\n  hosts: target\n  gather_facts: false\n"
            "  tasks:\n    - name: The role's object cache tasks\n"
            "      ansible.builtin.include_role:\n        name: site_environment\n"
            "        tasks_from: object_cache\n"
        )
    keys = generate_key_pair("object-cache-test")
    line = keys.public_line
    code, out = live.exec("sh", "-c", f"echo {shlex.quote(line)} >> /root/.ssh/authorized_keys")
    assert code == 0, out
    code, host_key = live.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    assert code == 0, host_key
    node = NodeAddress(
        host="127.0.0.1",
        port=int(live.node["ports"]["ssh"]),
        user="root",
        private_key=keys.private_pem,
        host_key=" ".join(host_key.split()[:2]),
    )
    extra: dict[str, Any] = {
        "site_id": live.site_id,
        "environment_id": env["id"],
        "env_user": env["env_user"],
        "env_root": env["env_root"],
        "db_name": env["db_name"],
        "db_user": env["db_user"],
        "redis_prefix": env["redis_prefix"],
        "redis_cache_enabled": on,
    }
    run = PlaybookRun(
        playbook="object-cache-test.yml",
        node=node,
        extra_vars=extra,
        ansible_dir=ansible,
        allowlist=frozenset({"object-cache-test.yml"}),
    )
    lines: list[str] = []
    run_dir = work / f"run-{len(list(work.glob('run-*')))}"
    run_dir.mkdir()
    try:
        summary = asyncio.run(
            run_playbook(
                run,
                run_dir,
                lambda text, _: lines.append(text),
                asyncio.Event(),
                stray=lambda: None,
            )
        )
    finally:  # the shared node keeps no key of this test's
        live.exec("sed", "-i", "/ object-cache-test$/d", "/root/.ssh/authorized_keys")
    assert summary.rc == 0, "\n".join(lines)[-4000:]
    return summary


@pytest.mark.spec("OBJ-5")
def test_switching_the_object_cache_off_and_on_again(
    live: LiveSite, staging: dict[str, str], tmp_path: Path
) -> None:
    root = staging["env_root"]
    user = f"pressluft_{staging['id']}"
    _page(live, staging["host"])
    assert _keys(live, staging)

    off = _toggle(live, staging, False, tmp_path)
    assert off.data["object_cache"] == {"enabled": False, "dropin": False, "persistent": False}
    code, _ = live.exec("test", "-e", f"{root}/shared/object-cache.php")
    assert code != 0, "the drop-in is still there"
    assert f"user {user} " not in _admin(live, "ACL", "LIST")
    assert _keys(live, staging) == []
    _, acl = live.exec("cat", "/etc/redis/users.acl")
    assert user not in acl  # saved: a Redis restart does not bring it back
    # WordPress keeps answering from its in-memory cache, and writes nothing to Redis.
    _page(live, staging["host"])
    assert _keys(live, staging) == []
    assert "WP_REDIS_DISABLED', true" in live.exec("cat", f"{root}/shared/wp-config.php")[1]
    again = _toggle(live, staging, False, tmp_path)  # idempotent
    assert again.stats["node"].get("changed", 0) == 0, again.stats

    on = _toggle(live, staging, True, tmp_path)
    assert on.data["object_cache"] == {"enabled": True, "dropin": True, "persistent": True}
    assert f"user {user} " in _admin(live, "ACL", "LIST")
    _page(live, staging["host"])
    until(lambda: _keys(live, staging), within=10)
    again = _toggle(live, staging, True, tmp_path)
    assert again.stats["node"].get("changed", 0) == 0, again.stats
    # The production environment was not touched.
    assert _keys(live, _production(live))


@pytest.mark.spec("OBJ-6")
def test_deleting_an_environment_removes_its_redis_user_and_keys(live: LiveSite) -> None:
    # A second clone, deleted here (the module's staging clone stays for the others).
    with live.api() as api:
        reply = api.post(
            f"/api/sites/{live.site_id}/environments",
            json={
                "name": "Doomed",
                "slug": "doomed",
                "type": "staging",
                "source_environment_id": live.environment_id,
            },
        )
        assert reply.status_code == 202, reply.text
        env_id = reply.json()["environment_id"]
        live.job_ok(reply.json()["job_id"], 900)
        view = api.get(f"/api/environments/{env_id}").json()
        env = {"id": env_id, **env_names(env_id, live.site_id)}
        _page(live, httpx.URL(view["preview_url"]).netloc.decode())
        assert _keys(live, env)
        assert f"user pressluft_{env_id} " in _admin(live, "ACL", "LIST")
        gone = api.delete(f"/api/environments/{env_id}", params={"confirm": "doomed"})
        assert gone.status_code == 202, gone.text
        live.job_ok(gone.json()["job_id"], 300)
    assert f"user pressluft_{env_id} " not in _admin(live, "ACL", "LIST")
    assert _keys(live, env) == []
    _, acl = live.exec("cat", "/etc/redis/users.acl")
    assert f"pressluft_{env_id}" not in acl
