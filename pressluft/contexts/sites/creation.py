"""Create a site: its production environment built on an explicit node by the
`site_create` job; and what every new environment gets (its preview URL from its
node and the settings, fresh passwords).

The command records `site.created` + `environment.created` with the sealed
database and admin passwords and enqueues `site_create` (site, environment and
node locks) in one transaction; the job's worker is in `workers`. Staging and
clone environments, deletion and reset: `environments`. See specs/sites.md.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from pressluft.contexts.nodes import NodeNotReady, NodePorts
from pressluft.contexts.sites.events import EnvironmentCreated, SiteCreated
from pressluft.contexts.sites.workers import SiteCreate, SiteCreateArgs
from pressluft.db import WriteTx
from pressluft.errors import BadRequest, Conflict, ValidationFailed
from pressluft.events import Meta, append
from pressluft.events.log import NO_STREAM
from pressluft.ids import is_uuid, new_id
from pressluft.jobs.workers import enqueue_job
from pressluft.names import NAME_RULE, is_printable_name
from pressluft.vault import Vault

__all__ = [
    "CreateSiteRequest",
    "SiteAccepted",
    "create_site_command",
    "lab_http_port",
    "preview_address",
    "preview_url",
    "secret_password",
]


class CreateSiteRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    slug: str
    node_id: str
    #: The WordPress site title (default: the name).
    title: str | None = None
    admin_email: str | None = None
    #: The WordPress administrator's login (default: `admin-` and 8 random hex digits).
    admin_user: str | None = None


class SiteAccepted(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    site_id: str
    environment_id: str


# -- commands ---------------------------------------------------------------------------

_SLUG = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: What WordPress's is_email() accepts, in short (an address it refuses fails the install).
#: WordPress's strict user names (sanitize_user(…, true)), without spaces.
_ADMIN_USER = re.compile(r"[A-Za-z0-9_.@-]{1,60}")
_EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@({_LABEL}\.)+[A-Za-z]{{2,63}}")


def _check_site(request: CreateSiteRequest) -> None:
    errors = []
    for field, value in (("name", request.name), ("title", request.title)):
        if value is not None and not is_printable_name(value):
            errors.append((field, NAME_RULE))
    if not _SLUG.fullmatch(request.slug):
        errors.append(("slug", "1-40 lowercase letters, digits and dashes"))
    if not is_uuid(request.node_id):
        errors.append(("node_id", "a node id (UUID)"))
    if request.admin_user is not None and not _ADMIN_USER.fullmatch(request.admin_user):
        errors.append(("admin_user", "1-60 letters, digits and . _ - @ (a WordPress login name)"))
    email = request.admin_email
    if email is not None and not (len(email) <= 254 and _EMAIL.fullmatch(email)):
        errors.append(("admin_email", "an email address"))
    if errors:
        raise BadRequest(
            "invalid site",
            details={"errors": [{"field": f, "message": m, "in": "body"} for f, m in errors]},
        )


def preview_url(
    environment_id: str,
    preview_domain: str | None,
    address: str | None,
    lab_http_port: int | None = None,
) -> str:
    """The reference's rule: `https://{uuid8}.{preview_domain}` (served under the
    node's wildcard certificate: the certificate scan orders it for every active node
    once a preview domain is set, and the environment's build adds its TLS block when
    the node has it), else `http://{uuid8}.{ip-dashed}.sslip.io`.

    A lab node (`lab_http_port`: its web server published on that loopback port of
    the operator's machine) gets `http://{uuid8}.localhost:{port}` instead: browsers
    resolve `*.localhost` to loopback without DNS, and port 80 there is not the node.
    With a preview domain it also answers at `https://{uuid8}.{preview_domain}` on its
    published HTTPS port."""
    uuid8 = environment_id[:8]
    if lab_http_port is not None:
        return f"http://{uuid8}.localhost:{lab_http_port}"
    if preview_domain:
        return f"https://{uuid8}.{preview_domain}"
    if address is None:
        raise NodeNotReady(
            "the node has no IP address to build a preview URL from",
            details={"hint": "set the node's public IP, or a preview domain in the settings"},
        )
    return f"http://{uuid8}.{address.replace('.', '-').replace(':', '-')}.sslip.io"


def preview_address(public_ip: str | None, host: str) -> str | None:
    """The node's IP for its environments' preview URLs (its public IP, or its
    address when that is an IP)."""
    for candidate in (public_ip, host):
        if candidate is None:
            continue
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def lab_http_port(provider: str, ports_json: str | None) -> int | None:
    """A lab node's published HTTP port (fixed for its container's life); None for
    other nodes. A container from before fixed web ports gets new ones at every
    start: a URL with its port would break, so it hosts nothing new (node_not_ready)."""
    if provider != "docker" or ports_json is None:
        return None
    ports = msgspec.json.decode(ports_json, type=NodePorts)
    if not ports.web_fixed:
        raise NodeNotReady(
            "this lab node's container predates fixed web ports: its HTTP port changes"
            " at every start, and a URL with it would break",
            details={"hint": "decommission the node and create it again"},
        )
    return ports.http


def secret_password() -> bytes:
    """A fresh password for an environment (database, WordPress admin)."""
    return secrets.token_urlsafe(24).encode()


def _mail_domain(url: str) -> str:
    """The default admin address's domain: the preview host, without a lab node's port."""
    return str(urlsplit(url).hostname)


def create_site_command(
    request: CreateSiteRequest, vault: Vault, meta: Meta
) -> Callable[[WriteTx], SiteAccepted]:
    """Record a site and its production environment; queue `site_create`."""
    _check_site(request)

    def command(tx: WriteTx) -> SiteAccepted:
        node = tx.conn.execute(
            "SELECT name, status, ready, host, public_ip, provider, ports_json FROM nodes"
            " WHERE id = ?",
            (request.node_id,),
        ).fetchone()
        if node is None or node[1] == "decommissioned":
            raise ValidationFailed(
                "no such node",
                details={"errors": [{"field": "node_id", "message": "no live node", "in": "body"}]},
            )
        name, status, ready, host, public_ip, provider, ports_json = node
        if status != "active" or not ready:
            raise NodeNotReady(
                f"node {name} cannot host sites yet ({status}, "
                f"{'ready' if ready else 'not ready'})",
                details={"hint": "provision the node (POST /api/nodes/{id}/provision) first"},
            )
        taken = tx.conn.execute(
            "SELECT id FROM sites WHERE slug = ? AND status != 'deleted'", (request.slug,)
        ).fetchone()
        if taken is not None:
            raise Conflict(
                f"a site with slug {request.slug} exists",
                details={"site_id": taken[0], "hint": "choose another slug"},
            )
        (preview_domain,) = tx.conn.execute(
            "SELECT (SELECT preview_domain FROM settings WHERE id = 1)"
        ).fetchone()
        site_id, environment_id = new_id(), new_id()
        url = preview_url(
            environment_id,
            preview_domain,
            preview_address(public_ip, host),
            lab_http_port(provider, ports_json),
        )
        db_secret = vault.seal(tx.conn, "environment_db_password", secret_password(), tx.now_ts)
        admin_secret = vault.seal(
            tx.conn, "environment_admin_password", secret_password(), tx.now_ts
        )
        site = SiteCreated(
            site_id=site_id,
            name=request.name,
            slug=request.slug,
            primary_environment_id=environment_id,
        )
        environment = EnvironmentCreated(
            environment_id=environment_id,
            site_id=site_id,
            name="Production",
            slug="production",
            environment_type="production",
            node_id=request.node_id,
            preview_url=url,
            db_secret_id=db_secret,
            admin_secret_id=admin_secret,
            admin_user=request.admin_user or f"admin-{secrets.token_hex(4)}",
        )
        append(tx, f"site:{site_id}", NO_STREAM, [site], meta)
        append(tx, f"environment:{environment_id}", NO_STREAM, [environment], meta)
        args = SiteCreateArgs(
            title=request.title or request.name,
            admin_email=request.admin_email or f"admin@{_mail_domain(url)}",
        )
        job_id = enqueue_job(
            tx,
            SiteCreate,
            args,
            meta,
            site_id=site_id,
            environment_id=environment_id,
            node_id=request.node_id,
            holds=("environment", environment_id, "creating"),
        )
        return SiteAccepted(job_id=job_id, site_id=site_id, environment_id=environment_id)

    return command
