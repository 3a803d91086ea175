"""`preview_certificate`: a node's wildcard (`*.{d}` for each preview domain it
covers: previews.py) — another node's when one holds it for the same names and
it is not due (a CA limits duplicate certificates), else ordered over DNS-01 (the
TXT record published and removed through the configured provider, with the
credentials from the vault) — installed on the node with a TLS server block for
every environment's preview hosts (`preview-tls.yml`: key 0600, never logged,
nginx reloaded), the certificate the node serves checked (SNI), then recorded —
a first order and a renewal alike: one wildcard row per node, reissued in place.
The certificate scan (`scan.py`) queues it; see specs/domains.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from pressluft.clock import format_ts
from pressluft.contexts.domains.events import CertificateIssued
from pressluft.contexts.domains.failures import (
    DNS01_CREDENTIALS_INVALID,
    DOMAIN_INSTALL_FAILED,
    PREVIEW_NOT_CONFIGURED,
)
from pressluft.contexts.domains.loaders import PREVIEW_JOB, PreviewJob
from pressluft.contexts.domains.previews import preview_domains, preview_names
from pressluft.contexts.domains.probes import (
    AcmeError,
    Dns01CredentialsInvalid,
    Dns01Solver,
    dns01_provider,
    issue,
)
from pressluft.contexts.domains.records import record_issued
from pressluft.contexts.domains.workers import (
    AcmeSettings,
    acme_account,
    acme_code,
    check_served,
)
from pressluft.contexts.nodes import run_node_playbook
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = ["PREVIEW_CHECK_LABEL", "PreviewCertificate", "preview_host"]

PREVIEW_PLAYBOOK = "preview-tls.yml"
#: The name the served-certificate check asks for besides each environment's host:
#: the node's catch-all block for the preview domain answers it.
PREVIEW_CHECK_LABEL = "pressluft-check"


def preview_host(environment_id: str, preview_domain: str) -> str:
    """An environment's host under its node's wildcard."""
    return f"{environment_id[:8]}.{preview_domain}"


@dataclass(frozen=True)
class _Wildcard:
    """The certificate a node gets: ordered now, or another node's."""

    names: list[str]
    issuer: str | None
    serial: str
    not_before: str
    not_after: str
    renew_at: str
    chain_pem: str
    key_pem: bytes


def _task_code(task: str) -> str | None:
    return DOMAIN_INSTALL_FAILED if task.startswith("Preview:") else None


