"""Tests for the governance scripts: scripts/check-traceability and scripts/check-locks.

Each test builds its own fixture tree in ``tmp_path`` and runs the script as a
subprocess, so the repository's own specs/ and tests/ do not matter here.
"""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
NOW = "2026-11-21T10:00:00Z"

ACTIVE_HEADER = (
    "| lock_id | owner | paths | claimed_at_utc | expected_minutes | status | note |\n"
    "|---|---|---|---|---|---|---|\n"
)
RECLAIMED_HEADER = "| lock_id | reclaimed_by | reclaimed_at_utc | reason |\n|---|---|---|---|\n"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# --- check-traceability ---------------------------------------------------------------


def make_tree(root: Path, specs: dict[str, str], tests: dict[str, str]) -> Path:
    for name, text in specs.items():
        (root / "specs").mkdir(exist_ok=True)
        (root / "specs" / name).write_text(text)
    for name, text in tests.items():
        (root / "tests").mkdir(exist_ok=True)
        (root / "tests" / name).write_text(text)
    return root


EVENTS_SPEC = """\
# Events

### EVT-1 — Events are appended in order
Body.

### EVT-2: Events are durable

```markdown
### EVT-99 — an example inside a code fence does not count
```
"""

EVENTS_TEST = """\
import pytest

pytestmark = [pytest.mark.spec("EVT-2")]


@pytest.mark.spec("EVT-1")
def test_order():
    # @pytest.mark.spec("EVT-404") in a comment does not count
    assert "pytest.mark.spec('EVT-405')"
"""


def trace(root: Path) -> subprocess.CompletedProcess[str]:
    return run("check-traceability", "--root", str(root))


@pytest.mark.spec("GOV-1")
def test_traceability_ok(tmp_path: Path) -> None:
    make_tree(tmp_path, {"events.md": EVENTS_SPEC}, {"test_events.py": EVENTS_TEST})
    result = trace(tmp_path)
    assert result.returncode == 0, output(result)
    assert "traceability ok: 2 scenarios in 1 specs" in result.stdout
    assert "2 citations in 1 test files" in result.stdout


@pytest.mark.spec("GOV-1")
def test_traceability_uncited_scenario(tmp_path: Path) -> None:
    spec = EVENTS_SPEC + "\n### EVT-3 — Nobody tests this\n"
    make_tree(tmp_path, {"events.md": spec}, {"test_events.py": EVENTS_TEST})
    result = trace(tmp_path)
    assert result.returncode == 1
    assert "specs/events.md:12: EVT-3 is not cited by any test" in result.stderr


@pytest.mark.spec("GOV-1")
def test_traceability_unknown_citation(tmp_path: Path) -> None:
    test = EVENTS_TEST + '\n\n@pytest.mark.spec("EVT-9")\ndef test_other():\n    pass\n'
    make_tree(tmp_path, {"events.md": EVENTS_SPEC}, {"test_events.py": test})
    result = trace(tmp_path)
    assert result.returncode == 1
    assert "tests/test_events.py:12: cites EVT-9, which no spec defines" in result.stderr


@pytest.mark.spec("GOV-2")
def test_traceability_duplicate_id(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {"events.md": EVENTS_SPEC, "sites.md": "# Sites\n\n### EVT-1 — Duplicate\n"},
        {"test_events.py": EVENTS_TEST},
    )
    result = trace(tmp_path)
    assert result.returncode == 1
    assert "specs/sites.md:3: EVT-1 is already defined at specs/events.md:3" in result.stderr


@pytest.mark.spec("GOV-2")
def test_traceability_zero_scenarios(tmp_path: Path) -> None:
    make_tree(tmp_path, {"index.md": "# Specs\n"}, {"test_x.py": "def test_x():\n    pass\n"})
    result = trace(tmp_path)
    assert result.returncode == 1
    assert "no scenarios defined" in result.stderr


# --- check-locks ----------------------------------------------------------------------


def registry(tmp_path: Path, active_rows: str = "", active_header: str = ACTIVE_HEADER) -> Path:
    path = tmp_path / "locks.md"
    path.write_text(
        "# Path locks\n\nPreamble.\n\n"
        f"## Active locks\n\n{active_header}{active_rows}\n"
        f"## Reclaimed locks\n\n{RECLAIMED_HEADER}"
    )
    return path


def locks(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("check-locks", "--file", str(path), "--now", NOW, *args)


@pytest.mark.spec("GOV-3")
def test_locks_empty_tables_ok(tmp_path: Path) -> None:
    result = locks(registry(tmp_path))
    assert result.returncode == 0, output(result)
    assert "locks ok: 0 active, 0 released, 0 reclaimed" in result.stdout


@pytest.mark.spec("GOV-3")
def test_locks_valid_active_lock_ok(tmp_path: Path) -> None:
    rows = (
        "| w1/api/agent-a | alice | `pressluft/api/*.py`, `openapi/pressluft.yaml` "
        "| 2026-11-21T09:00:00Z | 60 | active | endpoints |\n"
        "| w1/db/agent-b | bob | `pressluft/db.py` | 2026-11-21T05:00:00Z | 30 | released | |\n"
    )
    result = locks(registry(tmp_path, rows))
    assert result.returncode == 0, output(result)
    assert "locks ok: 1 active, 1 released, 0 reclaimed" in result.stdout


@pytest.mark.spec("GOV-4")
def test_locks_stale_lock_fails(tmp_path: Path) -> None:
    rows = "| w1/api/agent-a | alice | `pressluft/api` | 2026-11-21T07:30:00Z | 60 | active | |\n"
    result = locks(registry(tmp_path, rows))
    assert result.returncode == 1
    assert (
        'STALE: w1/api/agent-a claimed 150 min ago (limit 120); reclaim it with a row in "Reclaimed'
        ' locks"' in result.stderr
    )


@pytest.mark.spec("GOV-3")
def test_locks_bad_lock_id_fails(tmp_path: Path) -> None:
    rows = "| Agent A | alice | `pressluft/api` | 2026-11-21T09:30:00Z | 60 | active | |\n"
    result = locks(registry(tmp_path, rows))
    assert result.returncode == 1
    assert "locks.md:9: lock_id 'Agent A' must look like" in result.stderr


@pytest.mark.spec("GOV-5")
def test_locks_overlapping_active_locks_fail(tmp_path: Path) -> None:
    rows = (
        "| w1/api/agent-a | alice | `pressluft/api` | 2026-11-21T09:30:00Z | 60 | active | |\n"
        "| w1/sites/agent-b | bob | `pressluft/api/sites.py` | 2026-11-21T09:40:00Z | 30 "
        "| active | |\n"
    )
    result = locks(registry(tmp_path, rows))
    assert result.returncode == 1
    assert "active locks w1/api/agent-a (line 9) and w1/sites/agent-b" in result.stderr
    assert "overlapping paths" in result.stderr


@pytest.mark.spec("GOV-3")
def test_locks_bad_header_fails(tmp_path: Path) -> None:
    header = "| lock_id | owner | paths | status |\n|---|---|---|---|\n"
    result = locks(registry(tmp_path, active_header=header))
    assert result.returncode == 1
    assert 'table header under "## Active locks" must be exactly' in result.stderr
