"""The WordPress helper shipped to nodes, run by the real `php` binary: the
serialization-safe search-replace (`pressluft-replace.php`, no WordPress needed)
and the JSON protocol of `pressluft-wp.php` where it answers before loading
WordPress (usage errors, bad requests, a WordPress that dies while loading)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

FILES = (
    Path(__file__).resolve().parents[1]
    / "pressluft"
    / "ansible"
    / "roles"
    / "site_environment"
    / "files"
)
REPLACE = FILES / "pressluft-replace.php"
HELPER = FILES / "pressluft-wp.php"

OLD = "http://old.example"
NEW = "https://www.new-site.example"  # longer than OLD
SHORT = "http://o.ex"  # shorter than OLD

# Runs pressluft_replace_cell() on base64 cells (byte-exact, NUL and non-UTF-8
# included) and reports, for each result, whether PHP unserializes it and the
# class of a top-level object.
DRIVER = r"""<?php
declare(strict_types=1);
require $argv[1];
$req = json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$out = [];
foreach ($req['cells'] as $b64) {
    $cell = base64_decode($b64, true);
    try {
        $new = pressluft_replace_cell($cell, $req['from'], $req['to']);
    } catch (PressluftReplaceUnsafe $e) {
        $out[] = ['unsafe' => $e->getMessage()];
        continue;
    }
    $value = @unserialize($new, ['allowed_classes' => false]);
    $class = null;
    if (is_object($value)) {
        $class = ((array) $value)['__PHP_Incomplete_Class_Name'] ?? get_class($value);
    }
    $out[] = [
        'cell' => base64_encode($new),
        'unserializes' => $value !== false || $new === 'b:0;',
        'class' => $class,
    ];
}
echo json_encode($out, JSON_THROW_ON_ERROR);
"""

# Runs pressluft_replace() on an already decoded (JSON) value.
VALUE_DRIVER = r"""<?php
declare(strict_types=1);
require $argv[1];
$req = json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
echo json_encode(pressluft_replace($req['value'], $req['from'], $req['to']), JSON_THROW_ON_ERROR);
"""


@pytest.fixture(scope="module")
def php() -> str:
    found = shutil.which("php")
    if found is None:
        pytest.fail("the `php` binary (php-cli) is required: apt-get install php-cli")
    return found


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("php") / "driver.php"
    path.write_text(DRIVER)
    return path


def s(text: str | bytes) -> bytes:
    """A PHP-serialized string: its length is counted in bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return b's:%d:"%s";' % (len(raw), raw)


def a(*pairs: tuple[bytes, bytes]) -> bytes:
    """A PHP-serialized array from (serialized key, serialized value) pairs."""
    return b"a:%d:{%s}" % (len(pairs), b"".join(k + v for k, v in pairs))


def obj(cls: str, *pairs: tuple[bytes, bytes]) -> bytes:
    """A PHP-serialized object of class `cls` with the given properties."""
    return b'O:%d:"%s":%d:{%s}' % (
        len(cls),
        cls.encode(),
        len(pairs),
        b"".join(k + v for k, v in pairs),
    )