class PreviewCertificate(JobWorker[NoArgs]):
    """Order, install and check a node's preview wildcard."""

    kind = "preview_certificate"
    args = NoArgs
    timeout_seconds = 900
    timeout_code = "ANSIBLE_TIMEOUT"
    #: One per node; it rewrites every environment's preview TLS block, so it runs
    #: alone on its node (a site job in between could miss its block or lose it).
    node_lock = "exclusive"
    unique = True
    #: One attempt: the scan asks again after an hour (a CA counts failed validations).
    max_attempts = 1

    def __init__(self, acme: AcmeSettings) -> None:
        self.acme = acme

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        node_id = ctx.node_id
        job = None if node_id is None else await ctx.load(PREVIEW_JOB, node_id)
        if job is None or job.certificate_id is None:
            raise JobFailure(PREVIEW_NOT_CONFIGURED, "the node or its certificate is gone")
        domains = preview_domains(job.preview_domain, job.environments.values())
        if not domains or not job.dns01_provider or not job.dns01_credentials_ref:
            raise JobFailure(
                PREVIEW_NOT_CONFIGURED,
                "no preview domain with DNS-01 is set any more (PATCH /api/settings)",
            )
        names = preview_names(domains)
        wildcard = await self.shared(ctx, job, names) or await self.order(
            ctx, names, job.dns01_provider, job.dns01_credentials_ref
        )
        await run_node_playbook(
            ctx,
            PREVIEW_PLAYBOOK,
            extra_vars={
                "preview_domains": domains,
                "preview_certificate": {
                    "fullchain": wildcard.chain_pem,
                    "key": wildcard.key_pem.decode(),
                },
                "preview_environments": [
                    {"id": env_id, "url_port": urlsplit(url).port or ""}
                    for env_id, url in job.environments.items()
                ],
            },
            allowlist=frozenset({PREVIEW_PLAYBOOK}),
            task_codes=_task_code,
        )
        await self.check_served(ctx, job, domains, wildcard.serial)
        event = CertificateIssued(
            certificate_id=job.certificate_id,
            node_id=job.node_id,
            kind="preview",
            environment_id=None,
            names=wildcard.names,
            issuer=wildcard.issuer,
            serial=wildcard.serial,
            not_before=wildcard.not_before,
            not_after=wildcard.not_after,
            renew_at=wildcard.renew_at,
            key_secret_id="",
            chain_pem=wildcard.chain_pem,
            job_id=ctx.job_id,
        )
        replaced = job.key_secret_id if job.certificate_status == "active" else None
        await ctx.command(record_issued(ctx.sealer(), event, wildcard.key_pem, [], replaced))
        ctx.log(f"{', '.join(names)} served with certificate {wildcard.serial}")

    @staticmethod
    async def shared(ctx: WorkerPort, job: PreviewJob, names: list[str]) -> _Wildcard | None:
        """Another node's wildcard for the same names, not due yet: installed as it is
        (a CA counts certificates for the same names: Let's Encrypt allows 5 a week)."""
        donor = next(
            (d for d in job.donors if set(d.names) == set(names) and d.renew_at > ctx.claimed_at),
            None,
        )
        if donor is None:
            return None
        ctx.log(f"installing the wildcard node {donor.node_id} holds (serial {donor.serial})")
        return _Wildcard(
            names=donor.names,
            issuer=donor.issuer,
            serial=donor.serial,
            not_before=donor.not_before,
            not_after=donor.not_after,
            renew_at=donor.renew_at,
            chain_pem=donor.chain_pem,
            key_pem=(await ctx.secret(donor.key_secret_id)).encode(),
        )

    async def order(
        self, ctx: WorkerPort, names: list[str], provider_name: str, credentials_ref: str
    ) -> _Wildcard:
        """A new wildcard from the CA over DNS-01 through the settings' provider."""
        credentials = (await ctx.secret(credentials_ref)).encode()
        try:
            provider = dns01_provider(provider_name, credentials)
        except Dns01CredentialsInvalid as exc:
            raise JobFailure(DNS01_CREDENTIALS_INVALID, str(exc)) from exc
        ctx.log(f"ordering {', '.join(names)} over DNS-01 through {provider.name}")
        account = await acme_account(ctx, self.acme)
        try:
            issued = await issue(
                self.acme.directory, account, names, Dns01Solver(provider), log=ctx.log
            )
        except AcmeError as exc:
            raise JobFailure(acme_code(exc), exc.message) from exc
        return _Wildcard(
            names=issued.names,
            issuer=issued.issuer,
            serial=issued.serial,
            not_before=format_ts(issued.not_before.astimezone(UTC)),
            not_after=format_ts(issued.not_after.astimezone(UTC)),
            renew_at=format_ts(issued.renew_at.astimezone(UTC)),
            chain_pem=issued.fullchain_pem.decode(),
            key_pem=issued.key_pem,
        )

    @staticmethod
    async def check_served(
        ctx: WorkerPort, job: PreviewJob, domains: list[str], serial: str
    ) -> None:
        """The node serves the wildcard for each domain's catch-all name and every
        environment's preview hosts (SNI)."""
        port = int(job.ports["https"]) if job.ports else 443
        hosts = [f"{PREVIEW_CHECK_LABEL}.{d}" for d in domains] + [
            preview_host(e, d) for e in job.environments for d in domains
        ]
        await check_served(ctx, job.tls_host, port, hosts, serial)
