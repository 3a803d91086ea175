"""The live lab node's preview wildcard for real: `*.preview.test` ordered over DNS-01
(RFC 2136 updates to the session's BIND, validated by the live site's pebble),
installed by `preview-tls.yml`, served for the environment built before it and for
one built after it (curl with the CA's root, as the acceptance says); the
certificates page in headless Chromium shows it."""

from __future__ import annotations

import asyncio
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from pressluft.runners.acme import served_certificate
from tests.support.browser import _log_in
from tests.support.live import SITE_TITLE, LiveSite, until

PREVIEW = "preview.test"


def _https(live: LiveSite, root: Path, host: str) -> subprocess.CompletedProcess[str]:
    port = live.https_port
    return subprocess.run(
        ["curl", "-sS", "--cacert", str(root), "--resolve", f"{host}:{port}:127.0.0.1",
         "-o", "-", "-w", "\\n%{http_code}", f"https://{host}:{port}/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _serial(live: LiveSite, host: str) -> str:
    """The served certificate's serial (in a thread: Playwright's sync API holds this
    thread's event loop)."""
    probe = served_certificate("127.0.0.1", live.https_port, host)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe).result().serial


def _preview(api: httpx.Client, node_id: str) -> dict[str, Any] | None:
    for certificate in api.get("/api/certificates").json():
        if certificate["kind"] == "preview" and certificate["node_id"] == node_id:
            return dict(certificate)
    return None


@pytest.mark.browser
@pytest.mark.spec("DOM-56", "DOM-57")
def test_the_nodes_wildcard_serves_every_environments_preview_host(
    live: LiveSite, tmp_path: Path, page: Page, shots: Path
) -> None:
    node_id = str(live.node["id"])
    host, port = live.dns.address
    credentials = {
        "server": host,
        "port": str(port),
        "tsig_key_name": live.dns.key_name,
        "tsig_secret": live.dns.key_secret,
        "tsig_algorithm": live.dns.key_algorithm,
        "zone": "test",
    }
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(live.pebble.issuing_root())
    with live.api() as api:
        reply = api.patch(
            "/api/settings",
            json={
                "preview_domain": PREVIEW,
                "dns01_provider": "rfc2136",
                "dns01_credentials": credentials,
            },
        )
        assert reply.status_code == 200, reply.text
        try:
            # The certificate scan (every 5 s here) asks for the node's wildcard.
            def queued() -> str | None:
                jobs = api.get(
                    "/api/jobs", params={"job_type": "preview_certificate", "node_id": node_id}
                ).json()
                items = jobs["items"] if isinstance(jobs, dict) else jobs
                return str(items[0]["id"]) if items else None

            job_id = until(queued, within=60)
            live.job_ok(job_id, 600)
            log = live.job_log(job_id)
            assert "over DNS-01 through rfc2136" in log, log
            certificate = _preview(api, node_id)
            assert certificate is not None
            assert certificate["status"] == "active", certificate
            assert certificate["names"] == [f"*.{PREVIEW}"]
            serial = certificate["serial"]

            # The certificates page lists it, with its expiry and a button to reissue it.
            _log_in(page, live.daemon)
            page.click("nav a[href='/certificates']")
            row = page.locator(f"#certificates-table tr[data-certificate-id='{certificate['id']}']")
            expect(row).to_contain_text(f"*.{PREVIEW}")
            expect(row.locator(".certificate-status")).to_have_text("active")
            expect(row.locator(".certificate-expiry")).to_contain_text("UTC")
            expect(row.locator("button.certificate-reissue")).to_have_text("Reissue now")
            page.screenshot(path=str(shots / "certificates-preview.png"), full_page=True)
            page.goto("about:blank")

            # The environment built before the wildcard.
            before = f"{live.environment_id[:8]}.{PREVIEW}"
            served = _https(live, root, before)
            assert served.returncode == 0, served.stderr
            assert served.stdout.endswith("\n200"), served.stdout[-300:]
            assert SITE_TITLE in served.stdout
            assert _serial(live, before) == serial

            # One built after it gets its block when it is built.
            reply = api.post(
                f"/api/sites/{live.site_id}/environments",
                json={
                    "name": "Preview",
                    "slug": "preview",
                    "type": "staging",
                    "source_environment_id": live.environment_id,
                },
            )
            assert reply.status_code == 202, reply.text
            accepted = reply.json()
            env_id = accepted["environment_id"]
            live.job_ok(accepted["job_id"], 900)
            after = f"{env_id[:8]}.{PREVIEW}"
            served = _https(live, root, after)
            assert served.returncode == 0, served.stderr
            assert served.stdout.endswith("\n200"), served.stdout[-300:]
            assert SITE_TITLE in served.stdout
            assert _serial(live, after) == serial
            # One certificate for both: the inventory holds one preview certificate.
            kinds = [c["kind"] for c in api.get("/api/certificates").json()]
            assert kinds.count("preview") == 1

            # Deleting the environment removes its block.
            block = f"/etc/nginx/sites-enabled/pressluft-preview-{env_id}.conf"
            assert live.exec("test", "-f", block)[0] == 0
            gone = api.delete(f"/api/environments/{env_id}", params={"confirm": "preview"})
            assert gone.status_code == 202, gone.text
            live.job_ok(gone.json()["job_id"], 300)
            assert live.exec("test", "-e", block)[0] != 0
        finally:
            cleared = api.patch(
                "/api/settings", json={"preview_domain": None, "dns01_provider": None}
            )
            assert cleared.status_code == 200, cleared.text
