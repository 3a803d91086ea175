"""The domains capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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
from pressluft.contexts.domains.failures import CODES
from pressluft.contexts.domains.pages import PAGES, domains_section
from pressluft.contexts.domains.preview_worker import PreviewCertificate
from pressluft.contexts.domains.projector import DOMAINS_PROJECTOR
from pressluft.contexts.domains.routes import DOMAIN_ROUTES
from pressluft.contexts.domains.scan import CertificateScan
from pressluft.contexts.domains.service import Domains
from pressluft.contexts.domains.workers import (
    AcmeSettings,
    CertificateRenew,
    DomainAdd,
    DomainPrimary,
    DomainRemove,
)
from pressluft.feature import Feature, Kernel, Parts
from pressluft.jobs.scheduler import Schedule

__all__ = ["FEATURE"]


def _assemble(kernel: Kernel) -> Parts:
    config = kernel.config
    acme = AcmeSettings(
        config.acme_directory,
        config.acme_ca_bundle,
        config.acme_email,
        config.acme_caa_identity,
        config.dns_resolver,
    )
    scan = Schedule(
        job_type=CertificateScan.kind,
        every_seconds=config.certificate_scan_seconds,
        first_after_seconds=60,
        node_lock="shared",
        max_attempts=CertificateScan.max_attempts,
        timeout_seconds=CertificateScan.timeout_seconds,
    )
    return Parts(
        workers=[
            DomainAdd(acme),
            DomainRemove(acme),
            DomainPrimary(acme),
            CertificateRenew(acme),
            PreviewCertificate(acme),
            CertificateScan(),
        ],
        schedules=[scan],
        services={"domains": Domains(kernel.db, kernel.writer, kernel.clock)},
        site_sections=[domains_section(kernel.clock)],
    )


FEATURE = Feature(
    name="domains",
    events=(
        DomainAdded,
        DomainRetried,
        DomainActivated,
        DomainPrimaryChanged,
        DomainRemovalRequested,
        DomainRemoved,
        CertificateRequested,
        CertificateIssued,
        CertificateExpiryNoticed,
        AcmeAccountRegistered,
    ),
    projectors=(DOMAINS_PROJECTOR,),
    failure_codes=CODES,
    routes=tuple(DOMAIN_ROUTES),
    pages=tuple(PAGES),
    templates=Path(str(resources.files("pressluft.contexts.domains") / "templates")),
    migrations=Path(str(resources.files("pressluft.contexts.domains") / "migrations")),
    assemble=_assemble,
)
