"""The dashboard in a real headless Chromium against a live daemon."""

from __future__ import annotations

import contextlib
import html
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Dialog, Page, Response, Route, expect

from tests.support.browser import _log_in
from tests.support.daemon import Daemon
from tests.support.sshd import SSHNode

pytestmark = pytest.mark.browser

PACKAGE = Path(__file__).resolve().parents[1] / "pressluft"


@pytest.mark.spec("WEB-8")
def test_every_form_pattern_compiles_in_the_browser(page: Page) -> None:
    # Chromium compiles `pattern` with the `v` flag: a pattern that does not compile
    # there is silently ignored and the field takes anything.
    found = re.findall(
        r'pattern="([^"]*)"', "".join(p.read_text() for p in PACKAGE.glob("**/templates/**/*.html"))
    )
    patterns = sorted({html.unescape(p) for p in found})
    assert len(patterns) >= 2, patterns
    for pattern in patterns:
        page.set_content("<input id=f>")
        page.locator("#f").evaluate("(el, p) => el.setAttribute('pattern', p)", pattern)
        mismatch = "(el, v) => { el.value = v; return el.validity.patternMismatch }"
        assert page.locator("#f").evaluate(mismatch, "a b!") is True, pattern
        assert page.locator("#f").evaluate(mismatch, "a-1") is False, pattern


@pytest.mark.spec("WEB-2")
def test_settings_form_and_live_event_feed(tmp_path: Path, page: Page, shots: Path) -> None:
    with Daemon(tmp_path) as daemon:
        _log_in(page, daemon)
        expect(page.locator("#health-status")).to_have_text("ok")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)

        page.goto(daemon.url + "/settings")
        page.fill("input[name=control_plane_domain]", "Panel.Example.com")
        page.select_option("select[name=dns01_provider]", "cloudflare")
        page.fill("input[name='cred:api_token']", "cf-token-123")
        page.fill("input[name=preview_domain]", "preview.example.com")
        page.click("button[type=submit]")
        expect(page.locator("#settings-result")).to_have_text("Saved (version 1).")
        expect(page.locator("input[name=control_plane_domain]")).to_have_value("panel.example.com")
        expect(page.locator("#credentials-state")).to_be_visible()
        page.screenshot(path=str(shots / "settings-saved.png"), full_page=True)
        settings = httpx.get(daemon.url + "/api/settings", headers=daemon.auth()).json()
        assert settings["control_plane_domain"] == "panel.example.com"
        assert settings["dns01_credentials_configured"] is True
        assert "cf-token-123" not in page.content()

        # A rule violation is shown with its hint, and changes nothing.
        page.select_option("select[name=dns01_provider]", "rfc2136")
        page.click("button[type=submit]")
        expect(page.locator("#settings-result")).to_contain_text("needs dns01_credentials")
        assert httpx.get(daemon.url + "/api/settings", headers=daemon.auth()).json()["version"] == 1

        page.goto(daemon.url + "/events")
        feed = page.locator("#event-feed tbody tr")
        expect(feed.filter(has_text="settings.changed")).to_have_count(1)
        expect(page.locator("#feed-state")).to_have_text("live")
        httpx.patch(
            daemon.url + "/api/settings",
            json={"control_plane_domain": "live.example.com"},
            headers=daemon.auth(),
        )
        expect(feed.filter(has_text="live.example.com")).to_have_count(1)
        expect(feed.first).to_contain_text("live.example.com")
        expect(feed.first).to_contain_text("settings.changed")
        page.screenshot(path=str(shots / "events-live.png"), full_page=True)
        page.goto("about:blank")  # close the event stream before the daemon stops
    assert (shots / "events-live.png").stat().st_size > 0


