"""restic, the backup engine, run on the control plane as an async subprocess: one
repository per site in the S3 storage target (`Repository`), and the operations
backups need — initialise, back up a stream, dump it back, verify it against its
recorded checksum, list, forget and prune snapshots, remove stale locks, measure.

Every call is `asyncio.create_subprocess_exec` of the `restic` on PATH (Debian's
package, 0.14 or newer; `find_restic`), never a shell. The child's environment is
built here and nothing else is inherited: the repository URL and password, the
storage key, region and restic's cache directory (the caller's), plus `HOME`,
`PATH` and `TMPDIR` (restic stages packs there). The password and the secret key
go only into that environment — never into argv, a message or a log line.

Locks stay on (a second restic on the same repository waits or fails instead of
racing); `unlock`, which removes only stale locks (a dead process's), runs before
every backup, forget and prune, so a killed backup never blocks the next one.

Failures are `ResticError`s, read from restic's stderr (restic 0.14 exits 1 for
all of them); `code` says what the operator can do:

- `RepositoryUnreachable` `BACKUP_TARGET_UNREACHABLE`: connection refused, no such
  host, timeouts, TLS;
- `RepositoryAuthFailed` `BACKUP_TARGET_AUTH_FAILED`: the storage refused the key;
- `WrongPassword` `BACKUP_REPOSITORY_LOCKED_OUT`: no key of the repository opens
  with this password;
- `RepositoryCorrupt` `BACKUP_CORRUPT`: restic's MAC check failed (a changed byte
  in the bucket), a pack is missing or damaged, or a dump's SHA-256 or size is not
  the one recorded;
- `ResticFailed` `BACKUP_ENGINE_FAILED`: anything else, with restic's last stderr
  lines; `ResticMissing` `BACKUP_ENGINE_MISSING`: no restic on PATH.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import msgspec

from pressluft.runners.s3 import Target

__all__ = [
    "HOST",
    "Repository",
    "RepositoryAuthFailed",
    "RepositoryCorrupt",
    "RepositoryUnreachable",
    "ResticError",
    "ResticFailed",
    "ResticMissing",
    "Snapshot",
    "Stored",
    "WrongPassword",
    "backup_stream",
    "dump_stream",
    "ensure_initialized",
    "find_restic",
    "forget",
    "prune",
    "raw_size",
    "snapshots",
    "unlock",
    "verify",
]

#: The host name every snapshot is recorded under (not the control plane's own:
#: a restored or moved control plane finds its snapshots under the same name).
HOST = "pressluft"
#: Bytes read from `restic dump` at a time.
CHUNK = 1 << 20
#: Lines of restic's stderr kept for an error's message.
TAIL_LINES = 12


class ResticError(Exception):
    """A restic operation failed; `code` is stable, `stderr` holds restic's last lines
    (without secrets)."""

    code: ClassVar[str] = "BACKUP_ENGINE_FAILED"

    def __init__(self, message: str, stderr: Sequence[str] = ()) -> None:
        super().__init__(f"{self.code}: {message}")
        self.message = message
        self.stderr = tuple(stderr)


class RepositoryUnreachable(ResticError):
    """The storage did not answer (connection refused, no such host, timeout, TLS)."""

    code = "BACKUP_TARGET_UNREACHABLE"


class RepositoryAuthFailed(ResticError):
    """The storage refused the access key (access denied, unknown key, bad signature)."""

    code = "BACKUP_TARGET_AUTH_FAILED"


class WrongPassword(ResticError):
    """No key of the repository opens with the password."""

    code = "BACKUP_REPOSITORY_LOCKED_OUT"


class RepositoryCorrupt(ResticError):
    """Data in the repository is damaged or missing, or not what was recorded."""

    code = "BACKUP_CORRUPT"


class ResticFailed(ResticError):
    """restic failed for another reason (its last stderr lines say which)."""

    code = "BACKUP_ENGINE_FAILED"


class ResticMissing(ResticError):
    """No `restic` on PATH."""

    code = "BACKUP_ENGINE_MISSING"


@dataclass(frozen=True)
class Repository:
    """One restic repository: its URL (`pressluft.runners.s3.restic_url`), password,
    the storage target holding it (its key and region) and restic's cache directory."""

    url: str
    password: str = field(repr=False)
    target: Target
    cache_dir: Path


