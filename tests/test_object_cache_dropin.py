"""The object-cache drop-in (`files/object-cache.php`) against a real `redis-server` on a
loopback port, run by the real `php` (with phpredis) and a minimal stub of the WordPress
functions it calls: each PHP process is one "request". The Redis users are the ones the
role gives environments (ACL with the role's command list, defaults/main.yml), so these
tests also prove that list is all the drop-in needs."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[1] / "pressluft" / "ansible" / "roles" / "site_environment"
DROPIN = ROLE / "files" / "object-cache.php"
COMMANDS: list[str] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())[
    "site_environment_redis_commands"
]
ADMIN = "admin-password-for-the-test"
ENVS = {
    "a": "11111111-1111-1111-1111-111111111111",
    "b": "22222222-2222-2222-2222-222222222222",
}

# One request: WordPress's few functions the drop-in uses, its constants, then the
# operations of the JSON request on stdin ([name, ...args]); the results as JSON.
DRIVER = r"""<?php
declare(strict_types=1);
$req = json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
define('ABSPATH', __DIR__ . '/');
foreach ($req['constants'] as $name => $value) { define($name, $value); }
function is_multisite() { return false; }
function get_current_blog_id() { return 1; }
function wp_suspend_cache_addition() { return false; }
require $argv[1];
wp_cache_init();
wp_cache_add_non_persistent_groups(['local']);
$out = [];
foreach ($req['ops'] as $op) {
    $name = array_shift($op);
    if ($name === 'connected') { $out[] = $GLOBALS['wp_object_cache']->is_connected(); continue; }
    if ($name === 'object') {  // set an object, change it, read it back
        $o = new stdClass(); $o->v = 1; wp_cache_set('obj', $o); $o->v = 2;
        $out[] = wp_cache_get('obj')->v; continue;
    }
    if ($name === 'wp_cache_get') {
        $value = wp_cache_get($op[0], $op[1] ?? '', $op[2] ?? false, $found);
        $out[] = ['value' => $value, 'found' => $found]; continue;
    }
    $out[] = $name(...$op);
}
echo json_encode($out, JSON_THROW_ON_ERROR);
"""


@dataclass
class Redis:
    port: int
    process: subprocess.Popen[bytes]

    def cli(self, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "--user", "default", "--raw", *command],
            env={"REDISCLI_AUTH": ADMIN, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _password(env: str) -> str:
    return f"password-of-environment-{env}-0123456789"


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if shutil.which("redis-server") is None or shutil.which("php") is None:
        pytest.fail("redis-server and php are needed (make system-deps)")
    probe = subprocess.run(["php", "-m"], capture_output=True, text=True, check=True)
    if "redis" not in probe.stdout.split():
        pytest.fail("php's redis extension is needed (make system-deps: php-redis)")
    work = tmp_path_factory.mktemp("redis")
    lines = [f"user default on #{hashlib.sha256(ADMIN.encode()).hexdigest()} ~* &* +@all"]
    for env, env_id in ENVS.items():
        digest = hashlib.sha256(_password(env).encode()).hexdigest()
        allowed = " ".join("+" + c for c in COMMANDS)
        lines.append(
            f"user pressluft_{env_id} on #{digest} ~pressluft_{env_id}:* resetchannels -@all {allowed}"
        )
    (work / "users.acl").write_text("\n".join(lines) + "\n")
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work), "--aclfile", str(work / "users.acl"),
         "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    server = Redis(port, process)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if server.cli("PING").strip() == "PONG":
                    break
            except subprocess.CalledProcessError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(10)


def request(
    redis: Redis, env: str, *ops: list[Any], password: str | None = None, port: int | None = None
) -> tuple[list[Any], str]:
    """One PHP process as environment `env`: the operations' results and its stderr."""
    env_id = ENVS[env]
    constants = {
        "WP_REDIS_PREFIX": f"pressluft_{env_id}:",
        "WP_REDIS_USER": f"pressluft_{env_id}",
        "WP_REDIS_PASSWORD": _password(env) if password is None else password,
        "WP_REDIS_PORT": redis.port if port is None else port,
        "WP_REDIS_DISABLED": False,
    }
    done = subprocess.run(
        ["php", "-d", "display_errors=stderr", "-r", DRIVER.removeprefix("<?php"), "--",
         str(DROPIN)],
        input=json.dumps({"constants": constants, "ops": list(ops)}),
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout), done.stderr