@pytest.mark.spec("WEB-3", "TOK-1", "AUD-1")
def test_login_create_a_token_see_it_once_and_revoke_it(
    tmp_path: Path, page: Page, shots: Path
) -> None:
    with Daemon(tmp_path) as daemon:
        # A wrong password is refused with a message, and the page stays.
        email, _ = daemon.admin_credentials()
        page.goto(daemon.url + "/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", "not the password")
        page.click("button[type=submit]")
        expect(page.locator("#login-result")).to_have_text("invalid email or password")
        _log_in(page, daemon)

        page.goto(daemon.url + "/tokens")
        page.fill("input[name=name]", "ci-deploy")
        page.check("input[name=scope][value=write]")
        page.click("#token-form button[type=submit]")
        secret_box = page.locator("#token-secret-value")
        expect(secret_box).to_contain_text("plt_")
        secret = secret_box.inner_text().strip()
        page.screenshot(path=str(shots / "token-created.png"), full_page=True)
        row = page.locator("#token-table tbody tr", has_text="ci-deploy")
        expect(row).to_contain_text("read, write")
        expect(row).to_contain_text("active")
        # The secret works as a bearer token ...
        me = httpx.get(
            daemon.url + "/api/tokens/current", headers={"Authorization": f"Bearer {secret}"}
        )
        assert me.status_code == 200
        assert me.json()["name"] == "ci-deploy"
        # ... and is never shown again.
        page.reload()
        expect(page.locator("#token-secret")).to_be_hidden()
        assert secret not in page.content()

        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Revoke").click()
        expect(row).to_contain_text("revoked")
        page.screenshot(path=str(shots / "token-revoked.png"), full_page=True)
        refused = httpx.get(daemon.url + "/api/me", headers={"Authorization": f"Bearer {secret}"})
        assert refused.status_code == 401

        page.goto(daemon.url + "/audit")
        table = page.locator("#audit-table tbody")
        expect(table).to_contain_text("token.revoked")
        expect(table).to_contain_text("token.created")
        expect(table).to_contain_text("auth.login_failed")
        page.screenshot(path=str(shots / "audit.png"), full_page=True)

        page.click("#logout")
        expect(page).to_have_url(daemon.url + "/login")
        page.goto(daemon.url + "/settings")
        expect(page).to_have_url(daemon.url + "/login?next=/settings")
        page.goto("about:blank")


