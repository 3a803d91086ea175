"""The sites pages in a real headless Chromium against the live lab node's daemon
(tests/support/live.py): a site created with the form, followed to its preview and
wp-admin, cloned and its copy deleted; the live site's own page cloning and deleting
an environment, live. What a test makes (a site, an environment) is deleted when it
ends (`live_sites`, `live_environments`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Locator, Page, expect

from tests.support.browser import _log_in
from tests.support.live import SITE_TITLE, LiveSite

pytestmark = pytest.mark.browser


@pytest.mark.spec("WEB-6")
def test_sites_page_creates_a_site_on_a_lab_node_and_opens_its_preview(
    live: LiveSite, page: Page, shots: Path, live_sites: list[str]
) -> None:
    daemon, node_id = live.daemon, live.node["id"]
    _log_in(page, daemon)
    page.click("nav a[href='/sites']")
    expect(page.locator("#sites-state")).to_have_text("live")
    # The sites there are listed (the live one at least); the form offers the node.
    expect(page.locator(f"#sites-table tr[data-site-id='{live.site_id}']")).to_have_count(1)
    expect(page.locator("#sites-empty")).to_be_hidden()
    expect(page.locator(f"#site-node option[value='{node_id}']")).to_have_count(1)
    page.select_option("#site-node", node_id)
    page.fill("#site-form input[name=name]", "Corner Shop")
    page.fill("#site-form input[name=slug]", "corner")
    page.fill("#site-form input[name=admin_user]", "corner-ops")
    page.click("#site-form button[type=submit]")
    row = page.locator("#sites-table tr[data-site-id]", has_text="Corner Shop")
    expect(row).to_have_count(1)
    site_id = str(row.get_attribute("data-site-id"))
    live_sites.append(site_id)
    row = page.locator(f"#sites-table tr[data-site-id='{site_id}']")
    expect(row).to_have_attribute("data-status", "creating")
    page.screenshot(path=str(shots / "site-creating.png"), full_page=True)
    # Follow the job's live log to the end.
    page.click("#site-form-result a.site-job-log")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=600_000)
    expect(page.locator("#job-log")).to_contain_text("health: http 200")
    page.screenshot(path=str(shots / "site-job-succeeded.png"), full_page=True)
    page.goto(daemon.url + "/sites")
    expect(row).to_have_attribute("data-status", "active")
    link = row.locator("a.preview-link")
    expect(link).to_have_count(1)
    preview_url = str(link.get_attribute("href"))

    # A lab node's preview URL works as it is: *.localhost is loopback to the
    # browser, the port the node's published HTTP port (nothing routed here).
    assert preview_url.startswith("http://") and preview_url.endswith(
        f".localhost:{live.http_port}"
    ), preview_url
    preview = page.context.new_page()  # the site's own 404s are not the dashboard's
    preview.goto(preview_url)
    expect(preview.locator("body")).to_contain_text("Corner Shop")
    preview.screenshot(path=str(shots / "site-preview.png"), full_page=True)
    preview.close()
    # "Open WordPress admin": a one-time login in a new tab, into wp-admin, as
    # the site's own administrator (the site view names it).
    row.locator("button.site-open").click()
    expect(page.locator("#environments-table td.admin-user")).to_have_text("corner-ops")
    with page.context.expect_page() as opened:
        page.click("#environments-table button.magic-login")
    admin = opened.value
    expect(admin.locator("#wpadminbar")).to_be_visible(timeout=60_000)
    assert admin.url.startswith(preview_url + "/wp-admin/"), admin.url
    admin.screenshot(path=str(shots / "site-wp-admin.png"), full_page=True)
    admin.close()
    expect(page.locator("#site-action-result")).to_contain_text("Logged in")

    # Clone it to staging from the site's panel; its jobs are listed there.
    page.fill("#environment-form input[name=name]", "Staging")
    page.fill("#environment-form input[name=slug]", "staging")
    page.click("#environment-form button[type=submit]")
    staging = page.locator("#environments-table tr[data-slug='staging']")
    expect(staging).to_have_count(1)
    expect(page.locator("#site-jobs-table tr[data-job-type='env_create']")).to_have_count(1)
    page.click("#environment-form-result a.environment-job-log")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=600_000)
    expect(page.locator("#job-log")).to_contain_text("health: http 200")
    page.goto(daemon.url + "/sites")
    row.locator("button.site-open").click()
    expect(staging).to_have_attribute("data-status", "active")
    done = page.locator("#site-jobs-table tr[data-status='succeeded']")
    expect(done).to_have_count(2)
    page.screenshot(path=str(shots / "site-staging.png"), full_page=True)
    # Delete it: the prompt asks for its slug, which the API checks.
    page.once("dialog", lambda dialog: dialog.accept("staging"))
    staging.locator("button.env-delete").click()
    expect(page.locator("#site-action-result")).to_contain_text("Deleting")
    expect(staging).to_have_count(0, timeout=300_000)
    gone = page.locator("#site-jobs-table tr[data-job-type='env_delete']")
    expect(gone).to_have_attribute("data-status", "succeeded")
    page.screenshot(path=str(shots / "site-staging-deleted.png"), full_page=True)
    page.goto("about:blank")


@pytest.mark.spec("WEB-14", "WEB-9", "WEB-10", "WEB-11", "WEB-12")
def test_a_site_page_clones_and_deletes_an_environment(
    live: LiveSite, page: Page, shots: Path, live_environments: list[str]
) -> None:
    """On the live site's page (the site as other tests leave it: its environments and
    jobs are read from the API, not assumed)."""
    daemon, site_id, production = live.daemon, live.site_id, live.environment_id
    site_url = f"{daemon.url}/sites/{site_id}"
    with live.api() as api:
        site = api.get(f"/api/sites/{site_id}").json()
        newest = api.get("/api/jobs", params={"site_id": site_id, "limit": 1}).json()["items"]

        def deletions() -> list[str]:
            listed = api.get("/api/jobs", params={"site_id": site_id, "job_type": "env_delete"})
            return [job["id"] for job in listed.json()["items"]]

        deleted_before = deletions()
    environments = [e for e in site["environments"] if e["status"] != "deleted"]

    _log_in(page, daemon)
    # The sites list links the site's page; the page opens by its URL.
    page.goto(daemon.url + "/sites")
    expect(page.locator(f"#sites-table a.site-page[href='/sites/{site_id}']")).to_have_count(1)
    page.goto(site_url)
    expect(page.locator("#site-state")).to_have_text("live")
    expect(page.locator("h1")).to_contain_text(SITE_TITLE)
    envs = page.locator("#environments-table tbody tr")
    expect(envs).to_have_count(len(environments))
    prod_row = page.locator(f"#environments-table tr[data-environment-id='{production}']")
    expect(prod_row).to_have_attribute("data-status", "active")
    # Its buttons are its actions: no "Delete" on production.
    expect(prod_row.locator("button.env-delete")).to_have_count(0)
    expect(prod_row.locator("button.magic-login")).to_have_count(1)
    # The site's jobs, newest first, each linking to its live log, and all of them.
    first = page.locator("#section-jobs tr[data-job-id]").first
    expect(first).to_have_attribute("data-job-id", newest[0]["id"])
    expect(first.locator("a")).to_have_attribute("href", f"/jobs/{newest[0]['id']}")
    expect(page.locator("#site-jobs")).to_have_attribute("href", f"/jobs?site_id={site_id}")
    page.screenshot(path=str(shots / "site-page.png"), full_page=True)

    # What the page asks for while events come: only its sections' fragments.
    page.evaluate("() => { window.samePage = true; }")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.method + " " + r.url.removeprefix(daemon.url)))

    # Clone production to staging: "Clone" picks it as the source of the form.
    prod_row.locator("button.env-clone").click()
    expect(page.locator("#environment-form select[name=source_environment_id]")).to_have_value(
        production
    )
    page.fill("#environment-form input[name=name]", "Web staging")
    page.fill("#environment-form input[name=slug]", "web-staging")
    page.click("#environment-form button[type=submit]")
    log_link = page.locator("#environment-form-result a.environment-job-log")
    expect(log_link).to_be_visible()
    staging = page.locator("#environments-table tr[data-slug='web-staging']")
    expect(staging).to_have_count(1)  # live: its section refreshed by events
    live_environments.append(str(staging.get_attribute("data-environment-id")))
    cloning = page.locator(f"#section-jobs tr[data-job-id='{_job_id(log_link)}']")
    expect(cloning).to_have_attribute("data-job-type", "env_create")
    page.screenshot(path=str(shots / "site-page-cloning.png"), full_page=True)
    expect(staging).to_have_attribute("data-status", "active", timeout=900_000)
    expect(cloning).to_have_attribute("data-status", "succeeded")
    expect(staging.locator("a.preview-link")).to_have_count(1)
    page.screenshot(path=str(shots / "site-page-staging-active.png"), full_page=True)

    # A wrong slug typed: the API's refusal with its hint, nothing queued.
    page.once("dialog", lambda dialog: dialog.accept("nope"))
    staging.locator("button.env-delete").click()
    result = page.locator("#site-action-result")
    expect(result).to_contain_text("needs confirmation")
    expect(result).to_contain_text("?confirm=web-staging")
    expect(result).to_have_class("result-error")

    # Delete it, double-clicked: one confirmation, one request, one job.
    dialogs: list[str] = []

    def confirm(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept("web-staging")

    page.on("dialog", confirm)
    deletes_before = len([a for a in asked if a.startswith("DELETE ")])
    staging.locator("button.env-delete").dblclick()
    expect(result).to_contain_text("Deleting Web staging.")
    expect(result.locator("a.action-job-log")).to_be_visible()
    page.remove_listener("dialog", confirm)
    assert len(dialogs) == 1, dialogs
    assert "Type web-staging to confirm" in dialogs[0]
    assert len([a for a in asked if a.startswith("DELETE ")]) == deletes_before + 1
    page.screenshot(path=str(shots / "site-page-deleting.png"), full_page=True)
    expect(staging).to_have_count(0, timeout=600_000)
    gone = page.locator(
        f"#section-jobs tr[data-job-id='{_job_id(result.locator('a.action-job-log'))}']"
    )
    expect(gone).to_have_attribute("data-job-type", "env_delete")
    expect(gone).to_have_attribute("data-status", "succeeded")
    page.screenshot(path=str(shots / "site-page-staging-deleted.png"), full_page=True)
    with live.api() as api:
        assert len(deletions()) == len(deleted_before) + 1
    expect(envs).to_have_count(len(environments))

    # Scoped: the page was never reloaded, and it fetched its own sections, never a list.
    assert page.evaluate("() => window.samePage") is True
    gets = [a.split(" ", 1)[1] for a in asked if a.startswith("GET ")]
    assert any(g.endswith("/sections/environments") for g in gets), gets
    own = (f"/sites/{site_id}/sections/", "/api/events/stream")
    assert all(g.startswith(own) for g in gets), gets
    page.goto("about:blank")


def _job_id(link: Locator) -> str:
    """The job a "live log" link opens (`/jobs/<id>`)."""
    return str(link.get_attribute("href")).rsplit("/", 1)[1]