def _keys(redis: Redis, env: str) -> list[str]:
    return redis.cli("--scan", "--pattern", f"pressluft_{ENVS[env]}:*").split()


@pytest.mark.spec("OBJ-7")
def test_values_outlive_the_request_and_follow_wordpress_rules(redis: Redis) -> None:
    results, log = request(
        redis,
        "a",
        ["connected"],
        ["wp_cache_set", "k", {"x": [1, 2]}, "posts"],
        ["wp_cache_add", "k", "other", "posts"],
        ["wp_cache_replace", "absent", "v", "posts"],
        ["wp_cache_add", "new", "v", "posts"],
        ["wp_cache_set", "n", 5, "counts-x"],
        ["wp_cache_incr", "n", 3, "counts-x"],
        ["wp_cache_decr", "n", 100, "counts-x"],
        ["wp_cache_incr", "missing", 1, "counts-x"],
        ["wp_cache_set", "here", "memory only", "local"],
        ["wp_cache_set_multiple", {"m1": 1, "m2": False}, "multi"],
        ["object"],
        ["wp_cache_supports", "flush_group"],
    )
    assert results == [True, True, False, False, True, True, 8, 0, False, True,
                       {"m1": True, "m2": True}, 1, True]  # fmt: skip
    assert log == ""
    # A later request (another process) finds the persistent values in Redis.
    results, _ = request(
        redis,
        "a",
        ["wp_cache_get", "k", "posts"],
        ["wp_cache_get", "here", "local"],
        ["wp_cache_get_multiple", ["m1", "m2", "m3"], "multi"],
        ["wp_cache_get", "n", "counts-x"],
        ["wp_cache_delete_multiple", ["m1", "m3"], "multi"],
        ["wp_cache_get", "m1", "multi", True],
    )
    assert results == [
        {"value": {"x": [1, 2]}, "found": True},
        {"value": False, "found": False},  # a non-persistent group stays in its request
        {"m1": 1, "m2": False, "m3": False},
        {"value": 0, "found": True},
        {"m1": True, "m3": False},
        {"value": False, "found": False},
    ]
    keys = _keys(redis, "a")
    assert keys and all(k.startswith(f"pressluft_{ENVS['a']}:") for k in keys)
    assert not any(":local:" in k for k in keys)


@pytest.mark.spec("OBJ-4", "OBJ-7")
def test_a_flush_is_a_new_generation_of_this_environment_only(redis: Redis) -> None:
    request(redis, "a", ["wp_cache_set", "f", "a's", "g1"], ["wp_cache_set", "f", "a's", "g2"])
    request(redis, "b", ["wp_cache_set", "f", "b's", "g1"])
    results, _ = request(redis, "a", ["wp_cache_flush_group", "g1"])
    assert results == [True]
    results, _ = request(redis, "a", ["wp_cache_get", "f", "g1"], ["wp_cache_get", "f", "g2"])
    assert [r["found"] for r in results] == [False, True]
    results, _ = request(redis, "a", ["wp_cache_flush"], ["wp_cache_get", "f", "g2"])
    assert results == [True, {"value": False, "found": False}]
    results, _ = request(redis, "a", ["wp_cache_get", "f", "g2"])
    assert results == [{"value": False, "found": False}]
    results, _ = request(redis, "b", ["wp_cache_get", "f", "g1"])
    assert results == [{"value": "b's", "found": True}]
    # Should the generation hash be evicted, the next generation is new: nothing old returns.
    request(redis, "a", ["wp_cache_set", "e", "before", "g3"])
    redis.cli("DEL", f"pressluft_{ENVS['a']}:gen")
    results, _ = request(redis, "a", ["wp_cache_get", "e", "g3"])
    assert results == [{"value": False, "found": False}]


@pytest.mark.spec("OBJ-8")
def test_without_redis_the_request_uses_memory_and_logs_once(redis: Redis) -> None:
    for kwargs in ({"password": "wrong-password-0123456789abcdef"}, {"port": _free_port()}):
        results, log = request(
            redis,
            "a",
            ["connected"],
            ["wp_cache_set", "k", "v"],
            ["wp_cache_get", "k"],
            ["wp_cache_get", "absent"],
            ["wp_cache_flush"],
            **kwargs,
        )
        assert results == [False, True, {"value": "v", "found": True},
                           {"value": False, "found": False}, True]  # fmt: skip
        assert log.count("pressluft object cache: Redis unavailable") == 1, log
