"""What the domain jobs read through their worker port: the domains a job works
on with their environment's URL and node (`DOMAIN_JOB`), and the control plane's
ACME account at a directory (`ACME_ACCOUNT`)."""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.jobs.workers import Loader

__all__ = [
    "ACME_ACCOUNT",
    "CERTIFICATE_JOB",
    "DOMAIN_JOB",
    "PREVIEW_JOB",
    "AcmeAccountRow",
    "CertificateJob",
    "DomainJob",
    "DomainRow",
    "PreviewDonor",
    "PreviewJob",
]


class DomainRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    hostname: str
    status: str
    is_primary: bool
    twin_of: str | None
    hsts: bool
    certificate_id: str | None


class DomainJob(msgspec.Struct, frozen=True, kw_only=True):
    """The environment's domains (all of them: server blocks redirect to the
    primary) and the ones this job works on."""

    environment_id: str
    site_id: str
    node_id: str
    preview_url: str
    #: The node's public address (what DNS must point at); lab nodes: 127.0.0.1.
    public_address: str | None
    #: A lab node's published ports (`http`, `https`), else None.
    ports: dict[str, int] | None
    provider: str
    domains: list[DomainRow]
    job_domain_ids: list[str]


def _domain_job(conn: sqlite3.Connection, job_id: str) -> DomainJob | None:
    row = conn.execute(
        "SELECT e.id, e.site_id, e.node_id, e.preview_url, n.public_ip, n.host, n.ports_json,"
        " n.provider FROM jobs j JOIN environments e ON e.id = j.environment_id"
        " JOIN nodes n ON n.id = e.node_id WHERE j.id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    environment_id, site_id, node_id, url, public_ip, host, ports, provider = row
    domains = [
        DomainRow(
            id=r[0],
            hostname=r[1],
            status=r[2],
            is_primary=bool(r[3]),
            twin_of=r[4],
            hsts=bool(r[5]),
            certificate_id=r[6],
        )
        for r in conn.execute(
            "SELECT id, hostname, status, is_primary, twin_of, hsts, certificate_id FROM domains"
            " WHERE environment_id = ? ORDER BY hostname",
            (environment_id,),
        )
    ]
    mine = [
        str(r[0])
        for r in conn.execute(
            "SELECT id FROM domains WHERE job_id = ? ORDER BY twin_of IS NOT NULL, hostname",
            (job_id,),
        )
    ]
    lab = provider == "docker"
    return DomainJob(
        environment_id=environment_id,
        site_id=site_id,
        node_id=node_id,
        preview_url=url,
        public_address="127.0.0.1" if lab else (public_ip or host),
        ports=None if ports is None else msgspec.json.decode(ports),
        provider=provider,
        domains=domains,
        job_domain_ids=mine,
    )


#: The domains of a job's environment and the ones it works on (None: no environment).
DOMAIN_JOB: Loader[str, DomainJob | None] = Loader("domain_job", _domain_job)


class AcmeAccountRow(msgspec.Struct, frozen=True, kw_only=True):
    account_uri: str
    key_secret_id: str


def _acme_account(conn: sqlite3.Connection, directory_url: str) -> AcmeAccountRow | None:
    row = conn.execute(
        "SELECT account_uri, key_secret_id FROM acme_accounts WHERE directory_url = ?",
        (directory_url,),
    ).fetchone()
    return None if row is None else AcmeAccountRow(account_uri=row[0], key_secret_id=row[1])


#: The control plane's account at an ACME directory (None: not registered yet).
ACME_ACCOUNT: Loader[str, AcmeAccountRow | None] = Loader("acme_account", _acme_account)


class CertificateJob(msgspec.Struct, frozen=True, kw_only=True):
    """A certificate a renewal works on."""

    id: str
    kind: str
    status: str
    names: list[str]
    environment_id: str | None
    node_id: str
    key_secret_id: str | None


def _certificate_job(conn: sqlite3.Connection, certificate_id: str) -> CertificateJob | None:
    row = conn.execute(
        "SELECT id, kind, status, names_json, environment_id, node_id, key_secret_id"
        " FROM certificates WHERE id = ?",
        (certificate_id,),
    ).fetchone()
    if row is None:
        return None
    return CertificateJob(
        id=row[0],
        kind=row[1],
        status=row[2],
        names=msgspec.json.decode(row[3], type=list[str]),
        environment_id=row[4],
        node_id=row[5],
        key_secret_id=row[6],
    )


#: A certificate as its renewal sees it (None: gone).
CERTIFICATE_JOB: Loader[str, CertificateJob | None] = Loader("certificate_job", _certificate_job)


class PreviewDonor(msgspec.Struct, frozen=True, kw_only=True):
    """Another node's served preview wildcard (installed as it is when it covers the
    same names and is not due: CAs limit duplicate certificates per week)."""

    node_id: str
    names: list[str]
    issuer: str | None
    serial: str
    not_before: str
    not_after: str
    renew_at: str
    key_secret_id: str
    chain_pem: str


class PreviewJob(msgspec.Struct, frozen=True, kw_only=True):
    """What a node's `preview_certificate` job works with."""

    node_id: str
    #: A lab node's published ports (`http`, `https`), else None.
    ports: dict[str, int] | None
    #: Where the node serves HTTPS (lab nodes: loopback).
    tls_host: str
    preview_domain: str | None
    dns01_provider: str | None
    dns01_credentials_ref: str | None
    #: The node's preview certificate row (it exists: the request recorded it).
    certificate_id: str | None
    certificate_status: str | None
    key_secret_id: str | None
    #: The node's active environments (each has a preview host under the wildcard):
    #: id → its preview URL.
    environments: dict[str, str]
    donors: list[PreviewDonor]


def _preview_job(conn: sqlite3.Connection, node_id: str) -> PreviewJob | None:
    node = conn.execute(
        "SELECT provider, public_ip, host, ports_json FROM nodes WHERE id = ?"
        " AND status != 'decommissioned'",
        (node_id,),
    ).fetchone()
    if node is None:
        return None
    provider, public_ip, host, ports = node
    settings = conn.execute(
        "SELECT preview_domain, dns01_provider, dns01_credentials_ref FROM settings WHERE id = 1"
    ).fetchone() or (None, None, None)
    cert = conn.execute(
        "SELECT id, status, key_secret_id FROM certificates WHERE node_id = ? AND kind = 'preview'",
        (node_id,),
    ).fetchone() or (None, None, None)
    environments = {
        str(r[0]): str(r[1])
        for r in conn.execute(
            "SELECT id, preview_url FROM environments WHERE node_id = ? AND status = 'active'"
            " ORDER BY id",
            (node_id,),
        )
    }
    donors = [
        PreviewDonor(
            node_id=r[0],
            names=msgspec.json.decode(r[1], type=list[str]),
            issuer=r[2],
            serial=r[3],
            not_before=r[4],
            not_after=r[5],
            renew_at=r[6],
            key_secret_id=r[7],
            chain_pem=r[8],
        )
        for r in conn.execute(
            "SELECT node_id, names_json, issuer, serial, not_before, not_after, renew_at,"
            " key_secret_id, chain_pem FROM certificates WHERE kind = 'preview'"
            " AND status = 'active' AND node_id != ? ORDER BY not_after DESC",
            (node_id,),
        )
    ]
    lab = provider == "docker"
    return PreviewJob(
        node_id=node_id,
        ports=None if ports is None else msgspec.json.decode(ports),
        tls_host="127.0.0.1" if lab else (public_ip or host),
        preview_domain=settings[0],
        dns01_provider=settings[1],
        dns01_credentials_ref=settings[2],
        certificate_id=cert[0],
        certificate_status=cert[1],
        key_secret_id=cert[2],
        environments=environments,
        donors=donors,
    )


#: A node's preview wildcard job's inputs (None: the node is gone).
PREVIEW_JOB: Loader[str, PreviewJob | None] = Loader("preview_job", _preview_job)
