"""`certificate_scan` (the scheduler runs it every `certificate_scan_seconds`): a
`certificate_renew` for each custom-domain certificate past its renewal time, and a
`preview_certificate` for each node whose preview wildcard is missing, for another
preview domain, due, or failed over an hour ago; `certificate.expiry_noticed` for each
served certificate under 14 days from expiry (once per expiry)."""

from __future__ import annotations

from pressluft.contexts.domains.commands import announce_expiring, queue_due_renewals
from pressluft.contexts.domains.preview_worker import PreviewCertificate
from pressluft.contexts.domains.previews import queue_due_previews
from pressluft.contexts.domains.workers import CertificateRenew
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = ["CertificateScan"]


class CertificateScan(JobWorker[NoArgs]):
    """Queue the renewals and preview wildcards due."""

    kind = "certificate_scan"
    args = NoArgs
    timeout_seconds = 60
    node_lock = "shared"

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        renewals = await ctx.command(queue_due_renewals(CertificateRenew))
        previews = await ctx.command(queue_due_previews(PreviewCertificate))
        for certificate_id in await ctx.command(announce_expiring()):
            ctx.log(f"certificate {certificate_id} expires within 14 days", "stderr")
        if not renewals and not previews:
            ctx.log("no certificate due")
            return
        if renewals:
            ctx.log(f"{len(renewals)} renewal(s) queued")
        if previews:
            ctx.log(f"{len(previews)} preview wildcard(s) queued")
