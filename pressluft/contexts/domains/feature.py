"""The domains capability's one record, as `pressluft.features` lists it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pressluft.contexts.domains.events import (
    AcmeAccountRegistered,
    CertificateIssued,
    CertificateRenewalFailed,
    DomainActivated,
    DomainAdded,
    DomainPrimaryChanged,
    DomainRemovalRequested,
    DomainRemoved,
    DomainRetried,
)
from pressluft.contexts.domains.failures import CODES
from pressluft.contexts.domains.projector import DOMAINS_PROJECTOR
from pressluft.contexts.domains.routes import DOMAIN_ROUTES
from pressluft.contexts.domains.service import Domains
from pressluft.contexts.domains.workers import AcmeSettings, domain_workers
from pressluft.feature import Feature, Kernel, Parts

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
    return Parts(
        workers=domain_workers(acme, kernel.vault),
        services={"domains": Domains(kernel.db, kernel.writer, kernel.clock)},
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
        CertificateIssued,
        CertificateRenewalFailed,
        AcmeAccountRegistered,
    ),
    projectors=(DOMAINS_PROJECTOR,),
    failure_codes=CODES,
    routes=tuple(DOMAIN_ROUTES),
    migrations=Path(str(resources.files("pressluft.contexts.domains") / "migrations")),
    assemble=_assemble,
)
