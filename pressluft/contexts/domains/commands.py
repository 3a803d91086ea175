"""Custom domains: the commands (add, retry, remove, make primary) and the
hostname rule.

Adding records `domain.added` (one row per hostname: the name and, asked for,
its `www` twin) and queues `domain_add`, which holds the first row `pending`;
removing records `domain.removal_requested` and queues `domain_remove`; making
primary queues `domain_primary` — each in one transaction. A `failed` domain of
the same environment asked for again is retried (`domain.retried`, a new job).
See specs/domains.md.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import idna
import msgspec

from pressluft.clock import format_ts, parse_ts
from pressluft.contexts.domains.events import (
    CertificateExpiryNoticed,
    DomainAdded,
    DomainRemovalRequested,
    DomainRetried,
)
from pressluft.contexts.nodes import ConfirmationRequired
from pressluft.contexts.sites import EnvironmentNotActive, get_environment
from pressluft.db import WriteTx
from pressluft.errors import Conflict, NotFound, ValidationFailed
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.workers import JobWorker, NoArgs, enqueue_job

__all__ = [
    "AddDomainRequest",
    "CertificateNotFound",
    "DomainAccepted",
    "DomainNotActive",
    "DomainNotFound",
    "DomainTaken",
    "JobAccepted",
    "PrimaryArgs",
    "RenewArgs",
    "add_domain_command",
    "announce_expiring",
    "normalize_hostname",
    "primary_domain_command",
    "queue_due_renewals",
    "remove_domain_command",
    "renew_certificate_command",
]


class AddDomainRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    hostname: Annotated[str, msgspec.Meta(min_length=1, max_length=253)]
    www: bool = False
    hsts: bool = False


class DomainAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    domain_ids: list[str]


class JobAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str


class DomainNotFound(NotFound):
    pass


class DomainTaken(Conflict):
    code = "domain_taken"


class DomainNotActive(Conflict):
    code = "domain_not_active"


def _invalid(message: str, hint: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        details={"errors": [{"field": "hostname", "message": message, "in": "body"}], "hint": hint},
    )


def normalize_hostname(raw: str) -> tuple[str, str]:
    """(ASCII hostname as served — lower case, punycode —, its Unicode form); a
    clear 422 for what cannot be a custom domain: a wildcard, an IP address, a
    port or path, a single label, an invalid label."""
    name = raw.strip().rstrip(".")
    if not name:
        raise _invalid("the hostname is empty", "a DNS name such as shop.example.com")
    if "*" in name:
        raise _invalid(
            "a custom domain cannot be a wildcard",
            "add each hostname; previews use the node's wildcard certificate",
        )
    if any(c in name for c in ":/ @?#"):
        raise _invalid("a hostname has no scheme, port or path", "e.g. shop.example.com")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise _invalid("a custom domain is a DNS name, not an IP address", "e.g. shop.example.com")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii").lower()
    except idna.IDNAError as exc:
        raise _invalid(f"not a valid hostname: {exc}", "e.g. shop.example.com") from exc
    labels = ascii_name.split(".")
    if len(labels) < 2 or not labels[-1][:1].isalpha() or len(ascii_name) > 253:
        raise _invalid(
            "a hostname needs at least two labels and a top-level domain",
            "e.g. shop.example.com",
        )
    unicode_name = idna.decode(ascii_name)
    return ascii_name, unicode_name


def _twin(hostname: str) -> str:
    """The `www` twin: the apex of a `www.` name, else the `www.` name."""
    return hostname[4:] if hostname.startswith("www.") else f"www.{hostname}"


def _reserved(conn: sqlite3.Connection, hostname: str) -> None:
    """Not under the preview domain nor the control plane's domain."""
    row = conn.execute(
        "SELECT preview_domain, control_plane_domain FROM settings WHERE id = 1"
    ).fetchone()
    preview, control = row if row is not None else (None, None)
    if preview and (hostname == preview or hostname.endswith("." + preview)):
        raise _invalid(
            f"{hostname} is under the preview domain {preview}",
            "previews are served there already; add a domain of the site's own",
        )
    if control and hostname == control:
        raise _invalid(f"{hostname} is the control plane's domain", "choose another hostname")


