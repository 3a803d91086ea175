"""The package's layers: imports flow one way (AGENTS.md, style.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pressluft"

#: layer → the layers it must not import. Top-level modules (clock, errors, ids,
#: logs, config, vault, metrics, affinity, datadir) are shared leaves; app.py,
#: server.py, runtime.py and cli.py wire everything together.
FORBIDDEN = {
    "db": {"events", "jobs", "services", "api", "web", "runtime", "app", "server", "cli"},
    "events": {"jobs", "services", "api", "web", "runtime", "app", "server", "cli"},
    "jobs": {"services", "api", "web", "runtime", "app", "server", "cli"},
    "services": {"api", "web", "app", "server", "cli", "runtime"},
    # Adapters to real servers: reached only through job handlers (services).
    "nodes": {"db", "events", "jobs", "services", "api", "web", "runtime", "app", "server", "cli"},
    "api": {"web", "server", "cli", "nodes"},
    "web": {"server", "cli", "nodes"},
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return [n for n in names if n == "pressluft" or n.startswith("pressluft.")]


@pytest.mark.spec("GOV-6")
def test_imports_flow_one_way() -> None:
    problems = []
    for layer, forbidden in FORBIDDEN.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                target = parts[1] if len(parts) > 1 else ""
                if target in forbidden:
                    problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert problems == []
