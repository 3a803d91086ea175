"""Events of the control plane's settings (stream `settings`)."""

from __future__ import annotations

import msgspec

from pressluft.events.types.base import Event

__all__ = ["SettingsChanged"]

_UNSET = msgspec.UNSET


class SettingsChanged(Event, frozen=True, tag="settings.changed"):
    """Some settings changed; fields left unset did not change.

    `dns01_credentials_ref` is the id of a sealed secret, never the credentials.
    """

    control_plane_domain: str | msgspec.UnsetType | None = _UNSET
    preview_domain: str | msgspec.UnsetType | None = _UNSET
    dns01_provider: str | msgspec.UnsetType | None = _UNSET
    dns01_credentials_ref: str | msgspec.UnsetType | None = _UNSET
