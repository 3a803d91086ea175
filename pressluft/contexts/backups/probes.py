"""Direct queries of the backups capability (no job): the storage target's probe —
an object written, read back and deleted — before the target is recorded."""

from __future__ import annotations

from pressluft.contexts.backups.commands import TargetRequest
from pressluft.errors import ValidationFailed
from pressluft.runners.s3 import Target, TargetError, probe

__all__ = ["probe_target"]


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
