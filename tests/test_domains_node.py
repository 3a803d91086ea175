"""A custom domain for real: the live lab node's site (tests/support/live.py) gets
a certificate from pebble through HTTP-01 answered by the node's nginx, BIND
answering for the name; served over HTTPS, its URL changed in WordPress, removed
again."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from pressluft.contexts.sites.loaders import env_names
from tests.support.live import SITE_TITLE, LiveSite, until

pytestmark = pytest.mark.daemon

HOST = "shop.live.test"


def helper(live: LiveSite, request: dict[str, object]) -> dict[str, object]:
    """The PHP helper on the node, as the environment's user."""
    names = env_names(live.environment_id, live.site_id)
    command = (
        f"echo {shlex.quote(json.dumps(request))} | runuser -u {names['env_user']} --"
        f" php /usr/local/lib/pressluft/pressluft-wp.php {names['env_root']}/current"
    )
    code, output = live.exec("sh", "-c", command)
    assert code == 0, output
    answer: dict[str, object] = json.loads(output)
    return answer


def curl(
    live: LiveSite, root: Path, url: str, port: int, host: str = HOST
) -> subprocess.CompletedProcess[str]:
    """curl as the acceptance says: the CA's root, the name resolved to the node's port."""
    return subprocess.run(
        ["curl", "-sS", "-D", "-", "--cacert", str(root), "--resolve", f"{host}:{port}:127.0.0.1",
         "-o", "-", "-w", "\\n%{http_code} %{redirect_url}", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.spec("DOM-40", "DOM-41", "DOM-42")
def test_a_custom_domain_is_served_with_its_certificate_and_removed_again(
    live: LiveSite, tmp_path: Path
) -> None:
    old = live.preview_url.rstrip("/")
    old_host = old.split("://", 1)[1]
    # What the URL change must catch: a serialized option and a JSON-escaped URL.
    helper(
        live, {"command": "option-set", "name": "pl_test_serialized", "value": {"u": f"{old}/x"}}
    )
    escaped = json.dumps({"home": f"{old}/"})  # "http:\/\/…" as JSON escapes it
    assert "\\/" not in escaped
    escaped = escaped.replace("/", "\\/")
    helper(live, {"command": "option-set", "name": "pl_test_json", "value": escaped})
    live.dns.set(HOST, "A", ["127.0.0.1"])

    with live.api() as api:
        reply = api.post(
            f"/api/environments/{live.environment_id}/domains",
            json={"hostname": HOST, "hsts": True},
        )
        assert reply.status_code == 202, reply.text
        accepted = reply.json()
        live.job_ok(accepted["job_id"], within=300)
        log = live.job_log(accepted["job_id"])
        (domain,) = api.get(f"/api/environments/{live.environment_id}/domains").json()
        certificates = api.get("/api/certificates").json()

    assert (domain["status"], domain["tls_status"], domain["is_primary"]) == (
        "active",
        "active",
        True,
    ), domain
    assert domain["hsts"] is True
    certificate = domain["certificate"]
    assert certificate["names"] == [HOST] and certificate["serial"], certificate
    assert [c["id"] for c in certificates] == [certificate["id"]]
    assert f"served for {HOST}: serial {certificate['serial']}" in log, log[-3000:]
    assert "PRIVATE KEY" not in log
    assert "purge:" in log, log[-3000:]  # the URL changed: the page cache went with it

    root = tmp_path / "pebble-root.pem"
    root.write_bytes(live.pebble.issuing_root())
    new = f"https://{HOST}:{live.https_port}"
    served = curl(live, root, f"{new}/", live.https_port)
    assert served.returncode == 0, served.stderr
    body, status = served.stdout.rsplit("\n", 1)
    assert status.startswith("200"), served.stdout[-2000:]
    assert SITE_TITLE in body
    headers = body.lower()
    assert "strict-transport-security: max-age=31536000" in headers  # asked for (hsts)
    assert "x-content-type-options: nosniff" in headers
    plain = curl(live, root, f"http://{HOST}:{live.http_port}/about/", live.http_port)
    assert plain.stdout.rsplit("\n", 1)[1] == f"301 {new}/about/", plain.stdout[-500:]

    # WordPress's URL is the domain's; the serialized and JSON-escaped copies too.
    assert helper(live, {"command": "option-get", "name": "home"})["value"] == new
    assert helper(live, {"command": "option-get", "name": "siteurl"})["value"] == new
    assert helper(live, {"command": "option-get", "name": "pl_test_serialized"})["value"] == {
        "u": f"{new}/x"
    }
    rewritten = str(helper(live, {"command": "option-get", "name": "pl_test_json"})["value"])
    assert json.loads(rewritten) == {"home": f"{new}/"}
    assert old_host not in rewritten

    # DOM-42: a second domain answers 301 to the primary; made primary, it takes the URL.
    alt = "alt.live.test"
    live.dns.set(alt, "A", ["127.0.0.1"])
    with live.api() as api:
        second = api.post(
            f"/api/environments/{live.environment_id}/domains", json={"hostname": alt}
        )
        assert second.status_code == 202, second.text
        live.job_ok(second.json()["job_id"], within=300)
        (alt_id,) = second.json()["domain_ids"]
        alt_view = api.get(f"/api/domains/{alt_id}").json()
        assert (alt_view["status"], alt_view["is_primary"], alt_view["redirect_to"]) == (
            "active",
            False,
            HOST,
        )
        assert alt_view["actions"] == ["make_primary", "remove"]
    alt_url = f"https://{alt}:{live.https_port}"
    moved = curl(live, root, f"{alt_url}/x/", live.https_port, alt)
    assert moved.stdout.rsplit("\n", 1)[1] == f"301 {new}/x/", moved.stdout[-500:]
    with live.api() as api:
        made = api.post(f"/api/domains/{alt_id}/primary")
        assert made.status_code == 202, made.text
        live.job_ok(made.json()["job_id"], within=300)
        listed = api.get(f"/api/environments/{live.environment_id}/domains").json()
    assert [(d["hostname"], d["is_primary"]) for d in listed] == [(alt, True), (HOST, False)]
    assert helper(live, {"command": "option-get", "name": "home"})["value"] == alt_url
    back = curl(live, root, f"{new}/y/", live.https_port)
    assert back.stdout.rsplit("\n", 1)[1] == f"301 {alt_url}/y/", back.stdout[-500:]
    served = curl(live, root, f"{alt_url}/", live.https_port, alt)
    assert served.stdout.rsplit("\n", 1)[1].startswith("200"), served.stdout[-500:]
    assert "strict-transport-security" not in served.stdout.lower()  # not asked for

    # DOM-41: removing the primary domain reverts to the preview URL; then the other.
    with live.api() as api:
        for domain_id, name in ((alt_id, alt), (domain["id"], HOST)):
            removal = api.delete(f"/api/domains/{domain_id}", params={"confirm": name})
            assert removal.status_code == 202, removal.text
            live.job_ok(removal.json()["job_id"], within=300)
            if name == alt:
                assert helper(live, {"command": "option-get", "name": "home"})["value"] == old
        assert api.get(f"/api/environments/{live.environment_id}/domains").json() == []
        assert api.get("/api/certificates").json() == []
    assert helper(live, {"command": "option-get", "name": "home"})["value"] == old
    for name in (HOST, alt):
        code, _ = live.exec("test", "-e", f"/etc/nginx/sites-enabled/pressluft-domain-{name}.conf")
        assert code == 1
    code, _ = live.exec("test", "-e", f"/etc/pressluft/tls/{certificate['id']}")
    assert code == 1
    assert live.get("/").status_code == 200


def _certificate(live: LiveSite, certificate_id: str) -> dict[str, object]:
    with live.api() as api:
        found = [c for c in api.get("/api/certificates").json() if c["id"] == certificate_id]
    assert found, certificate_id
    return found[0]


def _served_serial(live: LiveSite, hostname: str) -> str:
    info = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{live.https_port}",
         "-servername", hostname],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    pem = info.stdout[info.stdout.index("-----BEGIN") : info.stdout.index("-----END")]
    serial = subprocess.run(
        ["openssl", "x509", "-noout", "-serial"],
        input=pem + "-----END CERTIFICATE-----\n", capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return serial.strip().split("=", 1)[1].lower().lstrip("0")


@pytest.mark.spec("DOM-43", "DOM-44")
def test_certificates_renew_on_time_on_request_and_a_failed_renewal_is_shown(
    live: LiveSite,
) -> None:
    host = "renew.live.test"
    live.dns.set(host, "A", ["127.0.0.1"])
    # Short-lived certificates (40 s: renewal due after ~27 s) from a restarted CA.
    live.pebble.stop()
    live.pebble.validity_seconds = 40
    live.pebble.start()
    try:
        with live.api() as api:
            added = api.post(
                f"/api/environments/{live.environment_id}/domains", json={"hostname": host}
            )
            assert added.status_code == 202, added.text
            live.job_ok(added.json()["job_id"], within=300)
            (domain,) = [
                d
                for d in api.get(f"/api/environments/{live.environment_id}/domains").json()
                if d["hostname"] == host
            ]
        first = domain["certificate"]
        assert _served_serial(live, host) == first["serial"].lstrip("0")

        # Asked for: a new certificate, served at once.
        with live.api() as api:
            renewal = api.post(f"/api/certificates/{first['id']}/renew")
        assert renewal.status_code == 202, renewal.text
        live.job_ok(renewal.json()["job_id"], within=300)
        asked = _certificate(live, first["id"])
        assert asked["serial"] != first["serial"] and not asked["renewal_failed"]
        assert _served_serial(live, host) == str(asked["serial"]).lstrip("0")

        # On time: the scan renews it once its renewal time has passed.
        def renewed_by_scan() -> dict[str, object] | None:
            now = _certificate(live, first["id"])
            return now if now["serial"] not in (first["serial"], asked["serial"]) else None

        scanned = until(renewed_by_scan, within=150, every=2)
        assert _served_serial(live, host) == str(scanned["serial"]).lstrip("0")

        # The CA unreachable: a renewal fails (asked for now, not waiting for the scan:
        # the scan's path is the one above), the old certificate is still served and
        # the inventory says so (and that it expires soon).
        live.pebble.stop()
        with live.api() as api:
            doomed = api.post(f"/api/certificates/{first['id']}/renew")
        assert doomed.status_code == 202, doomed.text
        ended = live.daemon.job_ended(doomed.json()["job_id"], 120)
        assert (ended["status"], ended["error_code"]) == ("failed", "ACME_UNREACHABLE"), ended

        def failed() -> dict[str, object] | None:
            now = _certificate(live, first["id"])
            return now if now["renewal_failed"] else None

        shown = until(failed, within=30, every=1)
        assert shown["serial"] == scanned["serial"] and shown["expiring"] is True
        error = shown["last_error"]
        assert isinstance(error, dict) and error["code"] == "ACME_UNREACHABLE", shown
        with live.api() as api:
            jobs = api.get(
                "/api/jobs", params={"job_type": "certificate_renew", "status": "failed"}
            )
        assert jobs.status_code == 200 and jobs.json()["items"], jobs.text
    finally:
        live.pebble.validity_seconds = None
        if live.pebble.process is None:
            live.pebble.start()
        with live.api() as api:
            for d in api.get(f"/api/environments/{live.environment_id}/domains").json():
                if d["hostname"] == host and d["status"] in ("active", "failed"):
                    gone = api.delete(f"/api/domains/{d['id']}", params={"confirm": host})
                    live.job_ok(gone.json()["job_id"], within=300)
