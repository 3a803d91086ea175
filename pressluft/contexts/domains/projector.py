"""Projector of domain.*, certificate.* and acme.* events into `domains`,
`certificates` and `acme_accounts`.

A domain is `pending` while its `domain_add` job runs, `active` once the node
serves it with its certificate, `removing` while `domain_remove` runs (the row
goes when it succeeds). The job holds its domain (JOB-48): when it ends failed or
cancelled, every domain it was working on (the rows naming the job) that still
has the held status is `failed`, with the job's code and message — the DNS
preflight's "create an A record" reaches the operator this way. A renewal holds
its (active) certificate: when it fails, the certificate — still served — gets
`renewal_failed` and the job's error. Every UPDATE is guarded by the states it may
apply to.
"""

from __future__ import annotations

import sqlite3

import msgspec

from pressluft.contexts.domains.events import (
    AcmeAccountRegistered,
    CertificateExpiryNoticed,
    CertificateIssued,
    CertificateRequested,
    DomainActivated,
    DomainAdded,
    DomainPrimaryChanged,
    DomainRemovalRequested,
    DomainRemoved,
    DomainRetried,
)
from pressluft.contexts.nodes import NodeDecommissioned
from pressluft.contexts.sites import EnvironmentDeleted
from pressluft.events.projection import Envelope, Projector, one_row
from pressluft.jobs.projector import on_job_end, released_hold

__all__ = ["DOMAINS_PROJECTOR"]


