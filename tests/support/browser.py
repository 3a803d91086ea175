"""Headless Chromium for the browser tier: the page fixture (every JS error, 5xx and
404 fails the test), screenshots under `$PRESSLUFT_ARTIFACTS/screenshots/<test>/`,
and logging in to a daemon."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.daemon import Daemon

__all__ = ["CHROMIUM_ARGS", "_chromium", "_log_in", "page", "shots"]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is required for the browser tier (make test installs Debian's chromium)"
    return path


@pytest.fixture
def shots(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("PRESSLUFT_ARTIFACTS", tmp_path)) / "screenshots" / request.node.name
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def page(tmp_path: Path):  # type: ignore[no-untyped-def]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"JS error: {exc}"))
        page.on(
            "response",
            lambda r: (
                errors.append(f"{r.status} {r.url}") if r.status >= 500 or r.status == 404 else None
            ),
        )
        yield page
        browser.close()
        assert not errors, f"browser errors: {errors}"


def _log_in(page: Page, daemon: Daemon) -> None:
    email, password = daemon.admin_credentials()
    page.goto(daemon.url + "/")
    expect(page).to_have_url(daemon.url + "/login?next=/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(daemon.url + "/")
    expect(page.locator("#current-user")).to_have_text(email)
