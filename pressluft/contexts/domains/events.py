"""Events of custom domains (stream `domain:<id>`), certificates (stream
`certificate:<id>`) and the control plane's ACME accounts (stream `acme`)."""

from __future__ import annotations

from pressluft.events.types.base import Event

__all__ = [
    "AcmeAccountRegistered",
    "CertificateExpiryNoticed",
    "CertificateIssued",
    "CertificateRequested",
    "DomainActivated",
    "DomainAdded",
    "DomainPrimaryChanged",
    "DomainRemovalRequested",
    "DomainRemoved",
    "DomainRetried",
]


class DomainAdded(Event, frozen=True, tag="domain.added"):
    """A hostname was attached to an environment; its job checks DNS, gets the
    certificate and serves it (status pending)."""

    domain_id: str
    environment_id: str
    site_id: str
    node_id: str
    hostname: str
    unicode_hostname: str
    job_id: str
    hsts: bool = False
    #: The hostname this one answers 301 to (a `www` twin), else None.
    twin_of: str | None = None


class DomainRetried(Event, frozen=True, tag="domain.retried"):
    """A failed domain was asked for again: a new job (status pending)."""

    domain_id: str
    job_id: str
    hsts: bool = False


class DomainActivated(Event, frozen=True, tag="domain.activated"):
    """Its job served it with this certificate (status active, tls active)."""

    domain_id: str
    job_id: str
    certificate_id: str


class DomainPrimaryChanged(Event, frozen=True, tag="domain.primary_changed"):
    """WordPress's URL moved to this domain (None: back to the preview URL)."""

    environment_id: str
    domain_id: str | None
    job_id: str


class DomainRemovalRequested(Event, frozen=True, tag="domain.removal_requested"):
    domain_id: str
    job_id: str


class DomainRemoved(Event, frozen=True, tag="domain.removed"):
    """Its server block and certificate files are gone from the node: the row goes."""

    domain_id: str
    job_id: str


class CertificateRequested(Event, frozen=True, tag="certificate.requested"):
    """A node's preview wildcard was asked for (the scan, or an operator): its job
    orders and installs it. A new row is `pending`, a failed one `pending` again; an
    active one stays served until the job replaces it."""

    certificate_id: str
    node_id: str
    kind: str  # preview
    names: list[str]
    job_id: str


class CertificateIssued(Event, frozen=True, tag="certificate.issued"):
    """A certificate was issued (or renewed) and the node serves it: the key is a
    vault id, the chain is public."""

    certificate_id: str
    node_id: str
    kind: str  # domain, preview, control_plane
    environment_id: str | None
    names: list[str]
    issuer: str | None
    serial: str
    not_before: str
    not_after: str
    renew_at: str
    key_secret_id: str
    chain_pem: str
    job_id: str


class CertificateExpiryNoticed(Event, frozen=True, tag="certificate.expiry_noticed"):
    """A served certificate is under 14 days from expiry (recorded once per
    certificate and expiry by the scan): for the operator's feed and, later,
    notifications; the dashboard's banner says it too."""

    certificate_id: str
    node_id: str
    names: list[str]
    not_after: str
    renewal_failed: bool


class AcmeAccountRegistered(Event, frozen=True, tag="acme.account_registered"):
    """The control plane's account at a CA (its key is a vault id)."""

    directory_url: str
    account_uri: str
    key_secret_id: str
