"""Daemon configuration: the one table of settings.

`SETTINGS` lists every knob once (name, environment variable, default, help).
It generates the CLI options of `pressluft dev`/`serve`, the output of
`pressluft config`, and the table in `specs/daemon.md` (a test fails when the
two differ). Precedence: command-line option > `PRESSLUFT_*` variable > default.
`dev` and `serve` differ only in a few defaults (`dev_default`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

__all__ = [
    "SETTINGS",
    "Config",
    "ConfigError",
    "Mode",
    "Setting",
    "parse_docker_host",
    "resolve",
    "settings_markdown",
]

Mode = Literal["dev", "serve"]


class ConfigError(ValueError):
    """A setting has a value that cannot be used."""


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        # ASCII digits only: int() also reads "4_0" as 40, and other scripts' digits.
        if not re.fullmatch(r"[ \t]*-?[0-9]{1,19}[ \t]*", raw):
            raise ConfigError(f"expected an integer, got {raw!r}")
        value = int(raw)
        if not low <= value <= high:
            raise ConfigError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        for option in options:
            if value.lower() == option.lower():
                return option
        raise ConfigError(f"must be one of {', '.join(options)}, got {raw!r}")

    return parse


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"expected true or false, got {raw!r}")


def _optional_path(raw: str) -> str | None:
    value = raw.strip()
    return value or None


def _host_list(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    for host in hosts:
        if not all(c.isalnum() or c in ".-:[]" for c in host):
            raise ConfigError(f"not a host name: {host!r}")
    return hosts


def parse_docker_host(raw: str) -> str:
    """A `docker_host` value (the setting, `pressluft doctor --docker-host`)."""
    value = raw.strip()
    if value in ("", "auto") or value.startswith(("unix://", "tcp://", "ssh://")):
        return value
    raise ConfigError(f"expected auto, empty, or a unix://, tcp:// or ssh:// URL, got {raw!r}")


def _image(raw: str) -> str:
    value = raw.strip()
    if value and not all(c.isalnum() or c in "._-:/@" for c in value):
        raise ConfigError(f"not an image reference: {raw!r}")
    return value


def _wordpress_source(raw: str) -> str:
    value = raw.strip()
    if not value:
        return value
    shaped = value.startswith("https://") or (value.startswith("/") and ".." not in value)
    if shaped and all(c.isprintable() and not c.isspace() for c in value):
        return value
    raise ConfigError(
        f"expected empty, an https:// URL or an absolute path on the node, got {raw!r}"
    )


def _https_url(raw: str) -> str:
    value = raw.strip()
    if value.startswith("https://") and all(c.isprintable() and not c.isspace() for c in value):
        return value
    raise ConfigError(f"expected an https:// URL, got {raw!r}")


def _absolute_path_or_empty(raw: str) -> str:
    value = raw.strip()
    if value and not value.startswith("/"):
        raise ConfigError(f"expected empty or an absolute path, got {raw!r}")
    return value


def _resolver(raw: str) -> str:
    value = raw.strip()
    if not value:
        return value
    host, _, port = value.rpartition(":")
    if host and port.isdigit() and 0 < int(port) < 65536:
        return value
    raise ConfigError(f"expected empty or HOST:PORT of a DNS server, got {raw!r}")


def _email(raw: str) -> str:
    value = raw.strip()
    if value and (value.count("@") != 1 or any(c.isspace() for c in value)):
        raise ConfigError(f"expected empty or an e-mail address, got {raw!r}")
    return value


def _text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ConfigError("must not be empty")
    return value


@dataclass(frozen=True)
class Setting:
    """One configuration knob."""

    name: str
    default: str
    help: str
    parse: Callable[[str], Any]
    dev_default: str | None = None
    metavar: str = "VALUE"
    #: A switch: `--option` alone turns it on (the environment takes true/false).
    flag: bool = False

    @property
    def env(self) -> str:
        return "PRESSLUFT_" + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    def default_for(self, mode: Mode) -> str:
        if mode == "dev" and self.dev_default is not None:
            return self.dev_default
        return self.default


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        "/var/lib/pressluft",
        "Directory for the database, secrets and job artifacts.",
        _text,
        dev_default="./.pressluft",
        metavar="PATH",
    ),
    Setting(
        "host",
        "127.0.0.1",
        "Address to listen on. A non-loopback address needs TLS or `--insecure-http`.",
        _text,
        metavar="ADDR",
    ),
    Setting("port", "8080", "TCP port to listen on.", _int_between(1, 65535), metavar="PORT"),
    Setting(
        "allowed_hosts",
        "",
        "Extra host names requests may be addressed to (comma-separated, e.g. behind a "
        "reverse proxy). Bound to loopback, only loopback names are answered otherwise.",
        _host_list,
        metavar="HOSTS",
    ),
    Setting(
        "tls_cert_file",
        "",
        "PEM certificate (chain) to serve HTTPS with; needs `tls_key_file`.",
        _optional_path,
        metavar="PATH",
    ),
    Setting(
        "tls_key_file",
        "",
        "PEM private key for `tls_cert_file`.",
        _optional_path,
        metavar="PATH",
    ),
    Setting(
        "insecure_http",
        "false",
        "Allow plain HTTP on a non-loopback address (credentials travel in clear text).",
        _flag,
        metavar="BOOL",
        flag=True,
    ),
    Setting(
        "session_ttl_seconds",
        "86400",
        "Lifetime of a dashboard login session.",
        _int_between(60, 90 * 86400),
        metavar="SECONDS",
    ),
    Setting(
        "login_attempts_per_minute",
        "10",
        "Login attempts allowed per client address and per account in any minute.",
        _int_between(1, 10_000),
        metavar="N",
    ),
    Setting(
        "log_format",
        "json",
        "Log line format: `json` (one object per line) or `text`.",
        _choice("json", "text"),
        dev_default="text",
        metavar="FORMAT",
    ),
    Setting(
        "log_level",
        "info",
        "Lowest log level written: debug, info, warning or error.",
        _choice("debug", "info", "warning", "error"),
        metavar="LEVEL",
    ),
    Setting(
        "db_synchronous",
        "FULL",
        "SQLite `synchronous` mode. FULL makes every acknowledged write survive a power cut.",
        _choice("FULL", "EXTRA", "NORMAL"),
        metavar="MODE",
    ),
    Setting(
        "db_busy_timeout_ms",
        "5000",
        "How long a connection waits for a lock held by another process (ms).",
        _int_between(0, 600_000),
        metavar="MS",
    ),
    Setting(
        "db_readers",
        "4",
        "Number of read-only database connections.",
        _int_between(1, 64),
        metavar="N",
    ),
    Setting(
        "write_batch_max",
        "512",
        "Most commands committed together in one group-commit transaction.",
        _int_between(1, 10_000),
        metavar="N",
    ),
    Setting(
        "cpu_affinity",
        "colocate",
        "`colocate`: the event loop and database threads share one CPU (a thread "
        "hand-off costs ~26 µs instead of ~110 µs on VMs); `off`: leave it to the OS.",
        _choice("colocate", "off"),
        metavar="MODE",
    ),
    Setting(
        "workers",
        "4",
        "Most jobs running at the same time (the worker pool's slots).",
        _int_between(1, 256),
        metavar="N",
    ),
    Setting(
        "node_site_jobs",
        "2",
        "Most site jobs (creating, cloning, deleting sites and environments) running "
        "at the same time on one node; a node's own jobs (provisioning, checks) are "
        "not counted.",
        _int_between(1, 64),
        metavar="N",
    ),
    Setting(
        "lease_seconds",
        "30",
        "Lease of a running job attempt; the worker renews it every third of this. "
        "An attempt whose lease ran out is rescued (its worker is gone).",
        _int_between(3, 3600),
        metavar="SECONDS",
    ),
    Setting(
        "job_log_retention_days",
        "30",
        "Days the output lines of ended jobs are kept (job rows are kept for good).",
        _int_between(1, 3650),
        metavar="DAYS",
    ),
    Setting(
        "idempotency_ttl_seconds",
        "86400",
        "How long an `Idempotency-Key` and its recorded response are kept.",
        _int_between(60, 30 * 86400),
        metavar="SECONDS",
    ),
    Setting(
        "sse_keepalive_seconds",
        "15",
        "Seconds between keep-alive comments on idle event streams.",
        _int_between(1, 300),
        metavar="SECONDS",
    ),
    Setting(
        "shutdown_timeout_seconds",
        "10",
        "Grace period for in-flight requests on shutdown.",
        _int_between(0, 600),
        metavar="SECONDS",
    ),
    Setting(
        "docker_host",
        "",
        "Docker engine for `docker` lab nodes (e.g. `unix:///var/run/docker.sock`). "
        "`auto`: `DOCKER_HOST`, else the default socket when present; empty: no "
        "docker provider (registering a docker node is refused).",
        parse_docker_host,
        dev_default="auto",
        metavar="URL",
    ),
    Setting(
        "node_image",
        "",
        "Image of `docker` lab nodes; empty: the one `pressluft node-image build` "
        "makes for this version.",
        _image,
        metavar="IMAGE",
    ),
    Setting(
        "lab_systemd",
        "false",
        "Let `docker` lab nodes run systemd as PID 1 (`init: systemd`). Such a container "
        "gets every capability but CAP_SYS_RESOURCE, no seccomp filter and the host's "
        "cgroup tree writable: whatever runs in it can become root on this machine. Labs only.",
        _flag,
        metavar="BOOL",
        flag=True,
    ),
    Setting(
        "wordpress_source",
        "",
        "Where new sites get WordPress core: an https URL of a release tarball (the node "
        "downloads it) or a directory on the node. Empty: lab nodes use the copy baked into "
        "the node image (`/usr/share/wordpress`), other nodes the official latest release.",
        _wordpress_source,
        metavar="URL|PATH",
    ),
    Setting(
        "acme_directory",
        "https://acme-v02.api.letsencrypt.org/directory",
        "The ACME CA's directory URL the control plane gets certificates from (custom "
        "domains, preview wildcards).",
        _https_url,
        metavar="URL",
    ),
    Setting(
        "acme_ca_bundle",
        "",
        "CA certificates (PEM file) to trust for the ACME directory's own HTTPS; empty: "
        "the system's. For a private or test CA.",
        _absolute_path_or_empty,
        metavar="PATH",
    ),
    Setting(
        "acme_email",
        "",
        "Contact address of the control plane's ACME account (the CA's notices); empty: none.",
        _email,
        metavar="EMAIL",
    ),
    Setting(
        "acme_caa_identity",
        "letsencrypt.org",
        "The CA's CAA issuer domain: a domain check fails when the name's CAA records "
        "do not allow it.",
        _text,
        metavar="DOMAIN",
    ),
    Setting(
        "certificate_scan_seconds",
        "600",
        "How often the control plane looks for certificates due for renewal (seconds).",
        _int_between(5, 86400),
        metavar="SECONDS",
    ),
    Setting(
        "restore_drill_hours",
        "168",
        "How often each production environment's latest backup is proven by a restore"
        " drill (hours).",
        _int_between(1, 8760),
        metavar="HOURS",
    ),
    Setting(
        "releases_keep",
        "5",
        "How many releases of an environment stay on its node (the newest; the one"
        " served is always kept): older ones are pruned after a release change.",
        _int_between(2, 100),
        metavar="COUNT",
    ),
    Setting(
        "dns_resolver",
        "",
        "The DNS server (HOST:PORT) domain checks ask; empty: the system's resolver.",
        _resolver,
        metavar="HOST:PORT",
    ),
    Setting(
        "max_body_bytes",
        "1048576",
        "Largest request body accepted (bytes).",
        _int_between(1024, 1 << 30),
        metavar="BYTES",
    ),
)


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The resolved configuration of one daemon or CLI run."""

    mode: Mode
    data_dir: Path
    host: str
    port: int
    allowed_hosts: tuple[str, ...]
    tls_cert_file: str | None
    tls_key_file: str | None
    insecure_http: bool
    session_ttl_seconds: int
    login_attempts_per_minute: int
    log_format: str
    log_level: str
    db_synchronous: str
    db_busy_timeout_ms: int
    db_readers: int
    write_batch_max: int
    cpu_affinity: str
    workers: int
    node_site_jobs: int
    lease_seconds: int
    job_log_retention_days: int
    idempotency_ttl_seconds: int
    sse_keepalive_seconds: int
    shutdown_timeout_seconds: int
    docker_host: str
    node_image: str
    lab_systemd: bool
    wordpress_source: str
    acme_directory: str
    acme_ca_bundle: str
    acme_email: str
    acme_caa_identity: str
    certificate_scan_seconds: int
    restore_drill_hours: int
    releases_keep: int
    dns_resolver: str
    max_body_bytes: int

    @property
    def database_path(self) -> Path:
        return self.data_dir / "pressluft.db"

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None


def resolve(
    mode: Mode,
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Config, dict[str, str]]:
    """Resolve every setting; returns the config and where each value came from."""
    overrides = overrides or {}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        raw = overrides.get(setting.name)
        source = "option " + setting.option
        if raw is None:
            raw = environ.get(setting.env)
            source = "env " + setting.env
        if raw is None:
            raw = setting.default_for(mode)
            source = "default"
        try:
            values[setting.name] = setting.parse(raw)
        except ConfigError as exc:
            where = "default" if source == "default" else source
            raise ConfigError(f"{setting.name} ({where}): {exc}") from None
        sources[setting.name] = source
    values["data_dir"] = Path(values["data_dir"]).expanduser().resolve()
    return Config(mode=mode, **values), sources


def settings_markdown() -> str:
    """The settings table as Markdown, exactly as it appears in `specs/daemon.md`."""
    lines = [
        "| Setting | Option | Environment | Default (`serve`) | Default (`dev`) | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        serve, dev = (f"`{v}`" if v else "(none)" for v in (s.default, s.default_for("dev")))
        lines.append(f"| `{s.name}` | `{s.option}` | `{s.env}` | {serve} | {dev} | {s.help} |")
    return "\n".join(lines) + "\n"