def run_cells(
    php: str, driver: Path, cells: list[bytes], frm: str = OLD, to: str = NEW
) -> list[dict[str, Any]]:
    request = {
        "from": frm,
        "to": to,
        "cells": [base64.b64encode(cell).decode() for cell in cells],
    }
    done = subprocess.run(
        [php, str(driver), str(REPLACE)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr  # no warnings, no notices
    results: list[dict[str, Any]] = json.loads(done.stdout)
    for result in results:
        if "cell" in result:
            result["cell"] = base64.b64decode(result["cell"])
    return results


def replace(php: str, driver: Path, cell: bytes, frm: str = OLD, to: str = NEW) -> bytes:
    """The one replaced cell (failing when it was refused as unsafe)."""
    [result] = run_cells(php, driver, [cell], frm, to)
    assert "cell" in result, result
    out: bytes = result["cell"]
    return out


@pytest.mark.spec("WPH-1")
def test_plain_strings_are_replaced_as_strings(php: str, driver: Path) -> None:
    cell = f"Visit {OLD}/about or {OLD}/contact".encode()
    assert replace(php, driver, cell) == f"Visit {NEW}/about or {NEW}/contact".encode()


@pytest.mark.spec("WPH-1")
@pytest.mark.parametrize("to", [NEW, SHORT], ids=["longer", "shorter"])
def test_a_serialized_string_gets_its_length_recomputed(php: str, driver: Path, to: str) -> None:
    [result] = run_cells(php, driver, [s(f"{OLD}/wp-content/logo.png")], to=to)
    assert result["cell"] == s(f"{to}/wp-content/logo.png")
    assert result["unserializes"] is True


@pytest.mark.spec("WPH-1")
@pytest.mark.parametrize("to", [NEW, SHORT], ids=["longer", "shorter"])
def test_nested_arrays_are_replaced_in_keys_and_values(php: str, driver: Path, to: str) -> None:
    def nested(url: str) -> bytes:
        return a(
            (s(url), a((s("home"), s(url + "/")), (b"i:7;", s(f"see {url}/x")))),
            (s("count"), b"i:3;"),
            (s("menu"), a((b"i:0;", a((s(url + "/shop"), b"b:1;"))))),
        )

    [result] = run_cells(php, driver, [nested(OLD)], to=to)
    assert result["cell"] == nested(to)
    assert result["unserializes"] is True


@pytest.mark.spec("WPH-1")
def test_an_object_of_an_unknown_class_stays_that_object(php: str, driver: Path) -> None:
    def widget(url: str) -> bytes:
        return obj(
            "Acme_Slider_Settings",
            (s("url"), s(url + "/slide.jpg")),
            (s("\0*\0links"), a((s(url), s(url + "/next")))),  # protected
            (s("\0Acme_Slider_Settings\0inner"), obj("Acme_Link", (s("href"), s(url)))),  # private
            (s("count"), b"i:2;"),
        )

    [result] = run_cells(php, driver, [widget(OLD)])
    # Rewritten by unserializing with allowed_classes => false: the incomplete
    # class serializes back under its original name, every length right.
    assert result["cell"] == widget(NEW)
    assert result["unserializes"] is True
    assert result["class"] == "Acme_Slider_Settings"


@pytest.mark.spec("WPH-1")
def test_serialized_false_is_recognized(php: str, driver: Path) -> None:
    # 'b:0;' unserializes to false, like a failure: it must still count as
    # serialized data ("b" would otherwise be replaced as plain text).
    [bare] = run_cells(php, driver, [b"b:0;"], frm="b", to="x")
    assert bare == {"cell": b"b:0;", "unserializes": True, "class": None}
    cell = a((s(OLD), b"b:0;"), (s("on"), b"b:1;"), (s("none"), b"N;"))
    assert replace(php, driver, cell) == a(
        (s(NEW), b"b:0;"), (s("on"), b"b:1;"), (s("none"), b"N;")
    )


@pytest.mark.spec("WPH-1")
def test_what_only_looks_serialized_is_a_plain_string(php: str, driver: Path) -> None:
    wrong_length = b's:5:"' + OLD.encode() + b'";'
    trailing = s("x") + OLD.encode()  # unserialize() alone would drop the tail
    truncated = b"a:2:{" + s(OLD)
    results = run_cells(php, driver, [wrong_length, trailing, truncated])
    expected = [
        cell.replace(OLD.encode(), NEW.encode()) for cell in (wrong_length, trailing, truncated)
    ]
    assert [r["cell"] for r in results] == expected


@pytest.mark.spec("WPH-1")
def test_multibyte_text_is_counted_in_bytes(php: str, driver: Path) -> None:
    old = "http://grüße.example"
    new = "https://straße-und-ü.example"
    cell = a((s(f"{old}/ü"), s(f"Grüße aus {old} — 東京")))
    [result] = run_cells(php, driver, [cell], frm=old, to=new)
    assert result["cell"] == a((s(f"{new}/ü"), s(f"Grüße aus {new} — 東京")))
    assert result["cell"].count(b"s:%d:" % len(f"Grüße aus {new} — 東京".encode())) == 1
    assert result["unserializes"] is True


@pytest.mark.spec("WPH-1")
def test_double_serialized_data_is_rewritten_inside(php: str, driver: Path) -> None:
    inner = a((s("url"), s(OLD)))
    assert replace(php, driver, s(inner)) == s(a((s("url"), s(NEW))))


@pytest.mark.spec("WPH-1")
def test_cells_without_the_search_string_stay_byte_identical(php: str, driver: Path) -> None:
    cells = [
        b"nothing to see",
        b"\xff\xfe not UTF-8 \x00",
        a((s("pi"), b"d:3.1415926535897931;")),  # re-serializing would write d:3.141592653589793;
        s("https://elsewhere.example"),
        b'C:11:"ArrayObject":4:{abcd}',
        b"a:1:{broken",
    ]
    assert [r["cell"] for r in run_cells(php, driver, cells)] == cells
    # The search string occurs, but only outside strings: nothing changes either.
    only_in_a_float = a((b"i:0;", b"d:0.10000000000000001;"))
    assert [r["cell"] for r in run_cells(php, driver, [only_in_a_float], frm="0.1", to="x")] == [
        only_in_a_float
    ]


@pytest.mark.spec("WPH-1")
def test_serialized_data_that_cannot_be_rewritten_is_refused_not_mangled(
    php: str, driver: Path
) -> None:
    payload = b"x:i:0;" + a((b"i:0;", s(OLD))) + b";m:a:0:{}"
    custom = b'C:11:"ArrayObject":%d:{%s}' % (len(payload), payload)  # opaque to unserialize
    enum = a((s("url"), s(OLD)), (s("mode"), b'E:11:"Mode:Active";'))
    collision = a((s(OLD), b"i:1;"), (s(NEW), b"i:2;"))  # two keys would become one
    results = run_cells(php, driver, [custom, enum, collision])
    assert all("unsafe" in r for r in results), results


@pytest.mark.spec("WPH-1")
def test_decoded_values_are_replaced_recursively(php: str, tmp_path: Path) -> None:
    script = tmp_path / "value.php"
    script.write_text(VALUE_DRIVER)
    value = {OLD: [f"{OLD}/a", 1, None, True, {"k": s(OLD).decode()}]}
    done = subprocess.run(
        [php, str(script), str(REPLACE)],
        input=json.dumps({"value": value, "from": OLD, "to": NEW}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == {NEW: [f"{NEW}/a", 1, None, True, {"k": s(NEW).decode()}]}


def run_helper(php: str, *args: str, stdin: str = "") -> tuple[int, dict[str, Any], str]:
    """Run pressluft-wp.php; stdout must be exactly one JSON object on one line."""
    done = subprocess.run(
        [php, str(HELPER), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1, done.stdout
    answer: dict[str, Any] = json.loads(done.stdout)
    assert isinstance(answer, dict)
    return done.returncode, answer, done.stderr


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A directory that looks like WordPress but must never be loaded."""
    root = tmp_path / "wordpress"
    (root / "wp-includes").mkdir(parents=True)
    (root / "wp-load.php").write_text("<?php\nthrow new RuntimeException('loaded WordPress');\n")
    (root / "wp-config.php").write_text("<?php\n")
    (root / "wp-includes" / "version.php").write_text("<?php\n$wp_version = '6.6.2';\n")
    return root


@pytest.mark.spec("WPH-2")
def test_usage_errors_exit_2_with_json(php: str, tmp_path: Path) -> None:
    for args in [(), ("a", "b"), (str(tmp_path),)]:  # no root, two, not a WordPress root
        code, answer, _ = run_helper(php, *args, stdin='{"command": "core-version"}')
        assert code == 2, (args, answer)
        assert answer["ok"] is False and answer["error"] == "usage" and answer["message"]


@pytest.mark.spec("WPH-2")
@pytest.mark.parametrize(
    "stdin",
    [
        "",
        "not json",
        '{"command": "core-version"',
        "[1, 2]",
        '"core-version"',
        "{}",
        '{"command": "drop-database"}',
        '{"command": "core-version", "extra": 1}',
        '{"command": "option-get"}',
        '{"command": "option-get", "name": 5}',
        '{"command": "search-replace", "from": "", "to": "x"}',
        '{"command": "login-token", "ttl_seconds": "60"}',
        '{"command": "login-token", "ttl_seconds": 0}',
        '{"command": "user-password", "user_login": "admin"}',
        '{"command": "user-password", "user_login": "admin", "password": ""}',
        '{"command": "user-password", "user_login": "admin", "password": " pw"}',
        '{"command": "user-password", "password": "pw"}',
    ],
)
def test_bad_requests_are_refused_before_wordpress_loads(
    php: str, fake_root: Path, stdin: str
) -> None:
    code, answer, stderr = run_helper(php, str(fake_root), stdin=stdin)
    assert (code, answer["ok"], answer["error"]) == (1, False, "bad_request"), answer
    assert "loaded WordPress" not in answer["message"] + stderr


@pytest.mark.spec("WPH-2")
def test_the_password_is_never_echoed(php: str, fake_root: Path) -> None:
    secret = "pw-9f8e7d6c5b4a"
    request = {
        "command": "install",
        "url": "ftp://example.test",
        "title": "Blog",
        "admin_user": "admin",
        "admin_email": "admin@example.test",
        "admin_password": secret,
    }
    code, answer, stderr = run_helper(php, str(fake_root), stdin=json.dumps(request))
    assert (code, answer["error"]) == (1, "bad_request")
    assert secret not in json.dumps(answer) + stderr
    reset = {"command": "user-password", "user_login": "admin", "password": f" {secret}"}
    code, answer, stderr = run_helper(php, str(fake_root), stdin=json.dumps(reset))
    assert (code, answer["error"]) == (1, "bad_request")
    assert secret not in json.dumps(answer) + stderr


@pytest.mark.spec("WPH-2")
def test_core_version_reads_the_files_only(php: str, fake_root: Path) -> None:
    code, answer, _ = run_helper(php, str(fake_root), stdin='{"command": "core-version"}')
    assert (code, answer) == (0, {"ok": True, "version": "6.6.2"})


@pytest.mark.spec("WPH-2")
@pytest.mark.parametrize(
    ("wp_load", "message"),
    [
        ("echo '<h1>Error establishing a database connection</h1>'; exit;", "database connection"),
        ("pressluft_no_such_function();", "Call to undefined function"),
    ],
    ids=["exit", "fatal"],
)
def test_a_wordpress_that_dies_while_loading_still_answers_json(
    php: str, fake_root: Path, wp_load: str, message: str
) -> None:
    (fake_root / "wp-load.php").write_text(f"<?php\n{wp_load}\n")
    code, answer, _ = run_helper(php, str(fake_root), stdin='{"command": "db-check"}')
    assert (code, answer["ok"], answer["error"]) == (1, False, "wp_error"), answer
    assert message in answer["message"]
    assert "<h1>" not in answer["message"] and "Stack trace" not in answer["message"]


# A stand-in for WordPress's user API and $wpdb, enough for `login-token` and
# `user-password`: users from users.json next to it; what it writes is appended to
# writes.json (passwords set, the token store's updates).
FAKE_WORDPRESS = r"""<?php
final class WP_User
{
    public function __construct(public int $ID, public string $user_login, public array $roles)
    {
    }
}
function pressluft_fake_users(): array
{
    $users = [];
    foreach (json_decode((string) file_get_contents(__DIR__ . '/users.json'), true) as $u) {
        $users[] = new WP_User($u['ID'], $u['user_login'], $u['roles']);
    }
    return $users;
}
function pressluft_fake_write(array $write): void
{
    file_put_contents(__DIR__ . '/writes.json', json_encode($write) . "\n", FILE_APPEND);
}
function is_blog_installed(): bool { return true; }
function get_user_by(string $field, string $value): WP_User|false
{
    foreach (pressluft_fake_users() as $user) {
        if ($field === 'login' && $user->user_login === $value) {
            return $user;
        }
    }
    return false;
}
function get_users(array $args): array
{
    $found = array_values(array_filter(
        pressluft_fake_users(),
        static fn (WP_User $u): bool => in_array($args['role'], $u->roles, true)
    ));
    usort($found, static fn (WP_User $a, WP_User $b): int => $a->ID <=> $b->ID);
    return array_slice($found, 0, $args['number']);
}
function wp_set_password(string $password, int $id): void
{
    pressluft_fake_write(['password_of' => $id, 'password' => $password]);
}
function clean_user_cache(int $id): void {}
function wp_cache_delete(string $key, string $group): bool { return true; }
final class FakeWpdb
{
    public string $options = 'wp_options';
    public string $last_error = '';
    public function suppress_errors(bool $on): void {}
    public function prepare(string $sql, mixed ...$args): string { return json_encode([$sql, $args]); }
    public function get_var(string $query): string { return serialize([]); }
    public function query(string $query): int
    {
        $decoded = json_decode($query, true);
        if (is_array($decoded) && str_starts_with($decoded[0], 'UPDATE')) {
            pressluft_fake_write(['tokens' => unserialize($decoded[1][0])]);
        }
        return 1;
    }
}
$wpdb = new FakeWpdb();
"""

USERS = [
    {"ID": 1, "user_login": "owner", "roles": ["administrator"]},
    {"ID": 2, "user_login": "admin-1a2b", "roles": ["administrator"]},
    {"ID": 3, "user_login": "demoted", "roles": ["editor"]},
    {"ID": 4, "user_login": "second-admin", "roles": ["administrator"]},
]


@pytest.fixture
def fake_wordpress(fake_root: Path) -> Path:
    (fake_root / "wp-load.php").write_text(FAKE_WORDPRESS)
    (fake_root / "users.json").write_text(json.dumps(USERS))
    return fake_root


def _writes(root: Path) -> list[dict[str, Any]]:
    path = root / "writes.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _token_user(root: Path) -> int:
    [*_, last] = [w for w in _writes(root) if "tokens" in w]
    [entry] = last["tokens"].values()
    return int(entry["user_id"])


@pytest.mark.spec("WPH-3")
@pytest.mark.parametrize(
    ("asked", "used", "user_id", "fallback"),
    [
        ("admin-1a2b", "admin-1a2b", 2, None),
        ("second-admin", "second-admin", 4, None),
        ("gone-admin", "owner", 1, 'no user with the login "gone-admin"'),
        ("demoted", "owner", 1, 'the user "demoted" is not an administrator'),
        (None, "owner", 1, None),
    ],
    ids=["named", "another-named", "deleted", "demoted", "default"],
)
def test_a_login_goes_to_the_named_administrator_else_the_first(
    php: str, fake_wordpress: Path, asked: str | None, used: str, user_id: int, fallback: str | None
) -> None:
    request: dict[str, Any] = {"command": "login-token"}
    if asked is not None:
        request["user_login"] = asked
    code, answer, stderr = run_helper(php, str(fake_wordpress), stdin=json.dumps(request))
    assert (code, answer["ok"]) == (0, True), (answer, stderr)
    assert answer["user_login"] == used and answer.get("fallback") == fallback
    assert _token_user(fake_wordpress) == user_id  # the token logs in as that user


@pytest.mark.spec("WPH-3")
def test_a_site_without_administrators_has_no_login(php: str, fake_wordpress: Path) -> None:
    (fake_wordpress / "users.json").write_text(json.dumps([USERS[2]]))
    request = {"command": "login-token", "user_login": "demoted"}
    code, answer, _ = run_helper(php, str(fake_wordpress), stdin=json.dumps(request))
    assert (code, answer["error"]) == (1, "user_not_found"), answer
    assert "no administrator" in answer["message"] and "demoted" in answer["message"]
    assert _writes(fake_wordpress) == []


@pytest.mark.spec("WPH-3")
@pytest.mark.parametrize(
    ("login", "why"),
    [
        ("gone-admin", 'no user with the login "gone-admin"'),
        ("demoted", 'the user "demoted" is not an administrator'),
    ],
)
def test_a_password_for_a_deleted_or_demoted_administrator_is_skipped(
    php: str, fake_wordpress: Path, login: str, why: str
) -> None:
    request = {"command": "user-password", "user_login": login, "password": "pw-77aa"}
    code, answer, _ = run_helper(php, str(fake_wordpress), stdin=json.dumps(request))
    assert (code, answer) == (
        0,
        {"ok": True, "user_login": login, "changed": False, "skipped": why},
    )
    assert _writes(fake_wordpress) == []  # no one's password changed (not the owner's)
    request["user_login"] = "admin-1a2b"
    code, answer, _ = run_helper(php, str(fake_wordpress), stdin=json.dumps(request))
    assert (code, answer) == (0, {"ok": True, "user_login": "admin-1a2b", "changed": True})
    assert _writes(fake_wordpress) == [{"password_of": 2, "password": "pw-77aa"}]
