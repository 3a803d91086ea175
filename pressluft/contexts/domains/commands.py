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
from typing import Annotated

import idna
import msgspec

from pressluft.contexts.domains.events import (
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
    "DomainAccepted",
    "DomainNotActive",
    "DomainNotFound",
    "DomainTaken",
    "JobAccepted",
    "PrimaryArgs",
    "add_domain_command",
    "normalize_hostname",
    "primary_domain_command",
    "remove_domain_command",
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
