"""`/api/environments/{id}/domains`, `/api/domains`, `/api/certificates` and
`/api/nodes/{id}/preview-certificate`: attach, list, read, remove domains, make one
primary; the certificate inventory; a node's preview wildcard now."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import Body, PathParameter, QueryParameter

from pressluft.acting import Context
from pressluft.contexts.domains.commands import AddDomainRequest, DomainAccepted, JobAccepted
from pressluft.contexts.domains.queries import CertificateView, DomainView
from pressluft.contexts.domains.service import Domains
from pressluft.http.writes import answer, retry_of

__all__ = ["DOMAIN_ROUTES"]

EnvironmentIdParam = Annotated[str, PathParameter(name="environment_id")]  # not an id: 404
DomainIdParam = Annotated[str, PathParameter(name="domain_id")]  # likewise
NodeIdParam = Annotated[str, PathParameter(name="node_id")]  # likewise
CertificateIdParam = Annotated[str, PathParameter(name="certificate_id")]  # likewise
Confirm = Annotated[str | None, QueryParameter(max_length=253)]


@get("/api/environments/{environment_id:str}/domains", operation_id="listDomains", tags=["domains"])
async def domains(
    domains: NamedDependency[Domains], environment_id: EnvironmentIdParam
) -> list[DomainView]:
    return await domains.list(environment_id)


@post(
    "/api/environments/{environment_id:str}/domains",
    operation_id="addDomain",
    status_code=202,
    tags=["domains"],
)
async def add_domain(
    request: Request[Any, Any, Any],
    domains: NamedDependency[Domains],
    ctx: NamedDependency[Context],
    environment_id: EnvironmentIdParam,
    data: Annotated[AddDomainRequest, Body()],
) -> Response[DomainAccepted]:
    done = await domains.add(environment_id, data, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@get("/api/domains/{domain_id:str}", operation_id="getDomain", tags=["domains"])
async def domain(domains: NamedDependency[Domains], domain_id: DomainIdParam) -> DomainView:
    return await domains.get(domain_id)


@delete(
    "/api/domains/{domain_id:str}", operation_id="removeDomain", status_code=202, tags=["domains"]
)
async def remove_domain(
    request: Request[Any, Any, Any],
    domains: NamedDependency[Domains],
    ctx: NamedDependency[Context],
    domain_id: DomainIdParam,
    confirm: Confirm = None,
) -> Response[JobAccepted]:
    done = await domains.remove(domain_id, confirm, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@post(
    "/api/domains/{domain_id:str}/primary",
    operation_id="makeDomainPrimary",
    status_code=202,
    tags=["domains"],
)
async def make_primary(
    request: Request[Any, Any, Any],
    domains: NamedDependency[Domains],
    ctx: NamedDependency[Context],
    domain_id: DomainIdParam,
) -> Response[JobAccepted]:
    done = await domains.make_primary(domain_id, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@get("/api/certificates", operation_id="listCertificates", tags=["domains"])
async def certificates(domains: NamedDependency[Domains]) -> list[CertificateView]:
    return await domains.certificates()


@post(
    "/api/certificates/{certificate_id:str}/renew",
    operation_id="renewCertificate",
    status_code=202,
    tags=["domains"],
)
async def renew_certificate(
    request: Request[Any, Any, Any],
    domains: NamedDependency[Domains],
    ctx: NamedDependency[Context],
    certificate_id: CertificateIdParam,
) -> Response[JobAccepted]:
    done = await domains.renew(certificate_id, ctx, await retry_of(request, ctx))
    return answer(done, 202)


@post(
    "/api/nodes/{node_id:str}/preview-certificate",
    operation_id="issuePreviewCertificate",
    status_code=202,
    tags=["domains"],
)
async def issue_preview_certificate(
    request: Request[Any, Any, Any],
    domains: NamedDependency[Domains],
    ctx: NamedDependency[Context],
    node_id: NodeIdParam,
) -> Response[JobAccepted]:
    done = await domains.issue_preview(node_id, ctx, await retry_of(request, ctx))
    return answer(done, 202)


DOMAIN_ROUTES = [
    domains,
    add_domain,
    domain,
    remove_domain,
    make_primary,
    certificates,
    renew_certificate,
    issue_preview_certificate,
]
