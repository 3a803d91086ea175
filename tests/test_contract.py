"""The contract: route set equality, response validation, registered error codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pressluft import errors
from pressluft.api.contract import app_operations, contract_operations
from pressluft.api.errors import STATUS_CODES
from pressluft.app import create_app
from pressluft.contexts.access.tokens import TokenCreateRequest, create_token_command
from pressluft.contexts.backups.recovery import export_kit_command
from pressluft.contexts.sites.creation import CreateSiteRequest, _check_site
from pressluft.contexts.sites.environments import CreateEnvironmentRequest, _check_environment
from pressluft.contexts.sites.events import EnvironmentProvisioned
from pressluft.contract_check import check_contract
from pressluft.events import Meta, append
from pressluft.names import is_printable_name
from pressluft.runtime import Runtime
from tests.support.contract import ContractValidator, ContractViolation
from tests.support.jobs import until_ended
from tests.support.nodes import record_node
from tests.support.s3 import S3Server
from tests.support.sshd import free_port
from tests.test_backups import completed_backup
from tests.test_domains import active_environment
from tests.test_releases import second_release


@pytest.mark.spec("API-1")
def test_the_apps_operations_equal_the_contracts(runtime: Runtime) -> None:
    declared = contract_operations()
    actual = app_operations(create_app(runtime))
    assert actual == declared
    assert check_contract() == []


@pytest.mark.spec("API-1")
def test_a_missing_operation_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from pressluft import contract_check

    document = contract_check.load_contract()
    trimmed = {
        **document,
        "paths": {k: v for k, v in document["paths"].items() if k != "/api/metrics"},
    }
    monkeypatch.setattr(contract_check, "load_contract", lambda: trimmed)
    problems = check_contract()
    assert problems == ["in the app, not in the contract: GET /api/metrics (getMetrics, 200)"]


@pytest.mark.spec("API-1")
@pytest.mark.parametrize(
    ("path", "removed", "problem"),
    [
        (
            "/api/sites/{site_id}/reset",
            ("422",),
            "POST /api/sites/{site_id}/reset takes Idempotency-Key but does not declare 422",
        ),
        (
            "/api/nodes/{node_id}/host-key/repin",
            ("413", "415"),
            "POST /api/nodes/{node_id}/host-key/repin takes a body but does not declare 413 or 415",
        ),
        (
            "/api/jobs/{job_id}/cancel",
            ("503",),
            "POST /api/jobs/{job_id}/cancel needs credentials but does not declare 503",
        ),
    ],
)
def test_an_operation_without_the_answers_it_owes_is_reported(
    monkeypatch: pytest.MonkeyPatch, path: str, removed: tuple[str, ...], problem: str
) -> None:
    from pressluft import contract_check

    document = contract_check.load_contract()
    post = document["paths"][path]["post"]
    responses = {k: v for k, v in post["responses"].items() if str(k) not in removed}
    trimmed = {
        **document,
        "paths": {**document["paths"], path: {"post": {**post, "responses": responses}}},
    }
    monkeypatch.setattr(contract_check, "load_contract", lambda: trimmed)
    assert check_contract() == [problem]


@pytest.mark.spec("API-2")
async def test_every_operation_answers_as_the_contract_says(
    client: httpx.AsyncClient,
    session: httpx.AsyncClient,
    contract: ContractValidator,
    s3_server: S3Server,
) -> None:
    # Every response is validated by the clients' hook; this test makes sure each
    # operation is exercised at least once, in one place.
    created = await client.post("/api/tokens", json={"name": "t", "scopes": ["read"]})
    assert created.status_code == 201
    token_id = created.json()["id"]
    calls = [
        (client, "GET", "/api/health", None),
        (client, "GET", "/api/metrics", None),
        (client, "GET", "/metrics", None),
        (client, "GET", "/api/openapi.yaml", None),
        (client, "GET", "/api/openapi.json", None),
        (client, "GET", "/api/docs", None),
        (client, "GET", "/api/settings", None),
        (client, "PATCH", "/api/settings", {"control_plane_domain": "c.example.com"}),
        (client, "GET", "/api/events", None),
        (client, "GET", "/api/me", None),
        (client, "GET", "/api/tokens", None),
        (client, "GET", "/api/tokens/current", None),
        (client, "DELETE", f"/api/tokens/{token_id}", None),
        (client, "GET", "/api/audit", None),
        (session, "POST", "/api/logout", None),
    ]
    for http, method, path, body in calls:
        response = await http.request(method, path, json=body)
        assert response.status_code == 200, (method, path, response.text)
    runtime = client.app_runtime  # type: ignore[attr-defined]
    failing = await client.post(
        "/api/diagnostics/jobs", json={"job_type": "sleep", "outcome": "fail_fatal"}
    )
    assert failing.status_code == 202
    job_id = failing.json()["job_id"]
    await until_ended(runtime, job_id)
    for path in ("/api/jobs", f"/api/jobs/{job_id}", f"/api/jobs/{job_id}/log"):
        assert (await client.get(path)).status_code == 200
    assert (await client.get(f"/api/jobs/{job_id}/log/stream")).status_code == 200
    runtime.workers.slots = 0  # the retry stays queued, so it can be cancelled
    retried = await client.post(f"/api/jobs/{job_id}/retry")
    assert retried.status_code == 202
    cancelled = await client.post(f"/api/jobs/{retried.json()['job_id']}/cancel")
    assert cancelled.status_code == 200
    # Nodes (the jobs stay queued: slots = 0; the port is closed and on loopback).
    node = await client.post(
        "/api/nodes",
        json={"provider": "ssh", "name": "n1", "host": "127.0.0.1", "ssh_port": free_port()},
    )
    assert node.status_code == 202, node.text
    node_id = node.json()["node_id"]
    for path in ("/api/nodes", f"/api/nodes/{node_id}"):
        assert (await client.get(path)).status_code == 200
    for path in (f"/api/nodes/{node_id}/check", f"/api/nodes/{node_id}/host-key/repin"):
        assert (await client.post(path)).status_code == 202
    gone = await client.delete(f"/api/nodes/{node_id}", params={"confirm": "n1"})
    assert gone.status_code == 202
    # Sites (on a node recorded as provisioned; the site_create job stays queued).
    ready_node = await record_node(runtime)
    site = await client.post("/api/sites", json={"name": "S", "slug": "s", "node_id": ready_node})
    assert site.status_code == 202, site.text
    site_id, env_id = site.json()["site_id"], site.json()["environment_id"]
    for path in (
        "/api/sites",
        f"/api/sites/{site_id}",
        f"/api/sites/{site_id}/environments",
        f"/api/environments/{env_id}",
    ):
        assert (await client.get(path)).status_code == 200
    # Environments, deletion and reset: each job stays queued and is cancelled; the
    # production environment is recorded active as its job would record it.
    provisioned = EnvironmentProvisioned(
        environment_id=env_id,
        job_id=site.json()["job_id"],
        release_id=str(uuid.uuid4()),
        release_path="/var/www/sites/s/e/releases/1",
        source_type="wordpress",
        source_ref="/usr/share/wordpress",
    )
    await runtime.db.write(
        lambda tx: append(tx, f"environment:{env_id}", None, [provisioned], Meta(actor="test"))
    )

    async def cancel(reply: httpx.Response) -> None:
        assert reply.status_code == 202, reply.text
        assert (await client.post(f"/api/jobs/{reply.json()['job_id']}/cancel")).is_success

    await cancel(site)
    await cancel(await client.delete(f"/api/sites/{site_id}", params={"confirm": "s"}))
    assert (await client.post(f"/api/environments/{env_id}/reset")).status_code == 200
    await cancel(await client.delete(f"/api/sites/{site_id}", params={"confirm": "s"}))
    assert (await client.post(f"/api/sites/{site_id}/reset")).status_code == 200
    # Cache controls: each job stays queued and is cancelled.
    await cancel(
        await client.patch(f"/api/environments/{env_id}/cache", json={"redis_cache_enabled": False})
    )
    await cancel(await client.post(f"/api/environments/{env_id}/cache/purge", json={}))
    # Domains: the job stays queued; cancelled, the domain is failed and can be removed.
    added = await client.post(f"/api/environments/{env_id}/domains", json={"hostname": "s.example"})
    await cancel(added)
    domain_id = added.json()["domain_ids"][0]
    for path in (
        f"/api/environments/{env_id}/domains",
        f"/api/domains/{domain_id}",
        "/api/certificates",
    ):
        assert (await client.get(path)).status_code == 200
    await cancel(await client.delete(f"/api/domains/{domain_id}", params={"confirm": "s.example"}))
    # A node's preview wildcard: the job stays queued and is cancelled.
    previews = {
        "preview_domain": "p.example.com",
        "dns01_provider": "cloudflare",
        "dns01_credentials": {"api_token": "t"},
    }
    assert (await client.patch("/api/settings", json=previews)).status_code == 200
    await cancel(await client.post(f"/api/nodes/{ready_node}/preview-certificate"))
    staging = await client.post(
        f"/api/sites/{site_id}/environments",
        json={"name": "St", "slug": "st", "type": "staging", "source_environment_id": env_id},
    )
    await cancel(staging)
    staging_id = staging.json()["environment_id"]
    gone = await client.delete(f"/api/environments/{staging_id}", params={"confirm": "st"})
    assert gone.status_code == 202, gone.text
    # Backups: a real S3 server (the target's probe); the backup job stays queued
    # and is cancelled; a restore of a backup recorded completed is queued, cancelled.
    bucket = s3_server.create_bucket("contract-backups")
    target = {
        "endpoint": s3_server.endpoint,
        "region": s3_server.region,
        "bucket": bucket,
        "access_key_id": s3_server.access_key_id,
        "secret_access_key": s3_server.secret_access_key,
    }
    assert (await client.put("/api/backup-target", json=target)).status_code == 200
    assert (await client.get("/api/backup-target")).status_code == 200
    env_id2 = await active_environment(runtime, ready_node)
    # A site's own target (the same bucket under another prefix), then the default again.
    site_target = f"/api/sites/{site_id}/backup-target"
    assert (await client.put(site_target, json={**target, "prefix": "own"})).status_code == 200
    assert (await client.get(site_target)).status_code == 200
    assert (await client.delete(site_target)).status_code == 204
    backup = await client.post(f"/api/environments/{env_id2}/backups", json={"scope": "db"})
    await cancel(backup)
    assert (await client.get(f"/api/backups/{backup.json()['backup_id']}")).status_code == 200
    assert (await client.get(f"/api/environments/{env_id2}/backups")).status_code == 200
    done = await completed_backup(runtime, env_id2)
    await cancel(await client.post(f"/api/backups/{done}/verify"))
    schedule = f"/api/environments/{env_id2}/backup-schedule"
    assert (await client.put(schedule, json={"every_hours": 12})).status_code == 200
    assert (await client.get(schedule)).status_code == 200
    await cancel(
        await client.post(
            f"/api/environments/{env_id2}/restore",
            params={"confirm": "production"},
            json={"backup_id": done},
        )
    )
    # Releases: a second release recorded as a restore records it; activating the
    # first is queued, cancelled.
    env_id3 = await active_environment(runtime, ready_node)
    first = (await client.get(f"/api/environments/{env_id3}")).json()["current_release_id"]
    await second_release(runtime, env_id3)
    assert (await client.get(f"/api/environments/{env_id3}/releases")).status_code == 200
    await cancel(await client.post(f"/api/environments/{env_id3}/releases/{first}/activate"))
    # The control plane's own copy: needs the recovery kit (exported as the CLI does).
    assert (await client.get("/api/control-plane/backups")).status_code == 200
    await runtime.db.write(export_kit_command(runtime.vault, Meta(actor="test")))
    await cancel(await client.post("/api/control-plane/backups"))
    assert (await client.delete("/api/backup-target")).status_code == 204
    exercised = {(m, p) for m, p, s in contract.seen if 200 <= s < 300}
    missing = (
        {(m, p) for m, p, _, _ in contract_operations()}
        - exercised
        - {("GET", "/api/events/stream")}  # never ends: tests/test_daemon.py streams it
        # Needs a real node: tests/test_nodes.py (NOD-18) answers it from a real sshd
        # through a client that validates against the contract the same way.
        - {("GET", "/api/nodes/{node_id}/facts")}
        # Needs a ready node too: tests/test_node_image.py (NOD-21) provisions one.
        - {("POST", "/api/nodes/{node_id}/provision")}
        # Need a lab node on a Docker engine: tests/test_node_image.py (NOD-24).
        - {("POST", "/api/nodes/{node_id}/start"), ("POST", "/api/nodes/{node_id}/stop")}
        # Needs WordPress on a real node: tests/test_site_node.py (SIT-7).
        - {("POST", "/api/environments/{environment_id}/magic-login")}
        # Need a served (active) domain, an issued certificate: tests/test_domains_node.py.
        - {("POST", "/api/domains/{domain_id}/primary")}
        - {("POST", "/api/certificates/{certificate_id}/renew")}
        # Needs a backup really stored: tests/test_backups.py (BAK-67) downloads one.
        - {("GET", "/api/backups/{backup_id}/download")}
    )
    assert not missing, f"operations never answered successfully: {sorted(missing)}"


@pytest.mark.spec("API-2")
@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b'{"control_plane_domain": null}', "required property"),
        (418, b'{"code": "teapot", "message": "x"}', "does not declare"),
        (409, b'{"code": "conflict", "message": "x", "trace": "y"}', "Additional properties"),
        (
            500,
            b'{"code": "internal_error", "message": "Traceback (most recent call last)"}',
            "leaks",
        ),
    ],
)
def test_the_validator_catches_violations(status: int, body: bytes, message: str) -> None:
    validator = ContractValidator()
    with pytest.raises(ContractViolation, match=message):
        validator.check(
            "GET" if status != 409 else "PATCH", "/api/settings", status, "application/json", body
        )


def _codes_in_code() -> set[str]:
    found: set[str] = set(STATUS_CODES.values())
    stack: list[type[errors.PressluftError]] = [errors.PressluftError]
    while stack:
        cls = stack.pop()
        found.add(cls.code)
        stack.extend(cls.__subclasses__())
    source = Path(errors.__file__).parent
    for path in source.rglob("*.py"):
        found.update(re.findall(r'envelope\(\s*"([a-z_]+)"', path.read_text()))
    return found


@pytest.mark.spec("API-7")
def test_every_error_code_is_registered(repo_root: Path) -> None:
    registry = (repo_root / "specs" / "error-codes.md").read_text()
    registered = set(re.findall(r"`([a-z][a-z0-9_]+)`", registry))
    unregistered = _codes_in_code() - registered
    assert not unregistered, f"register these in specs/error-codes.md: {sorted(unregistered)}"
    contract = (repo_root / "openapi" / "pressluft.yaml").read_text()
    for code in re.findall(r"code: ([a-z_]+)", contract):
        assert code in registered


# -- rules the server enforces are declared ------------------------------------------

_NAME_REF = "/components/schemas/PrintableName"
_CONTRACT = ContractValidator()
_REFUSED_NAMES = [
    "",
    " Acme",
    "Acme ",
    "--",
    "a\x00b",
    "line\nbreak",
    "abc\u202egpj.exe",  # right-to-left override: shows as "abcexe.jpg"
    "zero\u200bwidth",
    "no\u00a0break",
    "soft\u00adhyphen",
    "en\u2002space",
    "narrow\u202fno-break",
    "math\u205fspace",
    "!!!",
    "___",  # `_` is punctuation, not a letter or digit
    "x" * 101,
]


def _refused_fields(check: Any, request: Any) -> set[str]:
    try:
        check(request)
    except errors.BadRequest as exc:
        return {e["field"] for e in (exc.details or {}).get("errors", [])}
    return set()


def _site(value: str, email: str | None = None) -> set[str]:
    request = CreateSiteRequest(
        name=value, slug="acme", node_id=str(uuid.uuid4()), title=value, admin_email=email
    )
    return _refused_fields(_check_site, request)


def _token(value: str) -> set[str]:
    request = TokenCreateRequest(name=value, scopes=["read"])
    return _refused_fields(lambda r: create_token_command(r, ["admin"], Meta(actor="t")), request)


def _environment(value: str) -> set[str]:
    request = CreateEnvironmentRequest(
        name=value, slug="staging", type="staging", source_environment_id=str(uuid.uuid4())
    )
    return _refused_fields(_check_environment, request)


def _declared(contract: ContractValidator, value: object, ref: str) -> bool:
    try:
        contract.validate_schema(value, ref)
    except ContractViolation:
        return False
    return True


@pytest.mark.spec("API-11")
@pytest.mark.parametrize("value", _REFUSED_NAMES)
def test_the_contract_declares_the_name_rule_the_server_enforces(
    contract: ContractValidator, value: str
) -> None:
    assert {"name", "title"} <= _site(value)
    assert "name" in _environment(value)
    assert "name" in _token(value)
    assert not _declared(contract, value, _NAME_REF)
    token = {"name": value, "scopes": ["read"]}
    assert not _declared(contract, token, "/components/schemas/TokenCreate")
    for schema, field in (
        ("CreateSiteRequest", "name"),
        ("CreateSiteRequest", "title"),
        ("CreateEnvironmentRequest", "name"),
        ("TokenCreate", "name"),
    ):
        declared = contract.document["components"]["schemas"][schema]["properties"][field]
        assert declared["$ref"] == "#" + _NAME_REF


@pytest.mark.spec("API-11")
@given(st.text(max_size=12))
@settings(max_examples=500, deadline=None)
def test_the_declared_name_rule_is_no_stricter_than_the_servers(value: str) -> None:
    # Else the fuzzer's negative cases would be values the server rightly accepts.
    if not _site(value) & {"name", "title"}:
        assert _declared(_CONTRACT, value, _NAME_REF), repr(value)
        assert not _token(value)  # one rule for every name


# JSON Schema patterns are ECMA-262 regular expressions; the contract validator and
# schemathesis read them with Python's `re`. Where the two differ (`\w`, `\d` and
# `\b` are ASCII-only in ECMA-262 but Unicode in Python; `\s` differs in U+001C-
# U+001F, U+0085 and U+FEFF), a client generated for JS, Go or Java would refuse
# names the server accepts.
_ECMA_JUDGE = r"""
const {pattern, samples} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const verdicts = {};
for (const flags of ["u", ""]) {
  const re = new RegExp(pattern, flags);
  verdicts[flags || "none"] = samples.map((s) => re.test(s));
}
process.stdout.write(JSON.stringify(verdicts));
"""


def _name_samples() -> list[str]:
    """Each code point of the planes with assigned characters (and the tags plane)
    alone and between others, and names in several scripts. None ends in a line
    feed: Python's `$` also matches before one (ECMA-262's does not; the server
    refuses it either way)."""
    planes = (*range(0x40000), *range(0xE0000, 0xE1000), 0xF0000, 0x10FFFD)
    chars = [chr(c) for c in planes if not 0xD800 <= c <= 0xDFFF]
    return [
        *chars,
        *(f"a{c}b" for c in chars),
        *(f"-{c}-" for c in chars),
        *("Пример", "日本サイト", "مثال", "Zoë's CI token (2026)", "ª", "x²", "½ price"),
        *("\U0001d49c\U0001d4b7", "\U0001f600 party", "a\u2060b", "\u2192\u2192", "___"),
    ]


@pytest.mark.spec("API-11")
def test_the_declared_name_rule_means_the_same_in_ecma_262_and_is_no_stricter(
    contract: ContractValidator,
) -> None:
    pattern = contract.document["components"]["schemas"]["PrintableName"]["pattern"]
    assert not re.search(r"\\[wWdDbBsSp]", pattern), "a shorthand that differs by dialect"
    node = shutil.which("node")
    assert node, "Node.js is required to judge the contract's patterns as ECMA-262 does"
    samples = _name_samples()
    judged = subprocess.run(
        [node, "-e", _ECMA_JUDGE],
        input=json.dumps({"pattern": pattern, "samples": samples}),
        capture_output=True,
        text=True,
        check=True,
    )
    verdicts = json.loads(judged.stdout)
    python = re.compile(pattern)
    for i, sample in enumerate(samples):
        ecma = verdicts["u"][i]
        assert verdicts["none"][i] == ecma, f"the u flag changes the verdict on {sample!r}"
        assert (python.search(sample) is not None) == ecma, f"re and ECMA-262 differ on {sample!r}"
        if is_printable_name(sample):
            assert ecma, f"ECMA-262 refuses {sample!r}, which the server accepts"


@pytest.mark.spec("API-11")
@pytest.mark.parametrize(
    ("email", "ok"),
    [
        ("ops@example.com", True),
        ("o'neil+wp@mail.example.co.uk", True),
        ("ops@localhost", False),
        ("ops@example.123", False),
        ("ops example@example.com", False),
        ("@example.com", False),
        ("x" * 65 + "@example.com", False),
        ("ops@" + "a" * 250 + ".com", False),
    ],
)
def test_the_contract_declares_the_admin_email_rule(
    contract: ContractValidator, email: str, ok: bool
) -> None:
    assert ("admin_email" not in _site("Acme", email)) is ok
    site = contract.document["components"]["schemas"]["CreateSiteRequest"]
    body = {"name": "Acme", "slug": "acme", "node_id": str(uuid.uuid4()), "admin_email": email}
    assert _declared(contract, body, "/components/schemas/CreateSiteRequest") is ok, site


@pytest.mark.spec("API-11")
@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/sites/{site_id}", "delete"),
        ("/api/environments/{environment_id}", "delete"),
        ("/api/nodes/{node_id}", "delete"),
    ],
)
def test_the_contract_requires_confirm_on_deletes(
    contract: ContractValidator, path: str, method: str
) -> None:
    params = contract.document["paths"][path][method]["parameters"]
    confirm = next(p for p in params if p.get("name") == "confirm")
    assert confirm.get("required") is True
