"""`pressluft doctor` and the health check know Pressluft's playbooks: the package's
`ansible/` directory with its manifest, every playbook the workers run in it, and a
clear failure for a missing or foreign directory (ansible-core's own package is
what an installed wheel once resolved instead)."""

from __future__ import annotations

import shutil
from pathlib import Path

import ansible
import httpx
import pytest
from click.testing import CliRunner

from pressluft.cli import main
from pressluft.contexts.domains.preview_worker import PREVIEW_PLAYBOOK
from pressluft.contexts.domains.workers import DOMAIN_ADD_PLAYBOOK, DOMAIN_REMOVE_PLAYBOOK
from pressluft.contexts.nodes.workers import PROVISION_PLAYBOOK
from pressluft.contexts.operations.doctor import DoctorResult, run_checks
from pressluft.contexts.sites.cache_workers import TOGGLE_PLAYBOOK
from pressluft.contexts.sites.workers import (
    ENV_CREATE_PLAYBOOK,
    SITE_CREATE_PLAYBOOK,
    SITE_DELETE_PLAYBOOK,
)
from pressluft.runners.ansible import ANSIBLE_DIR
from pressluft.runners.playbooks import MANIFEST, PlaybooksCheck, read_manifest

WORKERS_PLAYBOOKS = {
    PROVISION_PLAYBOOK,
    SITE_CREATE_PLAYBOOK,
    ENV_CREATE_PLAYBOOK,
    SITE_DELETE_PLAYBOOK,
    DOMAIN_ADD_PLAYBOOK,
    DOMAIN_REMOVE_PLAYBOOK,
    TOGGLE_PLAYBOOK,
    PREVIEW_PLAYBOOK,
}
HINT = "pip install --force-reinstall pressluft"


def _playbooks(data_dir: Path, ansible_dir: Path | None = None) -> DoctorResult:
    (result,) = [r for r in run_checks(data_dir, ansible_dir=ansible_dir) if r.name == "playbooks"]
    return result


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the package's ansible/ directory, to break."""
    target = tmp_path / "ansible"
    shutil.copytree(ANSIBLE_DIR, target)
    return target


@pytest.mark.spec("PKG-2")
def test_the_manifest_names_every_playbook_the_workers_run() -> None:
    assert set(read_manifest(ANSIBLE_DIR) or ()) == WORKERS_PLAYBOOKS
    on_disk = {p.name for p in (ANSIBLE_DIR / "playbooks").glob("*.yml")}
    assert on_disk == WORKERS_PLAYBOOKS  # nothing shipped that no job runs


@pytest.mark.spec("PKG-2")
def test_doctor_finds_the_packages_playbooks(data_dir: Path) -> None:
    result = _playbooks(data_dir)
    assert result.status == "ok", result
    assert str(ANSIBLE_DIR) in result.detail
    for name in WORKERS_PLAYBOOKS:
        assert name in result.detail


@pytest.mark.spec("PKG-2")
def test_doctor_fails_when_the_playbooks_are_missing(data_dir: Path, tmp_path: Path) -> None:
    where = tmp_path / "gone"
    result = _playbooks(data_dir, where)
    assert result.status == "fail"
    assert "the directory is missing" in result.detail
    assert f"looked in {where}" in result.detail and HINT in result.detail


@pytest.mark.spec("PKG-2")
def test_doctor_fails_on_ansible_cores_own_package(data_dir: Path) -> None:
    where = Path(ansible.__file__).parent  # what `site-packages/ansible` resolved to
    result = _playbooks(data_dir, where)
    assert result.status == "fail"
    assert "ansible-core's Python package, not Pressluft's playbooks" in result.detail
    assert f"looked in {where}" in result.detail and HINT in result.detail


@pytest.mark.spec("PKG-2")
def test_doctor_fails_on_playbooks_without_the_manifest(data_dir: Path, copy: Path) -> None:
    (copy / MANIFEST).unlink()
    result = _playbooks(data_dir, copy)
    assert result.status == "fail"
    assert f"without Pressluft's manifest ({MANIFEST})" in result.detail, result.detail
    assert f"looked in {copy}" in result.detail
    # A manifest of something else (not our header) is no manifest either.
    (copy / MANIFEST).write_text("my-playbooks 1\nsite-create.yml\n")
    assert "without Pressluft's manifest" in _playbooks(data_dir, copy).detail


@pytest.mark.spec("PKG-2")
def test_doctor_fails_when_a_listed_playbook_or_its_role_is_missing(
    data_dir: Path, copy: Path
) -> None:
    shutil.rmtree(copy / "roles" / "site_environment")
    result = _playbooks(data_dir, copy)
    assert result.status == "fail"
    assert "uses missing roles: site_environment" in result.detail, result.detail
    (copy / "playbooks" / SITE_CREATE_PLAYBOOK).unlink()
    (copy / "ansible.cfg").unlink()
    result = _playbooks(data_dir, copy)
    assert f"missing: ansible.cfg, {SITE_CREATE_PLAYBOOK}" in result.detail, result.detail
    assert f"looked in {copy}" in result.detail and HINT in result.detail


@pytest.mark.spec("PKG-2")
def test_the_doctor_command_exits_1_on_foreign_playbooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(
        "pressluft.contexts.operations.doctor.ANSIBLE_DIR", Path(ansible.__file__).parent
    )
    ran = CliRunner().invoke(main, ["doctor", "--data-dir", str(tmp_path / "data")])
    line = next(x for x in ran.output.splitlines() if " playbooks " in x)
    assert line.startswith("FAIL") and "ansible-core's Python package" in line, ran.output
    assert ran.exit_code == 1


@pytest.mark.spec("PKG-2", "DMN-10")
async def test_health_fails_without_pressluft_playbooks_and_keeps_the_path_private(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ok = (await client.get("/api/health")).json()["checks"]["playbooks"]
    assert ok == {"status": "ok", "required": True, "detail": f"{len(WORKERS_PLAYBOOKS)} playbooks"}
    gone = PlaybooksCheck(tmp_path / "gone", problem="the directory is missing", hint="x")
    monkeypatch.setattr("pressluft.contexts.operations.health.probe_playbooks", lambda **_: gone)
    response = await client.get("/api/health")
    assert response.status_code == 503
    check = response.json()["details"]["checks"]["playbooks"]
    assert check["status"] == "fail" and "the directory is missing" in check["detail"]
    assert "pressluft doctor" in check["detail"] and str(tmp_path) not in check["detail"]
