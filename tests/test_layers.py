"""The package's layers: imports flow one way (AGENTS.md, changes/shape-for-growth).

    composition   runtime, app, server, cli, features, contract_check, __main__
    faces         api/ (the app's HTTP), web/ (the dashboard shell)
    contexts      contexts/<name>/ — one capability each
    kit           http/ (what a context's routes use), feature (the Feature record)
    mechanisms    events/, jobs/, db/, runners/ (adapters to real servers)
    leaves        clock, ids, errors, config, logs, vault, metrics, systemd, ...

Imports go down only; nothing but the composition imports the composition;
the adapters are reached only from a context's job workers and direct node
probes (and the CLI's node-image build); a context reaches another only
through that context's package face (`pressluft.contexts.<other>`).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pressluft"

COMPOSITION = {"runtime", "app", "server", "cli", "features", "contract_check", "__main__"}
FACES = {"api", "web"}
MECHANISMS = {"db", "events", "jobs", "runners"}
#: Modules of a context that may use the adapters to real servers (and `<name>_worker`
#: modules: one job worker of its own, e.g. a restore drill).
ADAPTER_USERS = {"workers", "probes"}

#: top-level package → what it must never import.
FORBIDDEN: dict[str, set[str]] = {
    "db": {"events", "jobs", "runners", "http", "feature", "contexts"} | FACES | COMPOSITION,
    "events": {"jobs", "runners", "http", "feature", "contexts"} | FACES | COMPOSITION,
    "jobs": {"runners", "http", "feature", "contexts"} | FACES | COMPOSITION,
    "runners": {"db", "events", "jobs", "http", "feature", "contexts"} | FACES | COMPOSITION,
    "http": {"runners", "contexts"} | FACES | COMPOSITION,
    "feature": {"runners", "contexts"} | FACES | COMPOSITION,
    "contexts": FACES | COMPOSITION,
    "api": {"runners"} | COMPOSITION,
    "web": {"runners"} | COMPOSITION,
}
LEAVES = {"clock", "ids", "errors", "config", "logs", "vault", "metrics", "datadir", "affinity",
          "executables", "acting", "names", "supervisor", "systemd"}  # fmt: skip
for leaf in LEAVES:
    FORBIDDEN[leaf] = {"runners", "http", "feature", "contexts"} | FACES | COMPOSITION


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module in ("pressluft", "pressluft.contexts") or (
                node.module.startswith("pressluft.contexts.") and node.module.count(".") == 2
            ):
                # `from pressluft.contexts import sites` names a context's package, and
                # `from pressluft.contexts.nodes import workers` one of its modules
                names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "pressluft" or n.startswith("pressluft.")]


def _is_module(package: Path, parts: list[str]) -> bool:
    """Whether `pressluft.<parts>` names a module or package of the tree (not a name
    a package exports)."""
    where = package.joinpath(*parts[:3])
    return where.with_suffix(".py").exists() or where.is_dir()


def violations(package: Path) -> list[str]:
    """Every import in `package` that breaks a rule of the layers."""
    problems = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        top = rel.parts[0].removesuffix(".py")
        where = f"{package.name}/{rel}"
        own_context = rel.parts[1] if top == "contexts" and len(rel.parts) > 2 else None
        for name in _imports(path):
            parts = name.split(".")[1:]
            if not parts:
                continue
            target = parts[0]
            if target in FORBIDDEN.get(top, set()):
                problems.append(f"{where} imports {name}")
            elif (
                target == "runners"
                and top == "contexts"
                and path.stem not in ADAPTER_USERS
                and not path.stem.endswith("_worker")
            ):
                problems.append(f"{where} imports {name}: adapters only from workers and probes")
            elif (
                target == "contexts"
                and top == "contexts"
                and len(parts) > 2
                and parts[1] != own_context
                and _is_module(package, parts)
            ):
                problems.append(f"{where} imports {name}: another context only through its face")
    return problems


@pytest.mark.spec("GOV-6")
def test_imports_flow_one_way() -> None:
    assert violations(PACKAGE) == []


@pytest.mark.spec("GOV-6")
@pytest.mark.parametrize(
    ("module", "line", "why"),
    [
        ("contexts/sites/service.py", "from pressluft.runtime import Runtime", "composition"),
        ("api/routes.py", "from pressluft.runners.ssh import run", "adapter from a face"),
        (
            "contexts/sites/service.py",
            "import pressluft.runners.ansible",
            "adapter outside workers",
        ),
        ("contexts/sites/service.py", "from pressluft.contexts.nodes.service import x", "face"),
        ("contexts/sites/service.py", "from pressluft.contexts.nodes import workers", "face"),
        ("jobs/queue.py", "from pressluft.contexts.sites import feature", "mechanism upwards"),
        ("db/database.py", "from pressluft.events import append", "storage upwards"),
    ],
)
def test_a_planted_violation_is_named(tmp_path: Path, module: str, line: str, why: str) -> None:
    planted = tmp_path / "pressluft"
    shutil.copytree(PACKAGE, planted, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = planted / module
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as handle:
        handle.write(f"\n{line}  # planted: {why}\n")
    found = violations(planted)
    assert any(f"pressluft/{module} imports" in problem for problem in found), found
