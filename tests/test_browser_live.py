"""The site page in a real headless Chromium against the live lab node's daemon
(tests/support/live.py): a custom domain added from the page gets its certificate
and shows its expiry; the page cache is switched off and on; the domain removed. And
WordPress's own admin: a post published there shows on the cached home page at once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.support.browser import _log_in
from tests.support.live import LiveSite

pytestmark = pytest.mark.browser

HOST = "web.live.test"


@pytest.mark.spec("DOM-45", "CCH-20")
def test_a_domain_and_the_page_cache_from_the_site_page(
    live: LiveSite, page: Page, shots: Path
) -> None:
    live.dns.set(HOST, "A", ["127.0.0.1"])
    answers: list[str] = []

    def answer(dialog: Dialog) -> None:
        answers.append(dialog.message)
        dialog.accept(HOST if dialog.type == "prompt" else "")

    page.on("dialog", answer)
    _log_in(page, live.daemon)
    page.goto(f"{live.daemon.url}/sites/{live.site_id}")
    domains = page.locator("#section-domains")
    expect(domains.locator("h2")).to_have_text("Domains")
    env = domains.locator(f"div.domains-env[data-environment-id='{live.environment_id}']")
    env.locator("input[name=hostname]").fill(HOST)
    env.locator("button[type=submit]").click()
    expect(page.locator("#site-action-result")).to_contain_text("Adding the domain.")
    row = env.locator("tr[data-domain-id]", has_text=HOST)
    # The section follows the domain's events and its job: pending, then active with
    # the certificate's expiry (a few seconds of ACME and a playbook run).
    expect(row.locator(".domain-status")).to_have_text("active", timeout=240_000)
    expect(row.locator(".domain-expiry")).to_contain_text("UTC")
    expect(row).to_contain_text("primary")
    page.screenshot(path=str(shots / "domain-active.png"), full_page=True)

    # The page cache: off, then on again (each a job; the section follows it).
    cache = page.locator(f"#cache-table tr[data-environment-id='{live.environment_id}']")
    expect(cache.locator(".cache-page")).to_have_text("on")
    cache.locator("button.cache-page-toggle").click()
    expect(cache.locator(".cache-page")).to_have_text("off", timeout=180_000)
    page.screenshot(path=str(shots / "page-cache-off.png"), full_page=True)
    cache = page.locator(f"#cache-table tr[data-environment-id='{live.environment_id}']")
    cache.locator("button.cache-page-toggle").click()
    expect(cache.locator(".cache-page")).to_have_text("on", timeout=180_000)

    # Removing it (typed confirmation) reverts the site to its preview URL.
    row = env.locator("tr[data-domain-id]", has_text=HOST)
    row.locator("button.domain-remove").click()
    expect(env.locator("tr[data-domain-id]")).to_have_count(0, timeout=240_000)
    expect(env).to_contain_text("No domain yet.")
    page.screenshot(path=str(shots / "domain-removed.png"), full_page=True)
    assert any("Type web.live.test" in a for a in answers), answers
    assert live.get("/").status_code == 200


@pytest.mark.spec("CCH-21")
def test_a_post_published_in_wp_admin_shows_on_the_cached_home_page_at_once(
    live: LiveSite, page: Page, shots: Path
) -> None:
    """In wp-admin, in the browser: a draft saved with Quick Draft, then published with
    Quick Edit (classic screens, stable across WordPress versions); the next anonymous
    GET of the home page — a HIT before — is a MISS and shows the post."""
    title = f"Published in wp-admin {uuid.uuid4().hex[:8]}"
    live.get("/")
    cached = live.get("/")
    assert cached.headers.get("x-fastcgi-cache") == "HIT", cached.headers
    assert title not in cached.text
    with live.api() as api:
        login = api.post(f"/api/environments/{live.environment_id}/magic-login")
        assert login.status_code == 200, login.text
    base = live.preview_url.rstrip("/")
    page.goto(login.json()["login_url"])
    expect(page.locator("#wpadminbar")).to_be_visible(timeout=60_000)
    page.goto(f"{base}/wp-admin/index.php")
    draft = page.locator("form#quick-press")
    draft.locator("input[name=post_title]").fill(title)
    draft.locator("textarea[name=content]").fill("Written in the browser.")
    draft.locator("#save-post").click()
    expect(page.locator(".drafts")).to_contain_text(title, timeout=30_000)
    page.goto(f"{base}/wp-admin/edit.php?post_status=draft")
    row = page.locator("#the-list tr", has_text=title)
    row.hover()
    row.locator("button.editinline").click()
    editor = page.locator("#the-list tr.inline-editor")
    editor.locator("select[name=_status]").select_option("publish")
    page.screenshot(path=str(shots / "wp-admin-quick-edit.png"), full_page=True)
    editor.locator("button.save").click()
    expect(page.locator("#the-list tr.inline-editor")).to_have_count(0, timeout=30_000)
    expect(page.locator("#the-list tr", has_text=title)).to_contain_text("Published")
    home = live.get("/")
    assert home.headers.get("x-fastcgi-cache") == "MISS", home.headers
    assert title in home.text
    page.goto(base + "/")
    expect(page.locator("body")).to_contain_text(title)
    page.screenshot(path=str(shots / "wp-admin-published-home.png"), full_page=True)
