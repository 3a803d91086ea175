"""The jobs that attach, serve and detach custom domains.

`domain_add`: the DNS and CAA preflight for every name of the job (a name that
does not point at the node fails the job with the record to create — before
anything changes); the control plane's ACME account (registered once, its key
sealed); an HTTP-01 order answered through the node's nginx; the certificate
and the server blocks installed (`domain-add.yml`: key 0600, never logged); the
certificate the node actually serves checked (serial) — then the domains are
`active`, and the first domain of an environment becomes primary (the URL
change procedure runs in the same playbook). `domain_primary` moves the primary
(URL change, server blocks); `domain_remove` removes a domain's server block and
certificate files (`domain-remove.yml`), reverting to the preview URL when it was
the primary. See specs/domains.md.
"""

from __future__ import annotations

from datetime import UTC
from typing import TypeVar
from urllib.parse import urlsplit

import msgspec

from pressluft.clock import format_ts
from pressluft.contexts.domains.commands import PrimaryArgs, RenewArgs
from pressluft.contexts.domains.events import CertificateIssued
from pressluft.contexts.domains.failures import (
    ACME_FAILED,
    ACME_UNREACHABLE,
    CAA_FORBIDS,
    CERTIFICATE_NOT_SERVED,
    DNS_MISMATCH,
    DNS_UNAVAILABLE,
    DOMAIN_GONE,
    DOMAIN_INSTALL_FAILED,
)
from pressluft.contexts.domains.loaders import (
    ACME_ACCOUNT,
    CERTIFICATE_JOB,
    DOMAIN_JOB,
    DomainJob,
    DomainRow,
)
from pressluft.contexts.domains.probes import (
    Account,
    AcmeError,
    HttpSolver,
    TlsProbeFailed,
    check_dns,
    directory_of,
    ensure_account,
    issue,
    served_certificate,
)
from pressluft.contexts.domains.records import (
    record_account,
    record_issued,
    record_primary,
    record_removed,
)
from pressluft.contexts.nodes import job_node_address, run_node_playbook
from pressluft.contexts.sites import ENVIRONMENT_JOB, env_names, purge_environment_cache
from pressluft.ids import new_id
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = [
    "AcmeSettings",
    "CertificateRenew",
    "DomainAdd",
    "DomainPrimary",
    "DomainRemove",
    "acme_account",
    "acme_code",
    "check_served",
]

A = TypeVar("A", bound=msgspec.Struct)

DOMAIN_ADD_PLAYBOOK = "domain-add.yml"
DOMAIN_REMOVE_PLAYBOOK = "domain-remove.yml"
DOMAIN_JOB_TIMEOUT_SECONDS = 900


class AcmeSettings:
    """The daemon's ACME and DNS settings (config)."""

    def __init__(
        self, directory: str, ca_bundle: str, email: str, caa_identity: str, resolver: str
    ) -> None:
        self.directory = directory_of(directory, ca_bundle)
        self.email = email or None
        self.caa_identity = caa_identity
        self.resolver = resolver


def _task_code(task: str) -> str | None:
    return DOMAIN_INSTALL_FAILED if task.startswith("Domain:") else None


def _netloc(hostname: str, job: DomainJob, scheme: str) -> str:
    """Host and, on lab nodes, the published port WordPress's URL carries."""
    if job.ports:
        return f"{hostname}:{job.ports[scheme]}"
    return hostname


def _url(hostname: str | None, job: DomainJob) -> str:
    """WordPress's URL with this primary (None: the preview URL)."""
    if hostname is None:
        return job.preview_url.rstrip("/")
    return f"https://{_netloc(hostname, job, 'https')}"


def _current_primary(job: DomainJob) -> DomainRow | None:
    return next((d for d in job.domains if d.is_primary), None)


async def acme_account(ctx: WorkerPort, acme: AcmeSettings) -> Account:
    """The control plane's account at the directory: registered on first use (its
    key sealed), looked up by its key afterwards (a CA that forgot it — a reset
    test CA — registers the same key again)."""
    url = acme.directory.url
    known = await ctx.load(ACME_ACCOUNT, url)
    key = None if known is None else (await ctx.secret(known.key_secret_id)).encode()
    if known is None:
        ctx.log(f"registering the control plane's ACME account at {url}")
    try:
        account = await ensure_account(acme.directory, key, acme.email)
    except AcmeError as exc:
        raise JobFailure(acme_code(exc), exc.message) from exc
    if known is None or known.account_uri != account.uri:
        replaced = None if known is None else known.key_secret_id
        await ctx.command(record_account(ctx.sealer(), url, account.uri, account.key_pem, replaced))
    return account


