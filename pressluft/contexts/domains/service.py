"""The domains service routes and pages call: reads of domains and certificates
(one read transaction each), the domain commands run at most once per
`Idempotency-Key` through the `Writer`."""

from __future__ import annotations

import builtins

from pressluft.acting import Context
from pressluft.clock import Clock, format_ts
from pressluft.contexts.domains.commands import (
    AddDomainRequest,
    DomainAccepted,
    JobAccepted,
    add_domain_command,
    primary_domain_command,
    remove_domain_command,
    renew_certificate_command,
)
from pressluft.contexts.domains.preview_worker import PreviewCertificate
from pressluft.contexts.domains.previews import request_preview_command
from pressluft.contexts.domains.queries import (
    CertificateView,
    DomainView,
    Inventory,
    certificate_inventory,
    get_domain,
    list_certificates,
    list_domains,
)
from pressluft.contexts.domains.workers import (
    CertificateRenew,
    DomainAdd,
    DomainPrimary,
    DomainRemove,
)
from pressluft.db import Database
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer

__all__ = ["Domains"]


class Domains:
    """Custom domains of environments and the certificates the control plane holds."""

    def __init__(self, db: Database, writer: Writer, clock: Clock) -> None:
        self._db = db
        self._writer = writer
        self._clock = clock

    def _now(self) -> str:
        return format_ts(self._clock.now())

    async def list(self, environment_id: str) -> builtins.list[DomainView]:
        now = self._now()
        return await self._db.read(lambda conn: list_domains(conn, environment_id, now))

    async def get(self, domain_id: str) -> DomainView:
        now = self._now()
        return await self._db.read(lambda conn: get_domain(conn, domain_id, now))

    async def certificates(self) -> builtins.list[CertificateView]:
        now = self._now()
        return await self._db.read(lambda conn: list_certificates(conn, now))

    async def inventory(self) -> Inventory:
        now = self._now()
        return await self._db.read(lambda conn: certificate_inventory(conn, now))

    async def add(
        self, environment_id: str, request: AddDomainRequest, ctx: Context, retry: Retry | None
    ) -> Answered[DomainAccepted]:
        command = add_domain_command(environment_id, request, ctx.meta(), DomainAdd)
        return await self._writer.run(command, DomainAccepted, 202, retry)

    async def remove(
        self, domain_id: str, confirm: str | None, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = remove_domain_command(domain_id, confirm, ctx.meta(), DomainRemove)
        return await self._writer.run(command, JobAccepted, 202, retry)

    async def make_primary(
        self, domain_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = primary_domain_command(domain_id, ctx.meta(), DomainPrimary)
        return await self._writer.run(command, JobAccepted, 202, retry)

    async def renew(
        self, certificate_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = renew_certificate_command(certificate_id, ctx.meta(), CertificateRenew)
        return await self._writer.run(command, JobAccepted, 202, retry)

    async def issue_preview(
        self, node_id: str, ctx: Context, retry: Retry | None
    ) -> Answered[JobAccepted]:
        command = request_preview_command(node_id, ctx.meta(), PreviewCertificate)
        return await self._writer.run(command, JobAccepted, 202, retry)
