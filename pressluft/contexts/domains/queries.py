"""Views of domains and certificates (one read transaction each): what the API
and the site page show — a domain with its certificate, the inventory of
certificates with their renewal and expiry state."""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.clock import parse_ts
from pressluft.contexts.domains.commands import EXPIRY_WARNING, DomainNotFound
from pressluft.contexts.sites import get_environment
from pressluft.ids import is_uuid

__all__ = [
    "EXPIRY_WARNING",
    "CertificateView",
    "DomainError",
    "DomainView",
    "get_domain",
    "list_certificates",
    "list_domains",
]

#: A certificate this close to its expiry is shown as expiring (banner, API).


class DomainError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class CertificateView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: str
    names: list[str]
    issuer: str | None
    serial: str | None
    not_before: str | None
    not_after: str | None
    renew_at: str | None
    status: str
    expiring: bool
    renewal_failed: bool
    last_attempt_at: str | None
    last_error: DomainError | None
    environment_id: str | None
    node_id: str


class DomainView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    environment_id: str
    site_id: str
    hostname: str
    unicode_hostname: str
    status: str
    tls_status: str
    is_primary: bool
    redirect_to: str | None
    hsts: bool
    last_error: DomainError | None
    certificate: CertificateView | None
    created_at: str
    updated_at: str
    state_version: int
    actions: list[str]


_CERT_COLUMNS = (
    "c.id, c.names_json, c.issuer, c.serial, c.not_before, c.not_after, c.renew_at, c.status,"
    " c.renewal_failed, c.last_attempt_at, c.last_error_code, c.last_error, c.environment_id,"
    " c.node_id, c.kind"
)


def _certificate(row: tuple[object, ...], now: str) -> CertificateView:
    (cid, names, issuer, serial, not_before, not_after, renew_at, status, renewal_failed,
     attempted, error_code, error, environment_id, node_id, kind) = row  # fmt: skip
    expiring = (
        status == "active"
        and not_after is not None
        and parse_ts(str(not_after)) - parse_ts(now) < EXPIRY_WARNING
    )
    return CertificateView(
        id=str(cid),
        kind=str(kind),
        names=msgspec.json.decode(str(names), type=list[str]),
        issuer=None if issuer is None else str(issuer),
        serial=None if serial is None else str(serial),
        not_before=None if not_before is None else str(not_before),
        not_after=None if not_after is None else str(not_after),
        renew_at=None if renew_at is None else str(renew_at),
        status=str(status),
        expiring=expiring,
        renewal_failed=bool(renewal_failed),
        last_attempt_at=None if attempted is None else str(attempted),
        last_error=None
        if error_code is None
        else DomainError(code=str(error_code), message=str(error or "")),
        environment_id=None if environment_id is None else str(environment_id),
        node_id=str(node_id),
    )


def _actions(status: str, primary: bool) -> list[str]:
    actions = []
    if status == "active" and not primary:
        actions.append("make_primary")
    if status in ("active", "failed"):
        actions.append("remove")
    if status == "failed":
        actions.append("retry")
    return actions


_DOMAIN_SELECT = (
    "SELECT d.id, d.environment_id, d.site_id, d.hostname, d.unicode_hostname, d.status,"
    " d.tls_status, d.is_primary, d.twin_of, d.hsts, d.last_error_code, d.last_error,"
    " d.created_at, d.updated_at, d.state_version,"
    " (SELECT p.hostname FROM domains p WHERE p.environment_id = d.environment_id"
    "  AND p.is_primary = 1 AND p.id != d.id), "
    f"{_CERT_COLUMNS} FROM domains d LEFT JOIN certificates c ON c.id = d.certificate_id"
)


def _domain(row: tuple[object, ...], now: str) -> DomainView:
    (did, env_id, site_id, hostname, unicode_name, status, tls, primary, twin_of, hsts,
     error_code, error, created, updated, version, primary_host) = row[:16]  # fmt: skip
    cert = None if row[16] is None else _certificate(row[16:], now)
    redirect = None if primary else (twin_of or primary_host)
    return DomainView(
        id=str(did),
        environment_id=str(env_id),
        site_id=str(site_id),
        hostname=str(hostname),
        unicode_hostname=str(unicode_name),
        status=str(status),
        tls_status=str(tls),
        is_primary=bool(primary),
        redirect_to=None if redirect is None else str(redirect),
        hsts=bool(hsts),
        last_error=None
        if error_code is None
        else DomainError(code=str(error_code), message=str(error or "")),
        certificate=cert,
        created_at=str(created),
        updated_at=str(updated),
        state_version=int(str(version)),
        actions=_actions(str(status), bool(primary)),
    )


def list_domains(conn: sqlite3.Connection, environment_id: str, now: str) -> list[DomainView]:
    """The environment's domains, primary first, then by hostname (404 without it)."""
    get_environment(conn, environment_id)
    rows = conn.execute(
        _DOMAIN_SELECT + " WHERE d.environment_id = ? ORDER BY d.is_primary DESC, d.hostname",
        (environment_id,),
    ).fetchall()
    return [_domain(r, now) for r in rows]


def get_domain(conn: sqlite3.Connection, domain_id: str, now: str) -> DomainView:
    row = None
    if is_uuid(domain_id):
        row = conn.execute(_DOMAIN_SELECT + " WHERE d.id = ?", (domain_id,)).fetchone()
    if row is None:
        raise DomainNotFound(f"no domain {domain_id}")
    return _domain(row, now)


def list_certificates(conn: sqlite3.Connection, now: str) -> list[CertificateView]:
    """Every certificate, soonest expiry first (never issued last)."""
    rows = conn.execute(
        f"SELECT {_CERT_COLUMNS} FROM certificates c"
        " ORDER BY c.not_after IS NULL, c.not_after, c.id"
    ).fetchall()
    return [_certificate(r, now) for r in rows]


class Inventory(msgspec.Struct, frozen=True, kw_only=True):
    """The certificates page: every certificate, with the names of its node and
    environment, and the preview domain set now."""

    certificates: list[CertificateView]
    nodes: dict[str, str]
    environments: dict[str, str]
    preview_domain: str | None


def certificate_inventory(conn: sqlite3.Connection, now: str) -> Inventory:
    environments = {
        str(r[0]): f"{r[1]} · {r[2]}"
        for r in conn.execute(
            "SELECT e.id, s.name, e.name FROM environments e JOIN sites s ON s.id = e.site_id"
        )
    }
    (preview,) = conn.execute(
        "SELECT (SELECT preview_domain FROM settings WHERE id = 1)"
    ).fetchone()
    return Inventory(
        certificates=list_certificates(conn, now),
        nodes={str(r[0]): str(r[1]) for r in conn.execute("SELECT id, name FROM nodes")},
        environments=environments,
        preview_domain=preview,
    )