@dataclass(frozen=True)
class Stored:
    """A stream backed up: the snapshot's full id, the stream's SHA-256 (hex) and size,
    and the new data the snapshot added to the repository — after deduplication,
    before compression (restic 0.14's `data_added`; `raw_size` measures what is
    stored)."""

    snapshot_id: str
    sha256: str
    size: int
    added_bytes: int


class Snapshot(msgspec.Struct, frozen=True):
    """A snapshot as `restic snapshots --json` lists it (the fields used here)."""

    id: str
    time: dt.datetime
    tags: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


class _Summary(msgspec.Struct):
    message_type: str
    snapshot_id: str = ""
    data_added: int = 0
    total_bytes_processed: int = 0


class _Stats(msgspec.Struct):
    total_size: int


def find_restic() -> str | None:
    """`restic` on PATH, or None."""
    return shutil.which("restic")


def _restic() -> str:
    found = find_restic()
    if found is None:
        raise ResticMissing(
            "restic is not installed on the control plane: install Debian's package "
            "(apt-get install restic)"
        )
    return found


def _env(repo: Repository) -> dict[str, str]:
    env = {
        "RESTIC_REPOSITORY": repo.url,
        "RESTIC_PASSWORD": repo.password,
        "AWS_ACCESS_KEY_ID": repo.target.access_key_id,
        "AWS_SECRET_ACCESS_KEY": repo.target.secret_access_key,
        "AWS_DEFAULT_REGION": repo.target.region,
        "RESTIC_CACHE_DIR": str(repo.cache_dir),
        "HOME": os.environ.get("HOME", str(repo.cache_dir)),
        "PATH": os.environ.get("PATH", os.defpath),
    }
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    return env


# -- reading restic's stderr ----------------------------------------------------

_WRONG_PASSWORD = ("wrong password or no key found",)
_AUTH = (
    "access denied",
    "accessdenied",
    "invalidaccesskeyid",
    "signaturedoesnotmatch",
    "signature we calculated does not match",
    "access key id you provided does not exist",
)
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "server misbehaving",
    "tls:",
    "x509:",
    "certificate",
)
_CORRUPT = re.compile(
    r"ciphertext verification failed|hash mismatch|checksum|\bpacks?\b|damaged"
    r"|<data/[0-9a-f]+>.*does not exist",  # a pack the index names is gone
    re.IGNORECASE,
)


def _scrub(repo: Repository, text: str) -> str:
    for secret in (repo.password, repo.target.secret_access_key):
        if secret:
            text = text.replace(secret, "…")
    return text


def _tail(repo: Repository, stderr: bytes) -> list[str]:
    lines = _scrub(repo, stderr.decode(errors="replace")).splitlines()
    return [line for line in lines if line.strip()][-TAIL_LINES:]


def _reason(tail: Sequence[str], words: Sequence[str] | re.Pattern[str] = ()) -> str:
    """The line of `tail` that says what went wrong: the first naming `words`, else
    restic's `Fatal:` line, else the last one."""
    for line in tail:
        lower = line.lower()
        if (isinstance(words, re.Pattern) and words.search(line)) or (
            not isinstance(words, re.Pattern) and any(w in lower for w in words)
        ):
            return line.removeprefix("Fatal: ")
    fatal = [line for line in tail if line.startswith("Fatal: ")]
    return (fatal or list(tail) or [""])[-1].removeprefix("Fatal: ")


def _failure(repo: Repository, doing: str, stderr: bytes, returncode: int | None) -> ResticError:
    """The error for restic's failed `doing`, judged by its stderr."""
    tail = _tail(repo, stderr)
    lower = "\n".join(tail).lower()
    where = f"restic {doing} of {repo.url}"
    if any(words in lower for words in _WRONG_PASSWORD):
        return WrongPassword(f"{where}: wrong password or no key found", tail)
    if any(words in lower for words in _AUTH):
        reason = _reason(tail, _AUTH)
        return RepositoryAuthFailed(f"{where}: the storage refused the key: {reason}", tail)
    if any(words in lower for words in _UNREACHABLE):
        reason = _reason(tail, _UNREACHABLE)
        return RepositoryUnreachable(f"{where}: the storage did not answer: {reason}", tail)
    if any(_CORRUPT.search(line) for line in tail):
        reason = _reason(tail, _CORRUPT)
        return RepositoryCorrupt(f"{where}: the repository's data is damaged: {reason}", tail)
    reason = _reason(tail) or f"exit status {returncode}"
    return ResticFailed(f"{where} failed (exit status {returncode}): {reason}", tail)


