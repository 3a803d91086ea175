"""The control plane's settings: read them, change them (one `settings.changed` event).

Rules (from the reference's routing section, decided where it was silent):
- `control_plane_domain` and `preview_domain` are DNS names (lower-cased, ≥ 2 labels,
  a TLD that starts with a letter, so no IP addresses).
- A `preview_domain` needs DNS-01 (`dns01_provider` and `dns01_credentials`), because
  previews are served under a wildcard certificate.
- `dns01_credentials` are write-only: sealed in the vault, never returned or logged;
  the provider's adapter (`pressluft.runners.dns`) decides which keys are required
  and accepted, and checks them.
  Changing the provider requires new credentials in the same request; clearing the
  provider clears the credentials. Credentials sealed under a lost key are replaced.
- The control-plane domain may not lie under the preview wildcard.
- A change that changes nothing appends nothing.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Annotated

import msgspec

from pressluft.acting import Context
from pressluft.contexts.domains import (
    DNS01_PROVIDERS,
    Dns01CredentialsInvalid,
    credential_fields,
    dns01_provider,
)
from pressluft.contexts.settings.events import SettingsChanged
from pressluft.db import Database, WriteTx
from pressluft.errors import BadRequest, StreamConflict, ValidationFailed
from pressluft.events import append
from pressluft.http.idempotency import Answered
from pressluft.http.writes import Retry, Writer
from pressluft.vault import Vault, VaultError

__all__ = [
    "HOSTNAME_PATTERN",
    "Settings",
    "SettingsPatch",
    "SettingsView",
    "change_settings",
    "change_settings_command",
    "get_settings",
]

STREAM = "settings"

HOSTNAME_PATTERN = (
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_HOSTNAME = re.compile(HOSTNAME_PATTERN)


def _keys(provider: str) -> str:
    """A provider's credential keys, for a hint."""
    if provider not in DNS01_PROVIDERS:
        return "use one of " + ", ".join(DNS01_PROVIDERS)
    fields = credential_fields(provider)
    return ", ".join(k if required else f"{k} (optional)" for k, required in fields)


Hostname = Annotated[str, msgspec.Meta(max_length=253, pattern=HOSTNAME_PATTERN)]
CredentialValue = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
CredentialKey = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Provider = Annotated[str, msgspec.Meta(pattern=r"^(rfc2136|cloudflare)$")]


class SettingsView(msgspec.Struct, frozen=True, kw_only=True):
    """The settings as the API returns them (credentials only as a flag)."""

    control_plane_domain: str | None
    preview_domain: str | None
    dns01_provider: str | None
    dns01_credentials_configured: bool
    version: int
    updated_at: str | None


class SettingsPatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A partial change; omitted fields stay as they are, `null` clears."""

    control_plane_domain: Hostname | msgspec.UnsetType | None = msgspec.UNSET
    preview_domain: Hostname | msgspec.UnsetType | None = msgspec.UNSET
    dns01_provider: Provider | msgspec.UnsetType | None = msgspec.UNSET
    dns01_credentials: (
        Annotated[dict[CredentialKey, CredentialValue], msgspec.Meta(min_length=1, max_length=16)]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET

    def is_empty(self) -> bool:
        return all(getattr(self, f) is msgspec.UNSET for f in self.__struct_fields__)


class _Row(msgspec.Struct, kw_only=True):
    control_plane_domain: str | None = None
    preview_domain: str | None = None
    dns01_provider: str | None = None
    dns01_credentials_ref: str | None = None
    version: int = 0
    updated_at: str | None = None

    def view(self) -> SettingsView:
        return SettingsView(
            control_plane_domain=self.control_plane_domain,
            preview_domain=self.preview_domain,
            dns01_provider=self.dns01_provider,
            dns01_credentials_configured=self.dns01_credentials_ref is not None,
            version=self.version,
            updated_at=self.updated_at,
        )


def _load(conn: sqlite3.Connection) -> _Row:
    row = conn.execute(
        "SELECT control_plane_domain, preview_domain, dns01_provider, dns01_credentials_ref,"
        " state_version, updated_at FROM settings WHERE id = 1"
    ).fetchone()
    if row is None:
        return _Row()
    return _Row(
        control_plane_domain=row[0],
        preview_domain=row[1],
        dns01_provider=row[2],
        dns01_credentials_ref=row[3],
        version=row[4],
        updated_at=row[5],
    )


async def get_settings(db: Database) -> SettingsView:
    return (await db.read(_load)).view()


def _hostname(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    normal = value.strip().lower()
    if len(normal) > 253 or not _HOSTNAME.match(normal):
        raise ValidationFailed(
            f"{field} must be a DNS name such as example.com",
            details={"errors": [{"field": field, "message": "not a valid DNS name"}]},
        )
    return normal


def _opens_to(vault: Vault, tx: WriteTx, ref: str, plaintext: bytes) -> bool:
    """Whether the sealed secret `ref` holds `plaintext`; False if it cannot be opened."""
    try:
        return vault.open(tx.conn, ref) == plaintext
    except VaultError:
        return False  # sealed under a lost key: replace it


def _invalid(field: str, message: str, hint: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}",
        details={"errors": [{"field": field, "message": message}], "hint": hint},
    )


def _decide(
    tx: WriteTx, vault: Vault, patch: SettingsPatch, expected_version: int | None
) -> tuple[_Row, SettingsChanged | None]:
    """Validate `patch` against the current row; the event to append (or None)."""
    current = _load(tx.conn)
    if expected_version is not None and expected_version != current.version:
        raise StreamConflict(STREAM, expected_version, current.version)
    changes: dict[str, str | None] = {}

    if patch.control_plane_domain is not msgspec.UNSET:
        changes["control_plane_domain"] = _hostname(
            "control_plane_domain", patch.control_plane_domain
        )
    if patch.preview_domain is not msgspec.UNSET:
        changes["preview_domain"] = _hostname("preview_domain", patch.preview_domain)

    provider = current.dns01_provider
    if patch.dns01_provider is not msgspec.UNSET:
        provider = patch.dns01_provider
        if provider is not None and provider not in DNS01_PROVIDERS:
            raise _invalid(
                "dns01_provider",
                f"unknown provider {provider!r}",
                "use one of " + ", ".join(DNS01_PROVIDERS),
            )
        changes["dns01_provider"] = provider

    credentials_ref = current.dns01_credentials_ref
    new_credentials = patch.dns01_credentials
    provider_changed = provider != current.dns01_provider
    if new_credentials is msgspec.UNSET:
        if provider is None:
            credentials_ref = None
        elif provider_changed and credentials_ref is not None:
            raise _invalid(
                "dns01_credentials",
                "a new provider needs its own credentials",
                f"{provider} needs dns01_credentials: {_keys(provider)}",
            )
    elif new_credentials is None:
        credentials_ref = None
    else:
        if provider is None:
            raise _invalid(
                "dns01_credentials",
                "credentials need a dns01_provider",
                "set dns01_provider in the same request",
            )
        try:
            dns01_provider(provider, new_credentials)
        except Dns01CredentialsInvalid as exc:
            raise _invalid(
                "dns01_credentials", str(exc), f"{provider} takes {_keys(provider)}"
            ) from exc
        plaintext = msgspec.json.encode(dict(sorted(new_credentials.items())))
        unchanged = (
            credentials_ref is not None
            and not provider_changed
            and _opens_to(vault, tx, credentials_ref, plaintext)
        )
        if not unchanged:
            credentials_ref = vault.seal(tx.conn, "dns01_credentials", plaintext, tx.now_ts)

    if credentials_ref != current.dns01_credentials_ref:
        if current.dns01_credentials_ref is not None:
            vault.destroy(tx.conn, current.dns01_credentials_ref)
        changes["dns01_credentials_ref"] = credentials_ref

    preview = changes.get("preview_domain", current.preview_domain)
    if preview is not None and provider is not None and provider not in DNS01_PROVIDERS:
        raise _invalid(
            "dns01_provider",
            f"{provider} has no DNS-01 adapter any more",
            "set dns01_provider to one of " + ", ".join(DNS01_PROVIDERS) + " with its credentials",
        )
    if preview is not None and (provider is None or credentials_ref is None):
        raise _invalid(
            "preview_domain",
            "a preview domain needs DNS-01 (dns01_provider and dns01_credentials)",
            "previews use a wildcard certificate issued over DNS-01; configure both first",
        )
    panel = changes.get("control_plane_domain", current.control_plane_domain)
    if panel is not None and preview is not None and panel.endswith("." + preview):
        raise _invalid(
            "control_plane_domain",
            f"{panel} lies under the preview wildcard *.{preview}",
            "use a control-plane domain outside the preview domain",
        )

    effective = {k: v for k, v in changes.items() if getattr(current, k) != v}
    if not effective:
        return current, None
    return current, SettingsChanged(**effective)


def change_settings_command(
    vault: Vault,
    patch: SettingsPatch,
    ctx: Context,
    expected_version: int | None = None,
) -> Callable[[WriteTx], SettingsView]:
    """Apply `patch`; appends one `settings.changed` when anything changes."""
    if patch.is_empty():
        raise BadRequest(
            "the request body must contain at least one setting",
            details={"hint": "send one or more of " + ", ".join(SettingsPatch.__struct_fields__)},
        )

    def command(tx: WriteTx) -> SettingsView:
        current, event = _decide(tx, vault, patch, expected_version)
        if event is None:
            return current.view()
        append(tx, STREAM, current.version, [event], ctx.meta())
        return _load(tx.conn).view()

    return command


async def change_settings(
    db: Database,
    vault: Vault,
    patch: SettingsPatch,
    ctx: Context,
    expected_version: int | None = None,
) -> SettingsView:
    return await db.write(change_settings_command(vault, patch, ctx, expected_version))


class Settings:
    """The settings service routes and pages call."""

    def __init__(self, db: Database, writer: Writer, vault: Callable[[], Vault]) -> None:
        self._db = db
        self._writer = writer
        self._vault = vault

    async def get(self) -> SettingsView:
        return await get_settings(self._db)

    async def change(
        self,
        patch: SettingsPatch,
        ctx: Context,
        *,
        expected_version: int | None,
        retry: Retry | None,
    ) -> Answered[SettingsView]:
        command = change_settings_command(self._vault(), patch, ctx, expected_version)
        return await self._writer.run(command, SettingsView, 200, retry)