async def check_served(
    ctx: WorkerPort, host: str, port: int, hostnames: list[str], serial: str
) -> None:
    """A TLS handshake with SNI for each name at the node's `host:port` presents the
    certificate `serial`, else `CERTIFICATE_NOT_SERVED`."""
    for hostname in hostnames:
        try:
            served = await served_certificate(host, port, hostname)
        except TlsProbeFailed as exc:
            raise JobFailure(
                CERTIFICATE_NOT_SERVED, f"no TLS handshake for {hostname}: {exc}"
            ) from exc
        if served.serial != serial:
            raise JobFailure(
                CERTIFICATE_NOT_SERVED,
                f"{hostname} is served with certificate {served.serial}, not the new"
                f" {serial} (nginx not reloaded?)",
            )
        expires = f"{served.not_after:%Y-%m-%d}"
        ctx.log(f"served for {hostname}: serial {served.serial}, expires {expires}")


class _DomainWorker(JobWorker[A]):
    timeout_seconds = DOMAIN_JOB_TIMEOUT_SECONDS
    timeout_code = "ANSIBLE_TIMEOUT"
    #: A site's job locks its site; its node it shares with other site jobs.
    node_lock = "shared"

    def __init__(self, acme: AcmeSettings) -> None:
        self.acme = acme

    async def job(self, ctx: WorkerPort) -> DomainJob:
        job = await ctx.load(DOMAIN_JOB, ctx.job_id)
        if job is None:
            raise JobFailure(DOMAIN_GONE, "the environment of this job is gone")
        return job

    async def playbook(
        self, ctx: WorkerPort, name: str, job: DomainJob, extra: dict[str, object]
    ) -> None:
        names = env_names(job.environment_id, job.site_id)
        extra_vars: dict[str, object] = {
            "site_id": job.site_id,
            "environment_id": job.environment_id,
            "env_user": names["env_user"],
            "env_root": names["env_root"],
            "preview_host": urlsplit(job.preview_url).hostname,
            "lab_https_port": job.ports["https"] if job.ports else None,
            **extra,
        }
        await run_node_playbook(
            ctx,
            name,
            extra_vars=extra_vars,
            allowlist=frozenset({name}),
            task_codes=_task_code,
        )

    async def purge(self, ctx: WorkerPort, job: DomainJob) -> None:
        """WordPress's URL changed: every cached page of the environment goes (purged and
        verified), so nothing cached under the old URL is served again. A purge that
        fails is a warning in the log, not the job's failure: the URL change is done
        and recorded, and a purge may be asked for again (`POST …/cache/purge`)."""
        env = await ctx.load(ENVIRONMENT_JOB, job.environment_id)
        if env is None:
            return
        try:
            await purge_environment_cache(ctx, job.environment_id, env, [])
        except JobFailure as exc:
            ctx.log(
                f"WARNING: the page cache was not purged ({exc.code}: {exc.message});"
                " purge it: POST /api/environments/{id}/cache/purge",
                "stderr",
            )

    def served_blocks(
        self, job: DomainJob, primary: str | None, certificate: dict[str, str]
    ) -> list[dict[str, object]]:
        """Every server block the environment's domains get with `primary` as the
        primary hostname: a twin answers 301 to its name, every other domain 301 to
        the primary, the primary serves the site."""
        blocks: list[dict[str, object]] = []
        for domain in job.domains:
            if domain.status not in ("active", "pending"):
                continue
            cert = certificate.get(domain.id) or domain.certificate_id
            if cert is None:
                continue
            redirect = None
            if domain.hostname != primary:
                target = domain.twin_of or primary
                redirect = None if target is None else _url(target, job)
            blocks.append(
                {
                    "hostname": domain.hostname,
                    "certificate_id": cert,
                    "redirect_to": redirect,
                    "hsts": domain.hsts,
                }
            )
        return blocks


