"""schemathesis against a live `pressluft dev`: no server errors, no contract violations."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.daemon import Daemon

pytestmark = pytest.mark.contract

MAX_EXAMPLES = os.environ.get("PRESSLUFT_FUZZ_EXAMPLES", "100")

# The SSE streams have their own tests (test_daemon.py, test_jobs_api.py): a running
# job's log stream sends keep-alives until the job ends, so a fuzzed request on a long
# `sleep` job from its stateful links would hang the run (seen once). A registered
# node's check job connects to the node's host: random hosts would send traffic off
# this machine (tests/test_nodes.py covers registration against real sshd nodes on
# loopback). revokeToken is fuzzed, but never on the run's own token
# (tests/support/fuzz_hooks.py). Setting a backup target (the default, or a site's own:
# the fuzzer learns site ids from its links) probes the endpoint it names (an object
# written, read, deleted): random endpoints would too (tests/test_backups.py and
# tests/test_access_daemon.py set it against a real S3 server on loopback).
EXCLUDED = (
    "streamEvents",
    "streamJobLog",
    "registerNode",
    "configureBackupTarget",
    "configureSiteBackupTarget",
)
# Operations that answer a bearer token 401 whatever it sends: logout ends a
# dashboard session and takes no token.
SESSION_ONLY = ("logout",)


def _answers_by_operation(metrics: str, contract: Path) -> dict[str, Counter[str]]:
    """The daemon's own count of answers (`pressluft_http_requests_total`) by
    operation id and status."""
    document = yaml.safe_load(contract.read_bytes())
    ids = {
        (method.upper(), path): op["operationId"]
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    answers: dict[str, Counter[str]] = {}
    sample = re.compile(
        r'^pressluft_http_requests_total\{method="([A-Z]+)",route="([^"]*)",status="(\d+)"\} '
        r"([0-9.e+]+)$",
        re.MULTILINE,
    )
    for method, route, status, value in sample.findall(metrics):
        template = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route)
        operation = ids.get((method, template))
        if operation is not None:
            answers.setdefault(operation, Counter())[status] += int(float(value))
    return answers


@pytest.mark.spec("API-5", "SEC-2")
def test_schemathesis_finds_nothing(tmp_path: Path, repo_root: Path) -> None:
    cli = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    assert Path(cli).exists(), "schemathesis is a dev dependency; run make test"
    artifacts = Path(os.environ.get("PRESSLUFT_ARTIFACTS", tmp_path)) / "schemathesis"
    artifacts.mkdir(parents=True, exist_ok=True)
    with Daemon(tmp_path, args=("--log-level", "warning")) as daemon:
        token = daemon.token(("admin",))
        auth = {"Authorization": f"Bearer {token}"}
        own = httpx.get(daemon.url + "/api/tokens/current", headers=auth, timeout=30)
        assert own.status_code == 200, own.text
        excluded = [arg for op in EXCLUDED for arg in ("--exclude-operation-id", op)]
        result = subprocess.run(
            [
                cli,
                "run",
                str(repo_root / "openapi" / "pressluft.yaml"),
                "--url",
                daemon.url,
                # Authenticated as an admin API token (every operation accepts one,
                # except logout, which is for dashboard sessions and answers 401).
                "--header",
                f"Authorization: Bearer {token}",
                *excluded,
                # Schema-valid requests may break state-dependent rules (422, documented).
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                MAX_EXAMPLES,
                "--request-timeout",
                "10",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(artifacts),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            cwd=tmp_path,
            env={
                **os.environ,
                "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p
                ),
                "PRESSLUFT_FUZZ_OWN_TOKEN_ID": own.json()["id"],
            },
        )
        # The run stayed authenticated: its token is alive at the end, and every
        # operation it fuzzed got answers other than 401 (a run whose token was
        # revoked half-way would otherwise pass on 401s alone).
        alive = httpx.get(daemon.url + "/api/tokens/current", headers=auth, timeout=30)
        metrics = httpx.get(daemon.url + "/metrics", headers=auth, timeout=30)
        daemon_log = daemon.output()
    summary = result.stdout[-4000:]
    assert result.returncode == 0, f"{summary}\n--- daemon log ---\n{daemon_log[-3000:]}"
    assert "generated" in result.stdout
    assert " 500 " not in daemon_log and "Traceback" not in daemon_log, daemon_log[-3000:]
    assert alive.status_code == 200, f"the fuzzer's token did not survive: {alive.text}"
    assert metrics.status_code == 200, metrics.text
    answers = _answers_by_operation(metrics.text, repo_root / "openapi" / "pressluft.yaml")
    fuzzed = {op for op in _operation_ids(repo_root) if op not in EXCLUDED}
    unanswered = sorted(
        op
        for op in fuzzed - set(SESSION_ONLY)
        if sum(n for status, n in answers.get(op, Counter()).items() if status != "401") == 0
    )
    assert not unanswered, {op: dict(answers.get(op, Counter())) for op in unanswered}
    revoked = answers.get("revokeToken", Counter())
    assert sum(revoked.values()) > 0, "revokeToken was not fuzzed"


def _operation_ids(repo_root: Path) -> list[str]:
    document = yaml.safe_load((repo_root / "openapi" / "pressluft.yaml").read_bytes())
    return [
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    ]