def _added(conn: sqlite3.Connection, e: DomainAdded, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO domains (id, environment_id, site_id, node_id, hostname, unicode_hostname,"
        " status, tls_status, is_primary, twin_of, hsts, job_id, created_at, updated_at,"
        " state_version) VALUES (?, ?, ?, ?, ?, ?, 'pending', 'pending', 0, ?, ?, ?, ?, ?, ?)",
        (
            e.domain_id,
            e.environment_id,
            e.site_id,
            e.node_id,
            e.hostname,
            e.unicode_hostname,
            e.twin_of,
            int(e.hsts),
            e.job_id,
            env.recorded_at,
            env.recorded_at,
            env.stream_version,
        ),
    )


def _retried(conn: sqlite3.Connection, e: DomainRetried, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE domains SET status = 'pending', tls_status = CASE WHEN certificate_id IS NULL"
        " THEN 'pending' ELSE tls_status END, job_id = ?, hsts = ?, last_error_code = NULL,"
        " last_error = NULL, updated_at = ?, state_version = ? WHERE id = ? AND status = 'failed'",
        (e.job_id, int(e.hsts), env.recorded_at, env.stream_version, e.domain_id),
    )
    one_row(cursor, f"retried domain {e.domain_id}")


def _activated(conn: sqlite3.Connection, e: DomainActivated, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE domains SET status = 'active', tls_status = 'active', certificate_id = ?,"
        " last_error_code = NULL, last_error = NULL, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status IN ('pending', 'active')",
        (e.certificate_id, env.recorded_at, env.stream_version, e.domain_id),
    )
    one_row(cursor, f"activated domain {e.domain_id}")


def _primary(conn: sqlite3.Connection, e: DomainPrimaryChanged, env: Envelope) -> None:
    conn.execute(
        "UPDATE domains SET is_primary = 0, updated_at = ? WHERE environment_id = ?"
        " AND is_primary = 1",
        (env.recorded_at, e.environment_id),
    )
    if e.domain_id is not None:
        cursor = conn.execute(
            "UPDATE domains SET is_primary = 1, updated_at = ? WHERE id = ?"
            " AND environment_id = ? AND status IN ('pending', 'active')",
            (env.recorded_at, e.domain_id, e.environment_id),
        )
        one_row(cursor, f"primary domain {e.domain_id}")


def _removal_requested(conn: sqlite3.Connection, e: DomainRemovalRequested, env: Envelope) -> None:
    cursor = conn.execute(
        "UPDATE domains SET status = 'removing', job_id = ?, updated_at = ?, state_version = ?"
        " WHERE id = ? AND status IN ('active', 'failed')",
        (e.job_id, env.recorded_at, env.stream_version, e.domain_id),
    )
    one_row(cursor, f"removing domain {e.domain_id}")


def _removed(conn: sqlite3.Connection, e: DomainRemoved, env: Envelope) -> None:
    cursor = conn.execute(
        "DELETE FROM domains WHERE id = ? AND status = 'removing' RETURNING certificate_id",
        (e.domain_id,),
    )
    row = cursor.fetchone()
    if row is None:
        one_row(cursor, f"removed domain {e.domain_id}")
        return
    # A certificate no domain serves any more is no longer renewed.
    conn.execute(
        "DELETE FROM certificates WHERE id = ? AND kind = 'domain'"
        " AND NOT EXISTS (SELECT 1 FROM domains WHERE certificate_id = ?)",
        (row[0], row[0]),
    )


def _issued(conn: sqlite3.Connection, e: CertificateIssued, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO certificates (id, node_id, environment_id, kind, names_json, status, issuer,"
        " serial, not_before, not_after, renew_at, key_secret_id, chain_pem, last_attempt_at,"
        " renewal_failed, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET status = 'active', names_json = excluded.names_json,"
        " issuer = excluded.issuer, serial = excluded.serial, not_before = excluded.not_before,"
        " not_after = excluded.not_after, renew_at = excluded.renew_at,"
        " key_secret_id = excluded.key_secret_id, chain_pem = excluded.chain_pem,"
        " last_attempt_at = excluded.last_attempt_at, last_error_code = NULL,"
        " last_error = NULL, renewal_failed = 0, updated_at = excluded.updated_at",
        (
            e.certificate_id,
            e.node_id,
            e.environment_id,
            e.kind,
            msgspec.json.encode(e.names).decode(),
            e.issuer,
            e.serial,
            e.not_before,
            e.not_after,
            e.renew_at,
            e.key_secret_id,
            e.chain_pem,
            env.recorded_at,
            env.recorded_at,
            env.recorded_at,
        ),
    )


def _requested(conn: sqlite3.Connection, e: CertificateRequested, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO certificates (id, node_id, environment_id, kind, names_json, status,"
        " renewal_failed, created_at, updated_at) VALUES (?, ?, NULL, ?, ?, 'pending', 0, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET status = CASE status WHEN 'failed' THEN 'pending'"
        " ELSE status END, names_json = CASE status WHEN 'active' THEN names_json"
        " ELSE excluded.names_json END, updated_at = excluded.updated_at",
        (
            e.certificate_id,
            e.node_id,
            e.kind,
            msgspec.json.encode(e.names).decode(),
            env.recorded_at,
            env.recorded_at,
        ),
    )


def _expiring(conn: sqlite3.Connection, e: CertificateExpiryNoticed, env: Envelope) -> None:
    conn.execute(
        "UPDATE certificates SET expiring_announced_for = ? WHERE id = ?",
        (e.not_after, e.certificate_id),
    )


def _node_decommissioned(conn: sqlite3.Connection, e: NodeDecommissioned, env: Envelope) -> None:
    """A decommissioned node serves nothing: its preview wildcard is no longer renewed."""
    conn.execute("DELETE FROM certificates WHERE node_id = ? AND kind = 'preview'", (e.node_id,))


def _account(conn: sqlite3.Connection, e: AcmeAccountRegistered, env: Envelope) -> None:
    conn.execute(
        "INSERT INTO acme_accounts (directory_url, account_uri, key_secret_id, created_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (directory_url) DO UPDATE SET"
        " account_uri = excluded.account_uri, key_secret_id = excluded.key_secret_id",
        (e.directory_url, e.account_uri, e.key_secret_id, env.recorded_at),
    )


def _environment_deleted(conn: sqlite3.Connection, e: EnvironmentDeleted, env: Envelope) -> None:
    """Its deletion removed its domains' server blocks from the node (site_environment's
    delete tasks): its domains and their certificates go too (the hostnames are free)."""
    conn.execute("DELETE FROM domains WHERE environment_id = ?", (e.environment_id,))
    conn.execute(
        "DELETE FROM certificates WHERE environment_id = ? AND kind = 'domain'",
        (e.environment_id,),
    )


def _released(conn: sqlite3.Connection, job_id: str, env: Envelope) -> None:
    """A domain job ended failed or cancelled: the domains it worked on that still
    have the held status are `failed`, with the job's code and message; a renewal's
    certificate (still served) has `renewal_failed`; a certificate never issued
    (a preview wildcard's first order) is `failed`."""
    (message,) = conn.execute(
        "SELECT coalesce(error_message, '') FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    renewal = released_hold(conn, job_id, "certificate")
    if renewal is not None:
        conn.execute(
            "UPDATE certificates SET renewal_failed = (status = 'active'),"
            " status = CASE status WHEN 'pending' THEN 'failed' ELSE status END,"
            " last_attempt_at = ?, last_error_code = ?, last_error = ?, updated_at = ?"
            " WHERE id = ? AND status = ?",
            (env.recorded_at, renewal.error_code, message, env.recorded_at, renewal.id,
             renewal.status),
        )  # fmt: skip
        return
    held = released_hold(conn, job_id, "domain")
    if held is None:
        return
    conn.execute(
        "UPDATE domains SET status = 'failed', tls_status = CASE WHEN status = 'pending'"
        " AND certificate_id IS NULL THEN 'failed' ELSE tls_status END,"
        " last_error_code = ?, last_error = ?, updated_at = ?"
        " WHERE job_id = ? AND status = ?",
        (held.error_code, message, env.recorded_at, job_id, held.status),
    )


DOMAINS_PROJECTOR = Projector(
    "domains",
    ("domains", "certificates", "acme_accounts"),
    {
        DomainAdded: _added,
        DomainRetried: _retried,
        DomainActivated: _activated,
        DomainPrimaryChanged: _primary,
        DomainRemovalRequested: _removal_requested,
        DomainRemoved: _removed,
        CertificateIssued: _issued,
        CertificateRequested: _requested,
        CertificateExpiryNoticed: _expiring,
        NodeDecommissioned: _node_decommissioned,
        AcmeAccountRegistered: _account,
        EnvironmentDeleted: _environment_deleted,
        **on_job_end(_released),
    },
)