# -- running restic ---------------------------------------------------------------


def _die_with_parent() -> list[str]:
    """A prefix that has the kernel kill restic when the daemon dies (SIGKILL): a
    restic whose stdin closes because its feeder died would otherwise take the end of
    the pipe for the end of the stream and store a truncated snapshot. util-linux's
    setpriv sets the parent-death signal before it executes restic (no preexec_fn in
    a threaded daemon)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


async def _spawn(
    repo: Repository, args: Sequence[str], *, stdin: int | None
) -> asyncio.subprocess.Process:
    repo.cache_dir.mkdir(parents=True, exist_ok=True)
    return await asyncio.create_subprocess_exec(
        *_die_with_parent(),
        _restic(),
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(repo),
        cwd=repo.cache_dir,
        start_new_session=True,
    )


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Kill restic if it still runs (SIGKILL: a backup must not finish a snapshot from
    a truncated stream) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await asyncio.shield(proc.wait())


async def _exec(repo: Repository, args: Sequence[str]) -> tuple[int | None, bytes, bytes]:
    """Run `restic args…` to its end: (exit status, stdout, stderr)."""
    proc = await _spawn(repo, args, stdin=asyncio.subprocess.DEVNULL)
    try:
        stdout, stderr = await proc.communicate()
    finally:
        await _stop(proc)
    return proc.returncode, stdout, stderr


async def _run(repo: Repository, doing: str, args: Sequence[str]) -> bytes:
    """Run `restic args…` to its end; its stdout, or the error its stderr names."""
    returncode, stdout, stderr = await _exec(repo, args)
    if returncode != 0:
        raise _failure(repo, doing, stderr, returncode)
    return stdout


async def _drain(stream: asyncio.StreamReader | None) -> bytes:
    return b"" if stream is None else await stream.read()


async def ensure_initialized(repo: Repository) -> bool:
    """Initialise the repository (format 2: compressed) unless it exists; True when it
    was initialised now."""
    returncode, _, stderr = await _exec(repo, ["cat", "config"])
    if returncode == 0:
        return False
    text = stderr.decode(errors="replace").lower()
    # restic 0.14 has no exit status of its own for "no repository here": the storage's
    # answer for the missing config object is the sign (S3: NoSuchKey).
    if "unable to open config file" not in text or "key does not exist" not in text:
        raise _failure(repo, "cat config", stderr, returncode)
    returncode, _, stderr = await _exec(repo, ["init", "--repository-version", "2"])
    if returncode == 0:
        return True
    if "config file already exists" in stderr.decode(errors="replace"):
        return False  # initialised meanwhile by another restic
    raise _failure(repo, "init", stderr, returncode)


async def unlock(repo: Repository) -> None:
    """Remove stale locks (of restic processes that died); live ones stay."""
    await _run(repo, "unlock", ["unlock"])


async def backup_stream(
    repo: Repository, chunks: AsyncIterator[bytes], filename: str, tags: Sequence[str]
) -> Stored:
    """Back up the stream `chunks` as one file `filename` (`restic backup --stdin`) in a
    snapshot of host `HOST` with `tags`, computing its SHA-256 and size on the way.

    Each chunk is written to restic's stdin and drained (back-pressure: the source is
    read no faster than restic stores). If the source raises (or the caller is
    cancelled), restic is killed before it sees the end of its input — no snapshot
    is made of a truncated stream — and the exception propagates.
    """
    await unlock(repo)
    args = ["backup", "--stdin", "--stdin-filename", filename, "--host", HOST, "--json", "--quiet"]
    for tag in tags:
        args += ["--tag", tag]
    proc = await _spawn(repo, args, stdin=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    stdout = asyncio.ensure_future(_drain(proc.stdout))
    stderr = asyncio.ensure_future(_drain(proc.stderr))
    digest = hashlib.sha256()
    size = 0
    try:
        try:
            async for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                proc.stdin.write(chunk)
                await proc.stdin.drain()
            proc.stdin.close()
            await proc.stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            pass  # restic stopped reading: its exit status and stderr say why
        await proc.wait()
    except BaseException:
        await _stop(proc)
        stdout.cancel()
        stderr.cancel()
        raise
    out, err = await stdout, await stderr
    if proc.returncode != 0:
        raise _failure(repo, f"backup of {filename}", err, proc.returncode)
    summary = _summary(out)
    if summary is None:
        raise ResticFailed(
            f"restic backup of {filename} to {repo.url} printed no summary", _tail(repo, err)
        )
    if summary.total_bytes_processed != size:
        raise ResticFailed(
            f"restic backup of {filename} to {repo.url} stored {summary.total_bytes_processed} "
            f"bytes of the {size} sent"
        )
    # restic 0.14's summary names the snapshot by its short id; the full one is listed.
    listed = await _run(repo, "snapshots", ["snapshots", "--json", summary.snapshot_id])
    found = msgspec.json.decode(listed, type=list[Snapshot])
    if len(found) != 1 or not found[0].id.startswith(summary.snapshot_id):
        raise ResticFailed(
            f"restic backup of {filename} to {repo.url}: snapshot {summary.snapshot_id} "
            f"not found (or not unique) after the backup"
        )
    return Stored(found[0].id, digest.hexdigest(), size, summary.data_added)


def _summary(stdout: bytes) -> _Summary | None:
    for line in reversed(stdout.splitlines()):
        if b'"summary"' not in line:
            continue
        try:
            parsed = msgspec.json.decode(line, type=_Summary)
        except msgspec.DecodeError:
            continue
        if parsed.message_type == "summary" and parsed.snapshot_id:
            return parsed
    return None


async def dump_stream(
    repo: Repository, snapshot_id: str, filename: str
) -> AsyncGenerator[bytes, None]:
    """The file `filename` of a snapshot, in chunks (`restic dump`). After the last
    chunk, a failed dump raises (`RepositoryCorrupt` for damaged data: the chunks
    yielded so far must not be trusted). Use it under `contextlib.aclosing` when it
    may not be read to the end: closing it kills restic."""
    proc = await _spawn(repo, ["dump", snapshot_id, filename], stdin=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    stderr = asyncio.ensure_future(_drain(proc.stderr))
    ended = False
    try:
        while chunk := await proc.stdout.read(CHUNK):
            yield chunk
        await proc.wait()
        ended = True
    finally:
        if not ended:  # closed early, cancelled, or the read failed
            await _stop(proc)
            stderr.cancel()
    err = await stderr
    if proc.returncode != 0:
        raise _failure(
            repo, f"dump of {filename} from snapshot {snapshot_id}", err, proc.returncode
        )


async def verify(repo: Repository, snapshot_id: str, filename: str, sha256: str, size: int) -> None:
    """Read the whole file back (restic checks every blob's MAC) and compare its SHA-256
    and size with the recorded ones; `RepositoryCorrupt` when they differ."""
    digest = hashlib.sha256()
    read = 0
    async with contextlib.aclosing(dump_stream(repo, snapshot_id, filename)) as chunks:
        async for chunk in chunks:
            digest.update(chunk)
            read += len(chunk)
    if read != size or digest.hexdigest() != sha256:
        raise RepositoryCorrupt(
            f"{filename} of snapshot {snapshot_id} in {repo.url} is not what was backed up: "
            f"{read} bytes with SHA-256 {digest.hexdigest()}, recorded {size} bytes with {sha256}"
        )


async def snapshots(repo: Repository, tag: str | None = None) -> list[Snapshot]:
    """The repository's snapshots (with `tag` only, when given), oldest first."""
    args = ["snapshots", "--json"] + (["--tag", tag] if tag is not None else [])
    out = await _run(repo, "snapshots", args)
    found = msgspec.json.decode(out.strip() or b"[]", type=list[Snapshot] | None) or []
    return sorted(found, key=lambda s: s.time)


async def forget(repo: Repository, snapshot_ids: Sequence[str]) -> None:
    """Forget these snapshots (their data stays until `prune`)."""
    if not snapshot_ids:
        return
    await unlock(repo)
    await _run(repo, "forget", ["forget", *snapshot_ids])


async def prune(repo: Repository) -> None:
    """Delete the data no snapshot uses (packs of forgotten snapshots and of killed
    backups)."""
    await unlock(repo)
    await _run(repo, "prune", ["prune"])


async def raw_size(repo: Repository) -> int:
    """Bytes the repository stores (after deduplication and compression)."""
    out = await _run(repo, "stats", ["stats", "--mode", "raw-data", "--json"])
    return msgspec.json.decode(out, type=_Stats).total_size