class _Issuing(_DomainWorker[A]):
    """A job that gets a certificate for names of the environment and serves it."""

    async def preflight(self, ctx: WorkerPort, job: DomainJob, hostnames: list[str]) -> None:
        ctx.log(f"checking DNS and CAA of {', '.join(hostnames)}")
        problems = await check_dns(
            hostnames, job.public_address, self.acme.caa_identity, self.acme.resolver
        )
        if problems:
            for problem in problems:
                ctx.log(problem.message)
            codes = {p.code for p in problems}
            code = (
                CAA_FORBIDS
                if codes == {"caa_forbids"}
                else DNS_UNAVAILABLE
                if codes == {"dns_unavailable"}
                else DNS_MISMATCH
            )
            raise JobFailure(code, "; ".join(p.message for p in problems))
        ctx.log("DNS and CAA allow issuing")

    async def serve(
        self,
        ctx: WorkerPort,
        job: DomainJob,
        hostnames: list[str],
        certificate_id: str,
        *,
        activated: list[DomainRow],
        replaced_key: str | None,
    ) -> None:
        """Order a certificate for `hostnames` (HTTP-01 through the node's nginx),
        install it as `certificate_id` with every server block of the environment,
        check the node serves it, record it (and the domains it activates; the first
        domain of an environment becomes primary)."""
        account = await self.account(ctx)
        node = await job_node_address(ctx)
        try:
            issued = await issue(
                self.acme.directory, account, hostnames, HttpSolver(node, ctx.log), log=ctx.log
            )
        except AcmeError as exc:
            raise JobFailure(acme_code(exc), exc.message) from exc
        current = _current_primary(job)
        primary = current.hostname if current else (activated[0].hostname if activated else None)
        blocks = self.served_blocks(job, primary, {d.id: certificate_id for d in activated})
        url_change = None
        if current is None and primary is not None:
            url_change = {"from": _url(None, job), "to": _url(primary, job)}
            moves = f"{url_change['from']} → {url_change['to']}"
            ctx.log(f"{primary} becomes the primary domain: {moves}")
        await self.playbook(
            ctx,
            DOMAIN_ADD_PLAYBOOK,
            job,
            {
                "domain_blocks": blocks,
                "domain_certificate": {
                    "id": certificate_id,
                    "fullchain": issued.fullchain_pem.decode(),
                    "key": issued.key_pem.decode(),
                },
                "domain_url_change": url_change,
            },
        )
        if url_change is not None and activated:
            # WordPress's URL is the domain's now: recorded at once, whatever fails next
            # (a removal of this domain, even failed, then reverts it).
            await ctx.command(record_primary(job.environment_id, activated[0].id, ctx.job_id))
        await self.check_served(ctx, job, hostnames, issued.serial)
        if url_change is not None:
            await self.purge(ctx, job)
        event = CertificateIssued(
            certificate_id=certificate_id,
            node_id=job.node_id,
            kind="domain",
            environment_id=job.environment_id,
            names=issued.names,
            issuer=issued.issuer,
            serial=issued.serial,
            not_before=format_ts(issued.not_before.astimezone(UTC)),
            not_after=format_ts(issued.not_after.astimezone(UTC)),
            renew_at=format_ts(issued.renew_at.astimezone(UTC)),
            key_secret_id="",
            chain_pem=issued.fullchain_pem.decode(),
            job_id=ctx.job_id,
        )
        await ctx.command(
            record_issued(
                ctx.sealer(), event, issued.key_pem, [d.id for d in activated], replaced_key
            )
        )
        ctx.log(f"{', '.join(hostnames)} served with certificate {issued.serial}")

    async def account(self, ctx: WorkerPort) -> Account:
        return await acme_account(ctx, self.acme)

    @staticmethod
    async def check_served(
        ctx: WorkerPort, job: DomainJob, hostnames: list[str], serial: str
    ) -> None:
        """The node serves the certificate it was given, for every name (SNI)."""
        host = "127.0.0.1" if job.ports else str(job.public_address)
        port = int(job.ports["https"]) if job.ports else 443
        await check_served(ctx, host, port, hostnames, serial)


class DomainAdd(_Issuing[NoArgs]):
    """Check DNS, get the certificate, serve the domains (`domain-add.yml`)."""

    kind = "domain_add"
    args = NoArgs

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        job = await self.job(ctx)
        by_id = {d.id: d for d in job.domains}
        # In the job's order: the name asked for first, its www twin after (it redirects).
        mine = [by_id[i] for i in job.job_domain_ids if i in by_id and by_id[i].status == "pending"]
        if not mine:
            ctx.log("no pending domain for this job: nothing to do")
            return
        hostnames = [d.hostname for d in mine]
        await self.preflight(ctx, job, hostnames)
        await self.serve(ctx, job, hostnames, new_id(), activated=mine, replaced_key=None)


