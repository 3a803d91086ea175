"""Docs are tests: the settings table, the CLI and the event types are documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from pressluft.cli import main
from pressluft.config import SETTINGS, settings_markdown
from pressluft.events.types import event_type
from pressluft.features import ALL_EVENTS


@pytest.mark.spec("DMN-7")
def test_the_settings_table_in_the_spec_is_generated_from_the_code(repo_root: Path) -> None:
    spec = (repo_root / "specs" / "daemon.md").read_text()
    table = spec.split("<!-- settings-table:begin -->\n", 1)[1].split(
        "<!-- settings-table:end -->", 1
    )[0]
    assert table == settings_markdown(), "regenerate with: pressluft config --markdown"
    for setting in SETTINGS:
        assert setting.env in spec and setting.option in spec


@pytest.mark.spec("DMN-7")
@pytest.mark.parametrize("mode", ["dev", "serve"])
def test_every_setting_is_an_option(mode: str) -> None:
    command = main.commands[mode]
    options = {
        opt for param in command.params if isinstance(param, click.Option) for opt in param.opts
    }
    assert {s.option for s in SETTINGS} <= options


@pytest.mark.spec("DMN-8")
def test_every_cli_command_is_documented(repo_root: Path) -> None:
    spec = (repo_root / "specs" / "daemon.md").read_text()

    def walk(group: click.Group, prefix: str) -> list[str]:
        names: list[str] = []
        for name, command in group.commands.items():
            full = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                names.extend(walk(command, full))
            else:
                names.append(full)
        return names

    for name in walk(main, ""):
        assert re.search(rf"`pressluft {re.escape(name)}\b", spec), (
            f"`pressluft {name}` is undocumented"
        )


@pytest.mark.spec("EVT-1")
def test_every_event_type_is_named_by_the_convention(repo_root: Path) -> None:
    spec = (repo_root / "specs" / "events.md").read_text()
    for cls in ALL_EVENTS:
        tag = event_type(cls)
        irregular = (".sent", ".seen", ".reset")  # past participles without -ed
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+ed", tag) or tag.endswith(irregular), tag
        assert f"`{tag}`" in spec or tag.split(".")[0] in spec
