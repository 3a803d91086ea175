"""The commands a domain job records its outcome with (through its worker port,
fenced by its lease): a certificate issued and served (its key sealed in the
same transaction), the domains activated, the primary moved, a domain removed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from pressluft.contexts.domains.events import (
    AcmeAccountRegistered,
    CertificateIssued,
    DomainActivated,
    DomainPrimaryChanged,
    DomainRemoved,
)
from pressluft.db import WriteTx
from pressluft.events import Meta, append
from pressluft.events.types.base import Event
from pressluft.jobs.workers import Sealer
from pressluft.vault import Vault

__all__ = ["record_account", "record_issued", "record_primary", "record_removed"]


def record_account(
    seal: Sealer, directory_url: str, uri: str, key_pem: bytes, replaced: str | None
) -> Callable[[WriteTx, Meta], str]:
    """The control plane's (new) ACME account: its key sealed (the one it replaces
    destroyed), `acme.account_registered`."""

    def command(tx: WriteTx, meta: Meta) -> str:
        if replaced is not None:
            Vault.destroy(tx.conn, replaced)
        secret_id = seal(tx.conn, "acme_account_key", key_pem, tx.now_ts)
        event = AcmeAccountRegistered(
            directory_url=directory_url, account_uri=uri, key_secret_id=secret_id
        )
        append(tx, "acme", None, [event], meta)
        return secret_id

    return command


def record_issued(
    seal: Sealer,
    issued: CertificateIssued,
    key_pem: bytes,
    activated: Sequence[str],
    replaced_key: str | None,
) -> Callable[[WriteTx, Meta], None]:
    """A certificate the node serves now: its key sealed (the previous one destroyed),
    `certificate.issued`, the domains it serves `active`."""

    def command(tx: WriteTx, meta: Meta) -> None:
        secret_id = seal(tx.conn, "certificate_key", key_pem, tx.now_ts)
        event = msgspec.structs.replace(issued, key_secret_id=secret_id)
        append(tx, f"certificate:{issued.certificate_id}", None, [event], meta)
        for domain_id in activated:
            done = DomainActivated(
                domain_id=domain_id, job_id=issued.job_id, certificate_id=issued.certificate_id
            )
            append(tx, f"domain:{domain_id}", None, [done], meta)
        if replaced_key is not None and replaced_key != secret_id:
            Vault.destroy(tx.conn, replaced_key)

    return command


def record_primary(
    environment_id: str, domain_id: str | None, job_id: str
) -> Callable[[WriteTx, Meta], None]:
    def command(tx: WriteTx, meta: Meta) -> None:
        moved = DomainPrimaryChanged(
            environment_id=environment_id, domain_id=domain_id, job_id=job_id
        )
        append(tx, f"environment-domains:{environment_id}", None, [moved], meta)

    return command


def record_removed(
    domain_id: str, job_id: str, primary_cleared: str | None
) -> Callable[[WriteTx, Meta], None]:
    """The node no longer serves the domain: the primary cleared (when it was),
    `domain.removed`."""

    def command(tx: WriteTx, meta: Meta) -> None:
        events: list[Event] = []
        if primary_cleared is not None:
            moved = DomainPrimaryChanged(
                environment_id=primary_cleared, domain_id=None, job_id=job_id
            )
            append(tx, f"environment-domains:{primary_cleared}", None, [moved], meta)
        events.append(DomainRemoved(domain_id=domain_id, job_id=job_id))
        append(tx, f"domain:{domain_id}", None, events, meta)

    return command
