"""The control plane's own backup and its restore on a new machine.

`control_plane_backup` (every 6 h, and on request) copies the database with
SQLite's online backup (consistent while the daemon writes), packs it with the
vault's master key into one tar and stores it in the repository
`{prefix}/control-plane` of the backup target, whose password is the recovery key
(`recovery.py`): nothing of it is readable without the kit. Without an exported
kit there is nothing to back up with (the job says so).

`restore_control_plane` (the CLI's `pressluft restore-control-plane`) brings the
latest copy (or a chosen one) into an empty data dir.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tarfile
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

from pressluft.contexts.backups.events import ControlPlaneCopyStored
from pressluft.contexts.backups.loaders import RECOVERY_KEY
from pressluft.contexts.backups.recovery import CONTROL_PLANE_PATH, RecoveryKit
from pressluft.contexts.backups.workers import _engine_failure, _target
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort
from pressluft.runners import restic
from pressluft.runners.s3 import Target, restic_url

__all__ = ["ControlPlaneBackup", "Restored", "restore_control_plane"]

TAG = "control-plane"
ARCHIVE = "control-plane.tar"
_DB = "pressluft.db"
_KEY = "secrets/master.key"


def _copy_database(source: Path, target: Path) -> int:
    """SQLite's online backup of `source` into `target`; the event log's head in it."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        (head,) = dst.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    finally:
        dst.close()
        src.close()
    return int(head)


def _pack(db_copy: Path, master_key: Path, archive: Path) -> None:
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(db_copy, arcname=_DB)
        tar.add(master_key, arcname=_KEY)


async def _chunks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, size):
            yield chunk


class ControlPlaneBackup(JobWorker[NoArgs]):
    """`control_plane_backup`: the database and the vault's key into the control
    plane's own repository."""

    kind = "control_plane_backup"
    args = NoArgs
    timeout_seconds = 3600
    max_attempts = 2
    node_lock = "shared"
    unique = True

    def __init__(self, data_dir: Path, cache_dir: Path) -> None:
        self.data_dir = data_dir
        self.cache_dir = cache_dir

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        secret_id = await ctx.load(RECOVERY_KEY, None)
        if secret_id is None:
            ctx.log(
                "no recovery kit exported yet: nothing to back the control plane up with"
                " (`pressluft recovery-kit export`)",
                "stderr",
            )
            return
        target = await _target(ctx)
        repo = restic.Repository(
            url=restic_url(target, CONTROL_PLANE_PATH),
            password=await ctx.secret(secret_id),
            target=target,
            cache_dir=self.cache_dir,
        )
        work = ctx.work_dir
        copy, archive = work / _DB, work / ARCHIVE
        head = await asyncio.to_thread(_copy_database, self.data_dir / _DB, copy)
        await asyncio.to_thread(_pack, copy, self.data_dir / _KEY, archive)
        copy.unlink()
        try:
            await restic.ensure_initialized(repo)
            stored = await restic.backup_stream(repo, _chunks(archive), ARCHIVE, [TAG])
        except restic.ResticError as exc:
            raise _engine_failure(exc) from exc
        event = ControlPlaneCopyStored(
            snapshot_id=stored.snapshot_id,
            job_id=ctx.job_id,
            sha256=stored.sha256,
            size_bytes=stored.size,
            events=head,
        )
        await ctx.record("control_plane", [event])
        ctx.log(f"control plane backed up: {head} events, {stored.size} bytes"
                f" (snapshot {stored.snapshot_id[:8]})")  # fmt: skip


@dataclass(frozen=True)
class Restored:
    snapshot_id: str
    taken_at: str


def _target_of(kit: RecoveryKit, source: str | None) -> Target:
    """The kit's target, or `source` (`http(s)://host[:port]/bucket[/prefix]`) with the
    kit's credentials."""
    endpoint, bucket, prefix = kit.target.endpoint, kit.target.bucket, kit.target.prefix
    if source:
        scheme, _, rest = source.partition("://")
        host, _, path = rest.partition("/")
        bucket, _, prefix = path.strip("/").partition("/")
        endpoint = f"{scheme}://{host}"
        if not host or not bucket or scheme not in ("http", "https"):
            raise ValueError(f"--from {source!r}: expected https://host[:port]/bucket[/prefix]")
    return Target(
        endpoint=endpoint,
        region=kit.target.region,
        bucket=bucket,
        prefix=prefix,
        access_key_id=kit.target.access_key_id,
        secret_access_key=kit.target.secret_access_key,
    )


def _unpack(archive: Path, data_dir: Path) -> None:
    """Only the database and the master key, with the modes the daemon wants."""
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        if set(members) != {_DB, _KEY}:
            raise ValueError(f"unexpected contents in the copy: {sorted(members)}")
        (data_dir / "secrets").mkdir(mode=0o700, parents=True, exist_ok=True)
        for name in (_KEY, _DB):
            handle = tar.extractfile(members[name])
            assert handle is not None
            path = data_dir / name
            path.write_bytes(handle.read())
            path.chmod(0o600)


def _prepare(data_dir: Path) -> None:
    if (data_dir / _DB).exists():
        raise ValueError(f"{data_dir} holds a database already: restore into an empty data dir")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


async def restore_control_plane(
    kit: RecoveryKit, data_dir: Path, source: str | None = None, snapshot: str | None = None
) -> Restored:
    """The control plane's latest copy (or `snapshot`) into `data_dir`, which must hold
    no database. ValueError for what the operator must fix; restic's errors as raised."""
    await asyncio.to_thread(_prepare, data_dir)
    target = _target_of(kit, source)
    repo = restic.Repository(
        url=restic_url(target, CONTROL_PLANE_PATH),
        password=kit.recovery_key,
        target=target,
        cache_dir=data_dir / "cache" / "restic",
    )
    found = await restic.snapshots(repo, TAG)
    if not found:
        raise ValueError(f"no copy of a control plane in {repo.url}")
    chosen = found[-1]
    if snapshot:
        matching = [s for s in found if s.id.startswith(snapshot)]
        if not matching:
            raise ValueError(f"no copy {snapshot} in {repo.url}")
        chosen = matching[-1]
    archive = data_dir / f".{ARCHIVE}.partial"
    out = await asyncio.to_thread(archive.open, "wb")
    try:
        with out:
            async with aclosing(restic.dump_stream(repo, chosen.id, ARCHIVE)) as chunks:
                async for chunk in chunks:
                    await asyncio.to_thread(out.write, chunk)
        await asyncio.to_thread(_unpack, archive, data_dir)
    finally:
        await asyncio.to_thread(archive.unlink, True)
    return Restored(snapshot_id=chosen.id, taken_at=chosen.time.isoformat())
