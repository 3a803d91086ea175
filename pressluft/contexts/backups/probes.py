"""Direct queries of the backups capability (no job): the storage target's probe —
an object written, read back and deleted — before the target is recorded; an object
of a backup streamed, decrypted, to the operator (a download)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

from pressluft.contexts.backups.commands import TargetRequest
from pressluft.errors import ValidationFailed
from pressluft.runners import restic
from pressluft.runners.s3 import Target, TargetError, probe

__all__ = ["Download", "object_stream", "probe_target"]


@dataclass(frozen=True)
class Download:
    """What a download reads: the repository, its password and the object."""

    url: str
    password: str = field(repr=False)
    #: The target: endpoint, region, bucket, prefix, access key id, secret key.
    target: tuple[str, str, str, str, str, str] = field(repr=False)
    cache_dir: Path
    snapshot_id: str
    name: str


async def object_stream(download: Download) -> AsyncGenerator[bytes, None]:
    """The object's bytes as restic restores them (MAC-checked on the way)."""
    endpoint, region, bucket, prefix, key_id, secret = download.target
    target = Target(
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        prefix=prefix,
        access_key_id=key_id,
        secret_access_key=secret,
    )
    repo = restic.Repository(
        url=download.url, password=download.password, target=target, cache_dir=download.cache_dir
    )
    async with aclosing(restic.dump_stream(repo, download.snapshot_id, download.name)) as chunks:
        async for chunk in chunks:
            yield chunk


async def probe_target(request: TargetRequest) -> None:
    """422 naming the step that failed (write, read, delete; unreachable, refused key,
    missing bucket) and a hint; nothing when the probe passes."""
    target = Target(
        endpoint=request.endpoint,
        region=request.region,
        bucket=request.bucket,
        prefix=request.prefix,
        access_key_id=request.access_key_id,
        secret_access_key=request.secret_access_key,
    )
    try:
        await probe(target)
    except TargetError as exc:
        raise ValidationFailed(
            f"the backup target failed its probe: {exc.message}",
            details={"reason": exc.code, "hint": exc.hint},
        ) from exc
