"""A client generated from the contract by a maintained generator works.

`openapi-python-client` (a dev dependency; it needs the network only to be
installed) generates a Python client from `openapi/pressluft.yaml` into a
temporary directory; the generation must print no warning, the package must
import with warnings as errors, and the README's flow must work through it
against a real `pressluft serve`: login, a token, settings, a diagnostic job,
its log (paged, tail and the live stream), cancel, the audit log and the
contract as JSON. Every defect here is one a user of such a client would hit
first: defaults the server refuses, a JSON schema on an event stream, a field
whose type is spread over three classes.
"""

from __future__ import annotations

import enum
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.daemon import Daemon

pytestmark = pytest.mark.daemon

PACKAGE = "pressluft_client"

# The generator has no notion of YAML: it is told to read it as text (its own
# option for media types it does not know), which is what the contract says it is.
GENERATOR_CONFIG = "content_type_overrides:\n  application/yaml: text/plain\n"


def _generate(workdir: Path, contract: Path) -> Path:
    bin_dir = Path(sys.executable).parent
    cli = bin_dir / "openapi-python-client"
    assert cli.exists(), "openapi-python-client is a dev dependency; run make venv"
    config = workdir / "generator.yaml"
    config.write_text(GENERATOR_CONFIG)
    out = workdir / PACKAGE
    # The venv's bin first: the generator formats its output with ruff from PATH.
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [cli, "generate", "--path", contract, "--output-path", out, "--meta", "none"]
    result = subprocess.run(
        [*argv, "--config", config],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=workdir,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output
    assert "error" not in output.lower(), output
    return out


def _import_strictly(workdir: Path) -> None:
    """Every generated module imports with warnings turned into errors."""
    script = (
        "import importlib, pkgutil, sys\n"
        f"import {PACKAGE} as root\n"
        "for info in pkgutil.walk_packages(root.__path__, root.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def generated(tmp_path: Path, repo_root: Path) -> Iterator[Any]:
    workdir = tmp_path / "client"
    workdir.mkdir()
    _generate(workdir, repo_root / "openapi" / "pressluft.yaml")
    _import_strictly(workdir)
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(workdir))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _enum_classes_per_field(package: Any) -> dict[str, list[str]]:
    """Generated enum classes by the field they were made for (`XType1`,
    `XType2Type1` … are one field's)."""
    models = importlib.import_module(f"{package.__name__}.models")
    stems: dict[str, list[str]] = {}
    for info in pkgutil.iter_modules(models.__path__, models.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, enum.Enum)
                and value.__module__ == module.__name__
            ):
                stems.setdefault(re.sub(r"(Type\d+)+$", "", name), []).append(name)
    return stems


@pytest.mark.spec("API-10")
def test_a_generated_client_runs_the_readme_flow(
    generated: Any, tmp_path: Path, repo_root: Path
) -> None:
    pkg = generated
    # One class per enum-typed field, nullable or not.
    spread = {k: v for k, v in _enum_classes_per_field(pkg).items() if len(v) > 1}
    assert not spread, spread

    def api(module: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.api.{module}")

    models = importlib.import_module(f"{PACKAGE}.models")

    with Daemon(tmp_path / "daemon", "serve", args=("--log-level", "warning")) as daemon:
        email, password = daemon.admin_credentials()
        # Login (a session cookie), then a token with the session: the browser's way,
        # with the Origin header a cookie-authenticated mutation needs.
        with pkg.Client(
            base_url=daemon.url,
            headers={"Origin": daemon.url},
            timeout=60,
            raise_on_unexpected_status=True,
        ) as anon:
            me = api("access.login").sync(
                client=anon, body=models.LoginRequest(email=email, password=password)
            )
            assert isinstance(me, models.LoginResponse), me
            created = api("access.create_token").sync(
                client=anon,
                body=models.TokenCreate(name="generated client", scopes=[models.Scope.ADMIN]),
            )
            assert isinstance(created, models.TokenCreated), created

        with pkg.AuthenticatedClient(
            base_url=daemon.url, token=created.token, timeout=60, raise_on_unexpected_status=True
        ) as client:
            current = api("access.get_current_token").sync(client=client)
            assert isinstance(current, models.Token), current
            assert current.name == "generated client"

            # Settings: read (a nullable enum reads as None), change, read back.
            settings = api("settings.get_settings").sync(client=client)
            assert isinstance(settings, models.Settings), settings
            assert settings.dns01_provider is None
            changed = api("settings.update_settings").sync(
                client=client,
                body=models.SettingsPatch(
                    control_plane_domain="pressluft.example.com",
                    dns01_provider=models.Dns01Provider.CLOUDFLARE,
                ),
                idempotency_key="generated-settings-1",
            )
            assert isinstance(changed, models.Settings), changed
            assert changed.control_plane_domain == "pressluft.example.com"
            assert changed.dns01_provider == models.Dns01Provider.CLOUDFLARE

            # A diagnostic job: only what the request sets is sent.
            accepted = api("jobs.create_diagnostic_job").sync(
                client=client,
                body=models.DiagnosticJobRequest(job_type=models.DiagnosticJobRequestJobType.NOOP),
                idempotency_key="generated-noop-1",
            )
            assert isinstance(accepted, models.JobAccepted), accepted
            # The live stream ends with the job: the generated call returns its text.
            stream = api("jobs.stream_job_log").sync(client=client, job_id=accepted.job_id)
            assert isinstance(stream, str), stream
            assert "event: end" in stream, stream
            job = api("jobs.get_job").sync(client=client, job_id=accepted.job_id)
            assert isinstance(job, models.Job), job
            assert job.status == models.JobStatus.SUCCEEDED, job
            assert job.attempts[0].outcome == models.JobAttemptOutcome.SUCCEEDED, job

            # Its log, paged and as the last lines.
            page = api("jobs.get_job_log").sync(client=client, job_id=accepted.job_id)
            assert isinstance(page, models.JobLogPage), page
            assert page.lines, page
            tail = api("jobs.get_job_log").sync(client=client, job_id=accepted.job_id, tail=1)
            assert isinstance(tail, models.JobLogPage), tail
            assert [line.seq for line in tail.lines] == [page.lines[-1].seq]

            # A long job, cancelled.
            sleeping = api("jobs.create_diagnostic_job").sync(
                client=client,
                body=models.DiagnosticJobRequest(
                    job_type=models.DiagnosticJobRequestJobType.SLEEP, seconds=3600, lines=1
                ),
                idempotency_key="generated-sleep-1",
            )
            assert isinstance(sleeping, models.JobAccepted), sleeping
            cancelled = api("jobs.cancel_job").sync(client=client, job_id=sleeping.job_id)
            assert isinstance(cancelled, models.JobCancelResult), cancelled
            api("jobs.stream_job_log").sync(client=client, job_id=sleeping.job_id)  # to its end
            job = api("jobs.get_job").sync(client=client, job_id=sleeping.job_id)
            assert isinstance(job, models.Job), job
            assert job.status == models.JobStatus.CANCELLED, job

            # The audit log has all of it.
            audit = api("access.list_audit").sync(client=client, limit=100)
            assert isinstance(audit, models.AuditPage), audit
            actions = {entry.action for entry in audit.items}
            assert {"token.created", "settings.changed", "job.cancel_requested"} <= actions

            # The contract itself, as JSON: the same document as the YAML.
            document = api("operations.get_open_api_document_json").sync(client=client)
            assert document is not None
            assert document.to_dict() == yaml.safe_load(
                (repo_root / "openapi" / "pressluft.yaml").read_bytes()
            )
        log = daemon.output()
    assert "Traceback" not in log, log[-3000:]