class CertificateRenew(_Issuing[RenewArgs]):
    """A new certificate for the same names, installed in place of the old one (its
    files overwritten, nginx reloaded), the served serial checked. One attempt: the
    scan asks again later (a CA counts failed validations)."""

    kind = "certificate_renew"
    args = RenewArgs
    max_attempts = 1

    async def work(self, ctx: WorkerPort, args: RenewArgs) -> None:
        certificate = await ctx.load(CERTIFICATE_JOB, args.certificate_id)
        if certificate is None or certificate.status != "active":
            raise JobFailure(DOMAIN_GONE, "the certificate is gone or was never issued")
        job = await self.job(ctx)
        # The names still served with it (a removed twin is not ordered again).
        names = [
            d.hostname
            for d in job.domains
            if d.certificate_id == certificate.id and d.status == "active"
        ]
        if not names:
            raise JobFailure(DOMAIN_GONE, "no active domain uses the certificate any more")
        ctx.log(f"renewing the certificate of {', '.join(names)}")
        await self.preflight(ctx, job, names)
        await self.serve(
            ctx,
            job,
            names,
            certificate.id,
            activated=[],
            replaced_key=certificate.key_secret_id,
        )


class DomainPrimary(_DomainWorker[PrimaryArgs]):
    """Move WordPress's URL to another active domain (`domain-add.yml`)."""

    kind = "domain_primary"
    args = PrimaryArgs

    async def work(self, ctx: WorkerPort, args: PrimaryArgs) -> None:
        job = await self.job(ctx)
        target = next((d for d in job.domains if d.id == args.domain_id), None)
        if target is None or target.status != "active":
            raise JobFailure(DOMAIN_GONE, "the domain is gone or no longer active")
        current = _current_primary(job)
        blocks = self.served_blocks(job, target.hostname, {})
        url_change = {
            "from": _url(current.hostname if current else None, job),
            "to": _url(target.hostname, job),
        }
        moves = f"{url_change['from']} → {url_change['to']}"
        ctx.log(f"{target.hostname} becomes the primary domain: {moves}")
        await self.playbook(
            ctx,
            DOMAIN_ADD_PLAYBOOK,
            job,
            {"domain_blocks": blocks, "domain_certificate": None, "domain_url_change": url_change},
        )
        await ctx.command(record_primary(job.environment_id, target.id, ctx.job_id))
        await self.purge(ctx, job)


class DomainRemove(_DomainWorker[NoArgs]):
    """Remove a domain's server block and certificate (`domain-remove.yml`)."""

    kind = "domain_remove"
    args = NoArgs

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        job = await self.job(ctx)
        gone = next((d for d in job.domains if d.id in job.job_domain_ids), None)
        if gone is None or gone.status != "removing":
            ctx.log("the domain is not being removed: nothing to do")
            return
        rest = msgspec.structs.replace(job, domains=[d for d in job.domains if d.id != gone.id])
        primary = _current_primary(job)
        new_primary = None if primary is None or primary.id == gone.id else primary.hostname
        url_change = None
        if primary is not None and primary.id == gone.id:
            url_change = {"from": _url(gone.hostname, job), "to": _url(None, job)}
            ctx.log(f"{gone.hostname} was the primary domain: back to {url_change['to']}")
        still_used = any(
            d.certificate_id == gone.certificate_id for d in rest.domains if d.certificate_id
        )
        await self.playbook(
            ctx,
            DOMAIN_REMOVE_PLAYBOOK,
            job,
            {
                "domain_removed": gone.hostname,
                "domain_removed_certificate": None if still_used else gone.certificate_id,
                "domain_blocks": self.served_blocks(rest, new_primary, {}),
                "domain_url_change": url_change,
            },
        )
        if url_change is not None:
            await self.purge(ctx, job)
        cleared = job.environment_id if url_change is not None else None
        await ctx.command(record_removed(gone.id, ctx.job_id, cleared))


def acme_code(exc: AcmeError) -> str:
    """The job code of an ACME failure (an unreachable CA is tried again)."""
    return ACME_UNREACHABLE if exc.code == "acme_unreachable" else ACME_FAILED
