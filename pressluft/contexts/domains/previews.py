"""The preview wildcard of each node: which names it covers, when a node needs one,
and the command that asks for it.

It covers `*.{d}` for the settings' preview domain and for every older preview
domain an active environment's https URL on the node still uses (a preview URL
never changes). A node needs its `preview_certificate` job when it is active,
DNS-01 is set up with a provider the control plane has an adapter for, it has
names to cover, no such job is queued or running, and its wildcard is missing,
covers other names, is past its renewal time, or failed more than `RETRY_FAILED`
ago (a CA counts failed validations). The certificate scan asks for every node
that needs it; an operator asks for one node now. Asking records
`certificate.requested` (the row `pending` unless it is served already) and
queues the job, holding the row, in one transaction. See specs/domains.md.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from datetime import timedelta
from urllib.parse import urlsplit

import msgspec

from pressluft.clock import format_ts, parse_ts
from pressluft.contexts.domains.commands import JobAccepted
from pressluft.contexts.domains.events import CertificateRequested
from pressluft.contexts.domains.probes import DNS01_PROVIDERS
from pressluft.db import WriteTx
from pressluft.errors import Conflict, NotFound
from pressluft.events import Meta, append
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.queue import active_unique
from pressluft.jobs.workers import JobWorker, NoArgs, enqueue_job

__all__ = [
    "RETRY_FAILED",
    "PreviewNotConfigured",
    "preview_domains",
    "preview_names",
    "queue_due_previews",
    "request_preview_command",
]

#: After a failed order, the scan waits this long before the next attempt.
RETRY_FAILED = timedelta(hours=1)


class PreviewNotConfigured(Conflict):
    pass


#: An environment's preview host under a preview domain: `{uuid8}.{domain}`.
_PREVIEW_HOST = re.compile(r"^[0-9a-f]{8}\.(?P<domain>[a-z0-9.-]+)$")


def preview_domains(current: str | None, urls: Iterable[str]) -> list[str]:
    """The preview domains a node's wildcard covers: the settings' one and those of
    its environments' https preview URLs (sorted)."""
    domains = {current} if current else set()
    for url in urls:
        parts = urlsplit(url)
        match = _PREVIEW_HOST.match(parts.hostname or "")
        if parts.scheme == "https" and match and not match["domain"].endswith("localhost"):
            domains.add(match["domain"])
    return sorted(domains)


def preview_names(domains: Iterable[str]) -> list[str]:
    return [f"*.{d}" for d in domains]


def _dns01(conn: sqlite3.Connection) -> tuple[bool, str | None]:
    """(DNS-01 is set up with a provider we have an adapter for, the preview domain)."""
    row = conn.execute(
        "SELECT dns01_provider, dns01_credentials_ref, preview_domain FROM settings WHERE id = 1"
    ).fetchone()
    if row is None or row[0] not in DNS01_PROVIDERS or row[1] is None:
        return False, None
    return True, row[2]


def _node_names(conn: sqlite3.Connection, node_id: str, current: str | None) -> list[str]:
    urls = [
        str(r[0])
        for r in conn.execute(
            "SELECT preview_url FROM environments WHERE node_id = ? AND status = 'active'",
            (node_id,),
        )
    ]
    return preview_names(preview_domains(current, urls))


def _queue(
    tx: WriteTx, node_id: str, names: list[str], meta: Meta, worker: type[JobWorker[NoArgs]]
) -> str:
    active = active_unique(tx.conn, worker.kind, node_id)
    if active is not None:
        return active
    row = tx.conn.execute(
        "SELECT id, status FROM certificates WHERE node_id = ? AND kind = 'preview'", (node_id,)
    ).fetchone()
    certificate_id, status = (new_id(), "pending") if row is None else (row[0], row[1])
    held = "active" if status == "active" else "pending"
    job_id = enqueue_job(
        tx, worker, NoArgs(), meta, node_id=node_id, holds=("certificate", certificate_id, held)
    )
    asked = CertificateRequested(
        certificate_id=certificate_id,
        node_id=node_id,
        kind="preview",
        names=names,
        job_id=job_id,
    )
    append(tx, f"certificate:{certificate_id}", None, [asked], meta)
    return job_id


def request_preview_command(
    node_id: str, meta: Meta, worker: type[JobWorker[NoArgs]]
) -> Callable[[WriteTx], JobAccepted]:
    """Queue the node's `preview_certificate` now (or answer the active one)."""

    def command(tx: WriteTx) -> JobAccepted:
        row = None
        if is_uuid(node_id):
            row = tx.conn.execute("SELECT status FROM nodes WHERE id = ?", (node_id,)).fetchone()
        if row is None:
            raise NotFound(f"no node {node_id}")
        if row[0] != "active":
            raise Conflict(
                f"the node is {row[0]}, not active",
                details={"status": row[0], "hint": "provision the node first"},
            )
        configured, current = _dns01(tx.conn)
        names = _node_names(tx.conn, node_id, current) if configured else []
        if not names:
            raise PreviewNotConfigured(
                "no preview domain with DNS-01 is set",
                details={
                    "hint": "set preview_domain, dns01_provider (rfc2136 or cloudflare) and"
                    " dns01_credentials (PATCH /api/settings)"
                },
            )
        return JobAccepted(job_id=_queue(tx, node_id, names, meta, worker))

    return command


def queue_due_previews(
    worker: type[JobWorker[NoArgs]],
) -> Callable[[WriteTx, Meta], list[str]]:
    """The scan's command: `preview_certificate` for every node that needs it."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        configured, current = _dns01(tx.conn)
        if not configured:
            return []
        retry_after = format_ts(parse_ts(tx.now_ts) - RETRY_FAILED)
        rows = tx.conn.execute(
            "SELECT n.id, c.id, c.status, c.names_json, c.renew_at, c.renewal_failed,"
            " c.last_attempt_at FROM nodes n LEFT JOIN certificates c ON c.node_id = n.id"
            " AND c.kind = 'preview' WHERE n.status = 'active'"
            " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_type = ? AND j.node_id = n.id"
            "   AND j.status IN ('queued', 'running')) ORDER BY n.id",
            (worker.kind,),
        ).fetchall()
        queued = []
        for node_id, cert_id, status, names_json, renew_at, failed, attempted in rows:
            names = _node_names(tx.conn, node_id, current)
            if not names:
                continue
            recent_failure = attempted is not None and attempted > retry_after
            if cert_id is None or status == "pending":
                due = True
            elif status == "failed":
                due = not recent_failure
            else:
                covers = set(msgspec.json.decode(names_json, type=list[str])) == set(names)
                due = (not covers or renew_at <= tx.now_ts) and not (failed and recent_failure)
            if due:
                queued.append(_queue(tx, node_id, names, meta, worker))
        return queued

    return command
