"""Access against real `pressluft` processes: redaction, TLS, fail-closed serving, first run, CLI."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.daemon import Daemon, pressluft_argv, run_cli
from tests.support.s3 import S3Server

pytestmark = pytest.mark.daemon


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.mark.spec("SEC-5")
def test_secrets_appear_in_no_database_byte_log_line_or_response(
    tmp_path: Path, s3_server: S3Server
) -> None:
    responses: list[str] = []
    bucket = s3_server.create_bucket("redaction-backups")
    with Daemon(tmp_path, args=("--log-level", "debug")) as daemon:
        email, password = daemon.admin_credentials()
        dns_secret = "cf-dns-secret-value-7f3a9"
        with httpx.Client(base_url=daemon.url, timeout=30) as http:
            login = http.post("/api/login", json={"email": email, "password": password})
            session_token = login.cookies["session_token"]
            responses.append(login.text)
            created = http.post(
                "/api/tokens",
                json={"name": "redaction", "scopes": ["admin"]},
                headers={"Origin": daemon.url},
            )
            api_token = created.json()["token"]  # shown once here, by design
            bearer = {"Authorization": f"Bearer {api_token}"}
            for reply in (
                http.patch(
                    "/api/settings",
                    json={
                        "dns01_provider": "cloudflare",
                        "dns01_credentials": {"api_token": dns_secret},
                    },
                    headers=bearer,
                ),
                http.post("/api/login", json={"email": email, "password": "wrong " + password}),
                http.put(
                    "/api/backup-target",
                    json={
                        "endpoint": s3_server.endpoint,
                        "region": s3_server.region,
                        "bucket": bucket,
                        "access_key_id": s3_server.access_key_id,
                        "secret_access_key": s3_server.secret_access_key,
                    },
                    headers=bearer,
                ),
            ):
                responses.append(reply.text)
            for path in (
                "/api/settings",
                "/api/events?limit=1000",
                "/api/audit?limit=500",
                "/api/tokens",
                "/api/tokens/current",
                "/api/me",
                "/api/metrics",
                "/metrics",
                "/api/health",
                "/api/backup-target",
            ):
                reply = http.get(path, headers=bearer)
                assert reply.status_code == 200, path
                responses.append(reply.text)
        # The recovery kit exported (as an operator does) and a copy of the control plane
        # taken with its key: the key must show nowhere but in the kit.
        kit = tmp_path.parent / f"{tmp_path.name}-kit.json"
        env = {k: v for k, v in daemon.env.items() if not k.startswith("PRESSLUFT_DATA_DIR")}
        exported = run_cli(
            "recovery-kit", "export", "--out", str(kit), "--data-dir", str(daemon.data_dir),
            env=env,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        responses.append(exported.stderr)
        recovery_key = json.loads(kit.read_text())["recovery_key"]
        kit.unlink()
        with httpx.Client(base_url=daemon.url, timeout=30, headers=bearer) as http:
            copy = http.post("/api/control-plane/backups")
            assert copy.status_code == 202, copy.text
            job = daemon.job_ended(copy.json()["job_id"], 300)
            assert job["status"] == "succeeded", job
            for path in (f"/api/jobs/{job['id']}/log", "/api/control-plane/backups"):
                responses.append(http.get(path).text)
        with httpx.Client(base_url=daemon.url, cookies={"session_token": session_token}) as pages:
            for page in ("/", "/settings", "/tokens", "/audit", "/events", "/backups"):
                reply = pages.get(page)
                assert reply.status_code == 200, page
                responses.append(reply.text)
        secrets = {
            "password": password,
            "session": session_token,
            "token": api_token,
            "dns": dns_secret,
            "storage": s3_server.secret_access_key,
            "recovery key": recovery_key,
        }
        assert daemon.stop() == 0
    # The one place a secret may appear: the token's creation response (asserted above by use).
    for text in responses:
        for what, secret in secrets.items():
            assert secret not in text, f"{what} leaked into a response"
    log = daemon.output()
    banner_password = f"with password {password}"
    log_without_banner = log.replace(banner_password, "")  # printed once on purpose, at first start
    for what, secret in secrets.items():
        assert secret not in log_without_banner, f"{what} leaked into the log"
    data = daemon.data_dir
    for path in data.glob("pressluft.db*"):
        raw = path.read_bytes()
        for what, secret in secrets.items():
            assert secret.encode() not in raw, f"{what} is in {path.name}"
        assert b"$argon2id$" not in raw, f"a password hash is readable in {path.name}"


@pytest.mark.spec("SEC-4")
def test_tls_serves_https_with_secure_cookies_and_hsts(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    everywhere = "0.0.0.0"  # noqa: S104 - allowed because TLS is configured
    daemon = Daemon(
        tmp_path,
        args=("--host", everywhere, "--tls-cert-file", str(cert), "--tls-key-file", str(key)),
    )
    daemon.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        url = f"https://127.0.0.1:{daemon.port}"
        for _ in range(200):
            try:
                health = httpx.get(url + "/api/health", verify=context, timeout=1)
                break
            except httpx.HTTPError:
                assert daemon.proc is not None and daemon.proc.poll() is None, daemon.output()
                import time

                time.sleep(0.05)
        assert health.status_code == 200
        assert health.headers["strict-transport-security"] == "max-age=31536000"
        email, password = daemon.admin_credentials()
        login = httpx.post(
            url + "/api/login", json={"email": email, "password": password}, verify=context
        )
        assert login.status_code == 200
        assert "secure" in login.headers["set-cookie"].lower()
        assert "https://" in daemon.output()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{daemon.port}/api/health", timeout=2)
    finally:
        assert daemon.stop() == 0


@pytest.mark.spec("SEC-4")
def test_insecure_http_must_be_explicit_and_is_warned_about(tmp_path: Path) -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - the point of the test
    daemon = Daemon(tmp_path, "serve", args=("--host", everywhere, "--insecure-http"))
    with daemon:
        reply = httpx.get(daemon.url + "/api/health")
        assert reply.status_code == 200
        assert "strict-transport-security" not in reply.headers
    records = [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]
    assert any(r["level"] == "warning" and "clear text" in r["message"] for r in records)
    half = Daemon(tmp_path / "half", "serve", args=("--tls-cert-file", str(tmp_path / "nope.pem")))
    half.start()
    assert half.wait(timeout=30) == 3
    assert "must be given together" in half.output()


@pytest.mark.spec("AUTH-11")
def test_first_run_admin_in_dev_and_none_in_serve(tmp_path: Path) -> None:
    dev = Daemon(tmp_path / "dev")
    with dev:
        first = dev.output()
        assert "First run: log in as admin@pressluft.local with password" in first
        secret_file = dev.data_dir / "initial-admin-password"
        assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
        _, password = dev.admin_credentials()
        assert password in first
    with Daemon(tmp_path / "dev") as again:
        assert "First run" not in again.output()
        assert password not in again.output()
    serve = Daemon(tmp_path / "serve", "serve")
    with serve:
        assert "No operator accounts yet" in serve.output()
        assert not (serve.data_dir / "initial-admin-password").exists()
        default_login = httpx.post(
            serve.url + "/api/login", json={"email": "admin@pressluft.local", "password": "admin"}
        )
        assert default_login.status_code == 401


@pytest.mark.spec("AUTH-10")
def test_admin_commands_work_while_the_daemon_runs(tmp_path: Path) -> None:
    with Daemon(tmp_path, "serve") as daemon:
        env = {"PRESSLUFT_DATA_DIR": str(daemon.data_dir)}
        short = run_cli(
            "admin", "create", "--email", "a@example.com", "--password", "short", env=env
        )
        assert short.returncode == 2
        assert "at least 12 characters" in short.stderr
        bad = run_cli(
            "admin", "create", "--email", "nope", "--password", "long enough pw 1", env=env
        )
        assert bad.returncode == 2
        import subprocess

        created = subprocess.run(
            pressluft_argv(
                "admin",
                "create",
                "--email",
                "Op@Example.com",
                "--password-stdin",
                "--role",
                "viewer",
            ),
            input="first password 123\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert "created viewer op@example.com" in created.stdout
        dup = run_cli(
            "admin", "create", "--email", "op@example.com", "--password", "another pw 1234", env=env
        )
        assert dup.returncode == 1
        assert "already exists" in dup.stderr
        with httpx.Client(base_url=daemon.url) as http:
            login = http.post(
                "/api/login", json={"email": "op@example.com", "password": "first password 123"}
            )
            assert login.status_code == 200
            assert login.json()["user"]["role"] == "viewer"
            assert http.get("/api/me").status_code == 200
            reset = run_cli(
                "admin",
                "reset-password",
                "--email",
                "op@example.com",
                "--password",
                "second password 456",
                env=env,
            )
            assert reset.returncode == 0, reset.stderr
            assert "1 session(s) ended" in reset.stdout
            assert http.get("/api/me").status_code == 401
        relog = httpx.post(
            daemon.url + "/api/login",
            json={"email": "op@example.com", "password": "second password 456"},
        )
        assert relog.status_code == 200
        missing = run_cli(
            "admin",
            "reset-password",
            "--email",
            "ghost@example.com",
            "--password",
            "x" * 12,
            env=env,
        )
        assert missing.returncode == 1


@pytest.mark.spec("SEC-7")
def test_an_open_event_stream_ends_when_its_session_does(tmp_path: Path) -> None:
    import threading
    import time

    with Daemon(tmp_path, env={"PRESSLUFT_SSE_KEEPALIVE_SECONDS": "1"}) as daemon:
        email, password = daemon.admin_credentials()
        browser = httpx.Client(base_url=daemon.url, timeout=15)
        assert (
            browser.post("/api/login", json={"email": email, "password": password}).status_code
            == 200
        )
        lines: list[str] = []
        ended = threading.Event()

        def read_stream() -> None:
            with browser.stream("GET", "/api/events/stream") as stream:
                for line in stream.iter_lines():
                    lines.append(line)
            ended.set()

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        time.sleep(0.5)
        cookie = browser.cookies["session_token"]
        with httpx.Client(base_url=daemon.url, cookies={"session_token": cookie}) as other:
            assert other.post("/api/logout", headers={"Origin": daemon.url}).status_code == 200
        # Activity after the logout must not reach the stream; it ends instead.
        httpx.post(
            daemon.url + "/api/tokens",
            json={"name": "after", "scopes": ["read"]},
            headers=daemon.auth(),
        )
        assert ended.wait(10), "the stream outlived its session"
        assert ": credentials ended" in lines
        assert not any('"name":"after"' in line for line in lines)
        browser.close()


@pytest.mark.spec("DMN-14")
def test_text_log_lines_cannot_be_forged(tmp_path: Path) -> None:
    with Daemon(tmp_path) as daemon:
        httpx.get(daemon.url + "/x%0a08:46:00%20%20warning%20%20FORGED%1b[31m")
        assert daemon.stop() == 0
    out = daemon.output()
    assert "\x1b[31m" not in out
    assert not any(line.startswith("08:46:00  warning  FORGED") for line in out.splitlines())
    assert "\\x0a08:46:00" in out


@pytest.mark.spec("AUTH-14", "SEC-11")
def test_a_password_reset_revokes_the_tokens_the_account_minted(tmp_path: Path) -> None:
    with Daemon(tmp_path) as daemon:
        email, password = daemon.admin_credentials()
        with httpx.Client(base_url=daemon.url, headers={"Origin": daemon.url}) as http:
            assert (
                http.post("/api/login", json={"email": email, "password": password}).status_code
                == 200
            )
            minted = http.post("/api/tokens", json={"name": "minted", "scopes": ["admin"]}).json()[
                "token"
            ]
        bearer = {"Authorization": f"Bearer {minted}"}
        child = httpx.post(
            daemon.url + "/api/tokens", json={"name": "child", "scopes": ["read"]}, headers=bearer
        ).json()["token"]
        env = {"PRESSLUFT_DATA_DIR": str(daemon.data_dir)}
        reset = run_cli(
            "admin",
            "reset-password",
            "--email",
            email,
            "--password",
            "a brand new password",
            env=env,
        )
        assert reset.returncode == 0, reset.stderr
        assert "2 token(s) revoked" in reset.stdout  # "minted", and "child" that it minted
        for secret in (minted, child):
            assert (
                httpx.get(
                    daemon.url + "/api/me", headers={"Authorization": f"Bearer {secret}"}
                ).status_code
                == 401
            )
        # --keep-tokens leaves them alone.
        with httpx.Client(base_url=daemon.url, headers={"Origin": daemon.url}) as http:
            http.post("/api/login", json={"email": email, "password": "a brand new password"})
            kept = http.post("/api/tokens", json={"name": "kept", "scopes": ["read"]}).json()[
                "token"
            ]
        keep = run_cli(
            "admin",
            "reset-password",
            "--email",
            email,
            "--password",
            "another new password",
            "--keep-tokens",
            env=env,
        )
        assert "0 token(s) revoked" in keep.stdout
        assert (
            httpx.get(
                daemon.url + "/api/me", headers={"Authorization": f"Bearer {kept}"}
            ).status_code
            == 200
        )