def add_domain_command(
    environment_id: str, request: AddDomainRequest, meta: Meta, worker: type[JobWorker[NoArgs]]
) -> Callable[[WriteTx], DomainAccepted]:
    """Record the hostname (and its twin) `pending`; queue `domain_add`."""
    hostname, unicode_name = normalize_hostname(request.hostname)
    names: list[tuple[str, str, str | None]] = [(hostname, unicode_name, None)]
    if request.www:
        twin = _twin(hostname)
        if len(twin.split(".")) < 2:
            raise _invalid(f"{hostname} has no www twin", "add it without `www`")
        names.append((twin, idna.decode(twin), hostname))

    def command(tx: WriteTx) -> DomainAccepted:
        env = get_environment(tx.conn, environment_id)
        if env.status != "active":
            raise EnvironmentNotActive(
                f"the environment is {env.status}, not active",
                details={"status": env.status, "hint": "wait for its job to end, then retry"},
            )
        retried: list[str] = []
        added: list[tuple[str, str, str | None]] = []
        for name, uname, twin_of in names:
            _reserved(tx.conn, name)
            row = tx.conn.execute(
                "SELECT id, environment_id, status FROM domains WHERE hostname = ?", (name,)
            ).fetchone()
            if row is None:
                added.append((name, uname, twin_of))
            elif row[1] == environment_id and row[2] == "failed":
                retried.append(str(row[0]))
            else:
                raise DomainTaken(
                    f"{name} is attached already"
                    + ("" if row[1] == environment_id else " to another environment"),
                    details={
                        "domain_id": row[0],
                        "hint": "remove it there first" if row[1] != environment_id else "",
                    },
                )
        _idle(tx.conn, environment_id)
        new_ids = [new_id() for _ in added]
        first = (new_ids or retried)[0]
        job_id = enqueue_job(
            tx,
            worker,
            NoArgs(),
            meta,
            site_id=env.site_id,
            environment_id=environment_id,
            node_id=env.node_id,
            holds=("domain", first, "pending"),
        )
        for domain_id, (name, uname, twin_of) in zip(new_ids, added, strict=True):
            event = DomainAdded(
                domain_id=domain_id,
                environment_id=environment_id,
                site_id=env.site_id,
                node_id=env.node_id,
                hostname=name,
                unicode_hostname=uname,
                job_id=job_id,
                hsts=request.hsts,
                twin_of=twin_of,
            )
            append(tx, f"domain:{domain_id}", NO_STREAM, [event], meta)
        for domain_id in retried:
            again = DomainRetried(domain_id=domain_id, job_id=job_id, hsts=request.hsts)
            append(tx, f"domain:{domain_id}", None, [again], meta)
        return DomainAccepted(job_id=job_id, domain_ids=[*new_ids, *retried])

    return command


def _domain(conn: sqlite3.Connection, domain_id: str) -> tuple[str, str, str, str, str, int]:
    row = None
    if is_uuid(domain_id):
        row = conn.execute(
            "SELECT environment_id, site_id, node_id, hostname, status, is_primary"
            " FROM domains WHERE id = ?",
            (domain_id,),
        ).fetchone()
    if row is None:
        raise DomainNotFound(f"no domain {domain_id}")
    return row  # type: ignore[no-any-return]


def _idle(conn: sqlite3.Connection, environment_id: str) -> None:
    busy = conn.execute(
        "SELECT hostname FROM domains WHERE environment_id = ?"
        " AND status IN ('pending', 'removing') LIMIT 1",
        (environment_id,),
    ).fetchone()
    if busy is not None:
        raise Conflict(
            f"a job is changing the domain {busy[0]} of this environment",
            details={"hint": "wait for it to end, then retry"},
        )


def remove_domain_command(
    domain_id: str, confirm: str | None, meta: Meta, worker: type[JobWorker[NoArgs]]
) -> Callable[[WriteTx], JobAccepted]:
    """Queue the removal of a domain (`domain_remove`)."""

    def command(tx: WriteTx) -> JobAccepted:
        environment_id, site_id, node_id, hostname, _status, _ = _domain(tx.conn, domain_id)
        if confirm != hostname:
            raise ConfirmationRequired(
                f"removing the domain {hostname} needs confirmation",
                details={"hint": f"repeat its hostname: ?confirm={hostname}"},
            )
        _idle(tx.conn, environment_id)
        job_id = enqueue_job(
            tx,
            worker,
            NoArgs(),
            meta,
            site_id=site_id,
            environment_id=environment_id,
            node_id=node_id,
            holds=("domain", domain_id, "removing"),
        )
        event = DomainRemovalRequested(domain_id=domain_id, job_id=job_id)
        append(tx, f"domain:{domain_id}", None, [event], meta)
        return JobAccepted(job_id=job_id)

    return command


class PrimaryArgs(msgspec.Struct, frozen=True, kw_only=True):
    domain_id: str


def primary_domain_command(
    domain_id: str, meta: Meta, worker: type[JobWorker[PrimaryArgs]]
) -> Callable[[WriteTx], JobAccepted]:
    """Queue `domain_primary`: WordPress's URL moves to this active domain."""

    def command(tx: WriteTx) -> JobAccepted:
        environment_id, site_id, node_id, hostname, status, primary = _domain(tx.conn, domain_id)
        if status != "active":
            raise DomainNotActive(
                f"the domain {hostname} is {status}, not active",
                details={"status": status, "hint": "a domain is made primary once it is served"},
            )
        if primary:
            raise Conflict(f"{hostname} is the primary domain already")
        _idle(tx.conn, environment_id)
        job_id = enqueue_job(
            tx,
            worker,
            PrimaryArgs(domain_id=domain_id),
            meta,
            site_id=site_id,
            environment_id=environment_id,
            node_id=node_id,
        )
        return JobAccepted(job_id=job_id)

    return command