def _wait_until_idle(daemon: Daemon) -> None:
    """Until no job is queued or running (the daemon's own jobs included)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = [
            httpx.get(daemon.url + f"/api/jobs?status={status}", headers=daemon.auth()).json()
            for status in ("queued", "running")
        ]
        if not any(page["items"] for page in busy):
            return
        time.sleep(0.2)
    raise AssertionError("jobs still queued or running after 120 s")


@pytest.mark.spec("WEB-7")
def test_jobs_pages_hold_up_with_long_logs_many_jobs_and_bad_input(
    tmp_path: Path, page: Page, shots: Path
) -> None:
    with Daemon(tmp_path) as daemon:
        auth = daemon.auth()

        def diagnostic(**request: object) -> str:
            reply = httpx.post(daemon.url + "/api/diagnostics/jobs", json=request, headers=auth)
            assert reply.status_code == 202, reply.text
            return str(reply.json()["job_id"])

        _log_in(page, daemon)
        # A log of thousands of lines, all there once the job has ended.
        long_log = diagnostic(job_type="sleep", seconds=1, lines=3000)
        page.goto(daemon.url + "/jobs/" + long_log)
        expect(page.locator("#log-state")).to_have_text("ended", timeout=60_000)
        lines = page.locator("#job-log .line.stdout")
        expect(lines).to_have_count(3000)
        expect(lines.last).to_have_text("line 3000/3000")
        # Jobs of the same minute are told apart by the tails of their ids.
        assert page.title().startswith("Job …" + long_log[-8:])

        # A growing log: the view follows the end, but not a reader who scrolled up.
        growing = diagnostic(job_type="sleep", seconds=600, lines=6000)
        page.goto(daemon.url + "/jobs/" + growing)
        log = page.locator("#job-log")
        expect(lines.nth(40)).to_be_attached(timeout=30_000)
        expect(page.locator("#job-lease")).to_contain_text(
            re.compile(r"held by \S+:\d+, lease until")
        )
        gap = "el => el.scrollHeight - el.scrollTop - el.clientHeight"
        assert log.evaluate(gap) < 24  # at the end
        log.evaluate("el => { el.scrollTop = 0; }")
        seen = lines.count()
        expect(lines.nth(seen + 20)).to_be_attached(timeout=30_000)
        assert log.evaluate("el => el.scrollTop") == 0  # still where the reader is
        log.evaluate("el => { el.scrollTop = el.scrollHeight; }")
        seen = lines.count()
        expect(lines.nth(seen + 20)).to_be_attached(timeout=30_000)
        assert log.evaluate(gap) < 24  # following the end again

        # Double-clicking "Cancel job": one confirmation, one request.
        dialogs: list[str] = []
        cancels: list[str] = []

        def accept(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        page.on(
            "request",
            lambda r: cancels.append(r.url) if r.url.endswith("/cancel") else None,
        )
        page.dblclick("#job-cancel")
        expect(page.locator("#job-status")).to_have_text("cancelled")
        page.remove_listener("dialog", accept)
        assert len(dialogs) == 1
        assert len(cancels) == 1

        # Many jobs: a double click on "Older jobs" adds the next page once.
        for _ in range(110):
            diagnostic(job_type="noop")
        _wait_until_idle(daemon)  # no live refresh while the pages are counted
        page.goto(daemon.url + "/jobs")
        rows = page.locator("#jobs-table tbody tr")
        expect(rows).to_have_count(50)
        # Both clicks while the next page is in flight: its answer is held until
        # the double click is over.
        held: list[Route] = []
        older = re.compile(r"/api/jobs\?.*before=")
        page.route(older, lambda route: held.append(route))
        page.dblclick("#jobs-more")
        for _ in range(1500):  # Playwright delivers the held request while it waits
            if held:
                break
            page.wait_for_timeout(20)
        assert len(held) == 1
        held[0].continue_()
        page.unroute(older)
        expect(rows).to_have_count(100)
        expect(page.locator("#jobs-more")).to_be_enabled()  # every load has landed
        ids = rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)")
        assert len(ids) == 100 and len(set(ids)) == 100
        shown = rows.evaluate_all("rs => rs.map(r => r.querySelector('a').textContent)")
        assert len(set(shown)) == 100  # no two rows look alike

        # A busy machine: the next page lands between the two clicks of a double
        # click. Its rows push the button down and put a job's link under the
        # pointer; the second click must not open that job (the list was gone).
        more = page.locator("#jobs-more")
        more.scroll_into_view_if_needed()
        box = more.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.evaluate(
            """() => { window.clicks = [];
              window.addEventListener("click", (e) => window.clicks.push(
                { detail: e.detail, link: !!e.target.closest("a"), prevented: e.defaultPrevented })); }"""
        )
        page.mouse.move(x, y)
        page.mouse.down(click_count=1)
        page.mouse.up(click_count=1)
        expect(rows).to_have_count(112)  # the last page: 110 no-ops and the 2 jobs above
        under = "([x, y]) => !!document.elementFromPoint(x, y).closest('#jobs-table a')"
        assert page.evaluate(under, [x, y])  # a job's link is under the pointer now
        page.mouse.down(click_count=2)
        page.mouse.up(click_count=2)
        clicks = page.evaluate("() => window.clicks")
        assert clicks == [
            {"detail": 1, "link": False, "prevented": False},
            {"detail": 2, "link": True, "prevented": True},  # the link is not followed
        ], f"clicks {clicks} (None: the page was left for {page.url})"
        expect(page).to_have_url(daemon.url + "/jobs")
        expect(rows).to_have_count(112)

        # A filter typed but not submitted changes nothing: live rows keep coming.
        page.fill("#jobs-filter input[name=site_id]", "abc")
        newest = diagnostic(job_type="noop")
        expect(page.locator(f"#jobs-table tr[data-job-id='{newest}']")).to_be_attached()
        expect(page.locator("#jobs-empty")).to_be_hidden()

        # A refused filter: the API's error, and no rows of the previous filter.
        page.fill("#jobs-filter input[name=site_id]", "xyz")
        page.click("#jobs-filter button[type=submit]")
        expect(page.locator("#jobs-empty")).to_contain_text("site_id")
        expect(page.locator("#jobs-empty")).to_have_class(re.compile("result-error"))
        expect(rows).to_have_count(0)
        expect(page.locator("#jobs-more")).to_be_hidden()
        page.goto(daemon.url + "/jobs?status=nonsense")
        expect(page.locator("#jobs-empty")).to_contain_text("status")
        expect(rows).to_have_count(0)
        page.screenshot(path=str(shots / "jobs-bad-filter.png"), full_page=True)

        # Text that is no job id: the dashboard's not-found page, not an API error
        # (fetched with the page's session; the fixture counts a 404 the page loads
        # as a broken link).
        reply = page.request.get(daemon.url + "/jobs/" + "x" * 200)
        assert reply.status == 404
        assert reply.headers["content-type"].startswith("text/html")
        assert "There is no such job." in reply.text()
        page.goto("about:blank")  # close the streams before the daemon stops


@pytest.mark.spec("WEB-4", "JOB-24")
def test_jobs_run_live_survive_a_reload_cancel_and_retry(
    tmp_path: Path, page: Page, shots: Path
) -> None:
    with Daemon(tmp_path) as daemon:
        _log_in(page, daemon)
        page.goto(daemon.url + "/jobs")
        expect(page.locator("#jobs-state")).to_have_text("live")
        page.select_option("#diagnostic-form select[name=job_type]", "sleep")
        page.fill("#diagnostic-form input[name=seconds]", "2")
        page.fill("#diagnostic-form input[name=lines]", "8")
        page.click("#diagnostic-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
        job_url = page.url
        log = page.locator("#job-log .line.stdout")
        expect(log).to_have_count(8, timeout=30_000)
        expect(page.locator("#job-status")).to_have_text("succeeded")
        expect(page.locator("#job-timeline li[data-attempt='1']")).to_contain_text("succeeded")
        page.screenshot(path=str(shots / "job-succeeded.png"), full_page=True)
        page.reload()  # the log is stored: all of it comes back
        expect(log).to_have_count(8)
        expect(log.last).to_have_text("line 8/8")
        expect(page.locator("#log-pruned")).to_have_count(0)
        # Once log retention has deleted its lines (what housekeeping does to a job
        # that ended long ago), the page says so instead of showing an empty log.
        job_id = job_url.rsplit("/", 1)[1]
        with contextlib.closing(sqlite3.connect(daemon.data_dir / "pressluft.db")) as db:
            db.execute("PRAGMA busy_timeout = 5000")
            with db:
                db.execute("DELETE FROM job_logs WHERE job_id = ?", (job_id,))
        page.reload()
        expect(page.locator("#log-pruned")).to_contain_text("deleted by log retention")
        expect(page.locator("#job-status")).to_have_text("succeeded")
        expect(page.locator("#log-state")).to_have_text("ended")
        expect(page.locator("#job-log .line")).to_have_count(0)
        expect(page.locator("#job-log")).to_be_hidden()  # no empty log box under the note

        # A long job, cancelled from its page (the confirmation is accepted).
        reply = httpx.post(
            daemon.url + "/api/diagnostics/jobs",
            json={"job_type": "sleep", "seconds": 600, "lines": 600},
            headers=daemon.auth(),
        )
        long_id = reply.json()["job_id"]
        page.goto(daemon.url + "/jobs")
        row = page.locator(f"#jobs-table tr[data-job-id='{long_id}']")
        expect(row).to_have_attribute("data-status", "running")  # live, no reload
        page.goto(daemon.url + "/jobs/" + long_id)
        expect(log.first).to_have_text("line 1/600", timeout=30_000)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#job-cancel")
        expect(page.locator("#job-status")).to_have_text("cancelled")
        expect(page.locator("#job-action-result")).to_have_text("Cancelled.")
        # The cancel button is gone with the running state; the keyboard stays on its answer.
        expect(page.locator("#job-cancel")).to_be_hidden()
        expect(page.locator("#job-action-result")).to_be_focused()
        page.screenshot(path=str(shots / "job-cancelled.png"), full_page=True)
        page.click("#job-retry")
        expect(page).not_to_have_url(daemon.url + "/jobs/" + long_id)
        expect(page.locator("#job .muted").first).to_contain_text("retry of")
        new_id = page.url.rsplit("/", 1)[1]
        httpx.post(daemon.url + f"/api/jobs/{new_id}/cancel", headers=daemon.auth())
        expect(page.locator("#job-status")).to_have_text("cancelled")
        page.goto(daemon.url + "/jobs")
        expect(page.locator("#jobs-table tbody tr")).to_have_count(3)
        page.goto(job_url)
        expect(page.locator("#job-timeline li[data-attempt='1']")).to_contain_text("succeeded")
        page.goto("about:blank")  # close the streams before the daemon stops


@pytest.mark.spec("WEB-5")
def test_nodes_page_adds_checks_and_decommissions_a_real_ssh_node(
    tmp_path: Path, page: Page, shots: Path
) -> None:
    sshd = SSHNode(tmp_path / "sshd").start()
    try:
        with Daemon(tmp_path / "daemon") as daemon:
            _log_in(page, daemon)
            page.click("nav a[href='/nodes']")
            expect(page.locator("#nodes-state")).to_have_text("live")
            expect(page.locator("#nodes-empty")).to_be_visible()
            page.fill("#node-form input[name=name]", "web-1")
            page.fill("#node-form input[name=host]", "127.0.0.1")
            page.fill("#node-form input[name=ssh_port]", str(sshd.port))
            page.fill("#node-form input[name=ssh_user]", sshd.user)
            page.click("#node-form button[type=submit]")
            row = page.locator("#nodes-table tr[data-status='pending']")
            expect(row).to_have_count(1)
            # The key is not authorized yet: readiness says so, live.
            expect(row.locator("td").nth(4)).to_have_text("ssh_auth_failed", timeout=30_000)
            expect(page.locator("#node-authorize")).to_contain_text("ssh-ed25519 ")
            page.screenshot(path=str(shots / "node-added.png"), full_page=True)
            node_id = row.get_attribute("data-node-id")
            node = httpx.get(f"{daemon.url}/api/nodes/{node_id}", headers=daemon.auth()).json()
            sshd.authorize(node["public_key"])  # what the operator's command does

            def checks() -> list[dict[str, object]]:
                jobs = httpx.get(
                    f"{daemon.url}/api/jobs",
                    params={"node_id": node_id, "job_type": "node_check"},
                    headers=daemon.auth(),
                ).json()
                return list(jobs["items"])

            def checks_ended() -> None:
                # "ready" shows while the check's job is still recording its end.
                for job in checks():
                    daemon.job_ended(str(job["id"]), within=60)

            # Every answer to a check request, to count a double click's two.
            answers: list[Response] = []
            page.on(
                "response",
                lambda r: (
                    answers.append(r)
                    if r.request.method == "POST" and r.url.endswith("/check")
                    else None
                ),
            )

            def double_click_check() -> None:
                # By when the request was sent: an earlier click's answer may reach this
                # process's event handler only now.
                asked = time.time() * 1000

                def since() -> list[Response]:
                    return [r for r in answers if r.request.timing["startTime"] >= asked]

                page.dblclick("#node-check")
                for _ in range(600):  # both requests answered (a hang guard, not a limit)
                    if len(since()) >= 2:
                        break
                    page.wait_for_timeout(50)
                assert [r.status for r in since()] == [202, 202]
                # Both clicks are answered with one and the same job.
                assert len({r.json()["job_id"] for r in since()}) == 1

            before = len(checks())
            # A double click queues one check, or hastens the check of the node's
            # creation if that one still waits out a retry's backoff.
            double_click_check()
            expect(page.locator("#node-action-result")).to_contain_text("queued")
            expect(page.locator("#node-action-result a.node-job-log")).to_be_visible()
            # An ssh node's server is not Pressluft's to start or stop.
            expect(page.locator("#node-start")).to_be_hidden()
            expect(page.locator("#lab-form")).to_be_visible()
            expect(row.locator("td").nth(4)).to_have_text("ready", timeout=30_000)
            expect(row.locator("td").nth(5)).to_contain_text("SHA256:")
            assert len(checks()) in (before, before + 1)
            checks_ended()
            before = len(checks())
            page.click("#node-check")  # that check has ended: a new click is a new check
            expect(page.locator("#node-action-result")).to_contain_text("Check queued.")
            assert len(checks()) == before + 1
            checks_ended()
            # Once a check has ended, the next double click asks whether it did once
            # for both clicks: one new check, not two.
            double_click_check()
            assert len(checks()) == before + 2
            page.click("#node-facts-load")
            expect(page.locator("#node-facts dd[data-fact='CPUs']")).not_to_be_empty()
            page.screenshot(path=str(shots / "node-ready.png"), full_page=True)
            page.once("dialog", lambda dialog: dialog.accept("web-1"))
            page.click("#node-decommission")
            gone = page.locator("#nodes-table tr[data-status='decommissioned']")
            expect(gone).to_have_count(1, timeout=30_000)
            page.screenshot(path=str(shots / "node-decommissioned.png"), full_page=True)
    finally:
        sshd.stop()
