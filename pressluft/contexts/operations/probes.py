"""Direct queries of the Docker engine `pressluft dev` would use: is it reachable,
which version, and is the node image there (for `pressluft doctor`); and of the
package's playbooks: are they Pressluft's, all there (doctor and the health check)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pressluft.runners.ansible import ANSIBLE_DIR
from pressluft.runners.images import ImageInputs, image_tag
from pressluft.runners.playbooks import PlaybooksCheck, check_playbooks
from pressluft.runners.providers import resolve_docker_host

__all__ = ["ANSIBLE_DIR", "EngineProbe", "PlaybooksCheck", "probe_docker", "probe_playbooks"]


def probe_playbooks(ansible_dir: Path = ANSIBLE_DIR, *, deep: bool = True) -> PlaybooksCheck:
    """The playbooks jobs will run (the package's `ansible/` unless told): Pressluft's?"""
    return check_playbooks(ansible_dir, deep=deep)


@dataclass(frozen=True)
class EngineProbe:
    """What the engine answered; `url` None: no engine found (or configured)."""

    url: str | None
    image: str = ""
    version: str | None = None
    image_present: bool = False
    #: Why the engine could not be reached (an exception's type name).
    error: str | None = None


def probe_docker(setting: str) -> EngineProbe:
    """Ask the engine named by a `docker_host` setting for its version and the node image."""
    url = resolve_docker_host(setting)
    if url is None:
        return EngineProbe(url=None)
    image = image_tag(ImageInputs())
    try:
        import docker

        client = docker.DockerClient(base_url=url, timeout=3)
        try:
            version = client.version().get("Version", "?")
            present = bool(client.images.list(name=image))
        finally:
            client.close()
    except Exception as exc:
        return EngineProbe(url=url, image=image, error=type(exc).__name__)
    return EngineProbe(url=url, image=image, version=version, image_present=present)