class CertificateNotFound(NotFound):
    pass


class RenewArgs(msgspec.Struct, frozen=True, kw_only=True):
    certificate_id: str


def _queue_renewal(
    tx: WriteTx, certificate_id: str, environment_id: str, node_id: str, meta: Meta,
    worker: type[JobWorker[RenewArgs]],
) -> str:  # fmt: skip
    site = tx.conn.execute(
        "SELECT site_id FROM environments WHERE id = ?", (environment_id,)
    ).fetchone()
    return enqueue_job(
        tx,
        worker,
        RenewArgs(certificate_id=certificate_id),
        meta,
        site_id=None if site is None else site[0],
        environment_id=environment_id,
        node_id=node_id,
        holds=("certificate", certificate_id, "active"),
    )


def renew_certificate_command(
    certificate_id: str, meta: Meta, worker: type[JobWorker[RenewArgs]]
) -> Callable[[WriteTx], JobAccepted]:
    """Queue `certificate_renew` for an active certificate of a custom domain now."""

    def command(tx: WriteTx) -> JobAccepted:
        row = None
        if is_uuid(certificate_id):
            row = tx.conn.execute(
                "SELECT status, kind, environment_id, node_id FROM certificates WHERE id = ?",
                (certificate_id,),
            ).fetchone()
        if row is None:
            raise CertificateNotFound(f"no certificate {certificate_id}")
        status, kind, environment_id, node_id = row
        if status != "active" or kind != "domain" or environment_id is None:
            raise Conflict(
                f"the certificate is {status} ({kind}): only an active certificate of a"
                " custom domain is renewed here",
                details={"status": status, "hint": "add the domain again to get a new one"},
            )
        active = tx.conn.execute(
            "SELECT id FROM jobs WHERE job_type = ? AND holds_kind = 'certificate'"
            " AND holds_id = ? AND status IN ('queued', 'running')",
            (worker.kind, certificate_id),
        ).fetchone()
        if active is not None:  # one renewal of a certificate at a time: that one answers
            return JobAccepted(job_id=str(active[0]))
        job_id = _queue_renewal(tx, certificate_id, environment_id, node_id, meta, worker)
        return JobAccepted(job_id=job_id)

    return command


#: After a failed renewal, the scan waits this long before the next attempt (a CA
#: counts failed validations: Let's Encrypt allows 5 per account and name an hour).
RETRY_FAILED_RENEWAL = timedelta(hours=1)


def queue_due_renewals(
    worker: type[JobWorker[RenewArgs]],
) -> Callable[[WriteTx, Meta], list[str]]:
    """The scan's command: `certificate_renew` for each active domain certificate past
    its renewal time whose renewal is not queued or running, and did not fail within
    `RETRY_FAILED_RENEWAL`."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        retry_after = format_ts(parse_ts(tx.now_ts) - RETRY_FAILED_RENEWAL)
        due = tx.conn.execute(
            "SELECT c.id, c.environment_id, c.node_id FROM certificates c"
            " JOIN environments e ON e.id = c.environment_id AND e.status = 'active'"
            " WHERE c.status = 'active' AND c.kind = 'domain' AND c.renew_at <= ?"
            " AND NOT (c.renewal_failed = 1 AND c.last_attempt_at > ?)"
            " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_type = ? AND j.holds_kind ="
            " 'certificate' AND j.holds_id = c.id AND j.status IN ('queued', 'running'))"
            " ORDER BY c.renew_at",
            (tx.now_ts, retry_after, worker.kind),
        ).fetchall()
        return [_queue_renewal(tx, cid, env, node, meta, worker) for cid, env, node in due]

    return command


#: A served certificate this close to its expiry is announced (and shown in the banner).
EXPIRY_WARNING = timedelta(days=14)


def announce_expiring() -> Callable[[WriteTx, Meta], list[str]]:
    """The scan's command: `certificate.expiry_noticed` for each served certificate under
    `EXPIRY_WARNING` from its expiry, once per certificate and expiry."""

    def command(tx: WriteTx, meta: Meta) -> list[str]:
        soon = format_ts(parse_ts(tx.now_ts) + EXPIRY_WARNING)
        rows = tx.conn.execute(
            "SELECT id, node_id, names_json, not_after, renewal_failed FROM certificates"
            " WHERE status = 'active' AND not_after < ?"
            " AND coalesce(expiring_announced_for, '') != not_after ORDER BY not_after",
            (soon,),
        ).fetchall()
        for certificate_id, node_id, names, not_after, failed in rows:
            event = CertificateExpiryNoticed(
                certificate_id=certificate_id,
                node_id=node_id,
                names=msgspec.json.decode(names, type=list[str]),
                not_after=not_after,
                renewal_failed=bool(failed),
            )
            append(tx, f"certificate:{certificate_id}", None, [event], meta)
        return [str(r[0]) for r in rows]

    return command
