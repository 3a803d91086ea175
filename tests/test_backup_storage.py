"""The storage adapters of backups (`pressluft/runners/s3.py`, `pressluft/runners/restic.py`)
against real parts: Debian's restic and moto's S3 server on loopback, with credentials
and IAM policies checked (`tests/support/s3.py`). Only BAK-14 puts a stand-in `restic`
on PATH, to see the environment and arguments a child gets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from pressluft.runners import restic, s3
from pressluft.runners.restic import (
    Repository,
    RepositoryAuthFailed,
    RepositoryCorrupt,
    RepositoryUnreachable,
    ResticMissing,
    WrongPassword,
)
from pressluft.runners.s3 import Target, TargetError
from tests.support.s3 import S3Server
from tests.support.sshd import free_port

MiB = 1 << 20


def unique(prefix: str = "bak") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def stream(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def dumped(repo: Repository, snapshot_id: str, filename: str) -> bytes:
    parts = []
    async with contextlib.aclosing(restic.dump_stream(repo, snapshot_id, filename)) as chunks:
        async for chunk in chunks:
            parts.append(chunk)
    return b"".join(parts)


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.create_bucket(unique())


@pytest.fixture
def target(s3_server: S3Server, bucket: str) -> Target:
    return s3_server.target(bucket, "pressluft")


def repository(target: Target, cache: Path, site: str = "s1") -> Repository:
    return Repository(
        url=s3.restic_url(target, f"sites/{site}"),
        password=secrets.token_hex(32),
        target=target,
        cache_dir=cache,
    )


@pytest.fixture
async def repo(target: Target, tmp_path: Path) -> Repository:
    repo = repository(target, tmp_path / "restic-cache")
    assert await restic.ensure_initialized(repo) is True
    return repo


def no_secrets(error: BaseException, *secret: str) -> None:
    text = str(error) + "\n".join(getattr(error, "stderr", ()))
    for value in secret:
        assert value not in text


# -- the storage target -------------------------------------------------------------


@pytest.mark.spec("BAK-1")
async def test_the_probe_writes_reads_and_deletes(s3_server: S3Server, bucket: str) -> None:
    for prefix in ("pressluft", "a/b", ""):
        await s3.probe(s3_server.target(bucket, prefix))
    assert s3_server.objects(bucket) == {}


@pytest.mark.spec("BAK-1")
def test_a_target_keeps_its_secret_out_of_repr_and_urls(s3_server: S3Server) -> None:
    target = s3_server.target("bkt", "")
    assert target.secret_access_key not in repr(target)
    assert s3.restic_url(target, "sites/s1") == f"s3:{s3_server.endpoint}/bkt/sites/s1"
    prefixed = dataclasses.replace(target, endpoint=target.endpoint + "/", prefix="pl/x")
    assert s3.restic_url(prefixed, "sites/s1") == f"s3:{s3_server.endpoint}/bkt/pl/x/sites/s1"
    for prefix in ("/pl", "pl/"):
        with pytest.raises(ValueError, match="slash"):
            dataclasses.replace(target, prefix=prefix)


@pytest.mark.spec("BAK-2")
async def test_probe_failures_name_the_step_and_the_cause(s3_server: S3Server, bucket: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [
        (s3_server.target(bucket, "p", endpoint=closed), "TARGET_UNREACHABLE", "refused"),
        (
            s3_server.target(bucket, "p", endpoint="http://storage.invalid:9000"),
            "TARGET_UNREACHABLE",
            "storage.invalid",
        ),
        (
            s3_server.target(bucket, "p", secret_access_key="x" * 40),
            "TARGET_AUTH_FAILED",
            "Signature",
        ),
        (
            s3_server.target(bucket, "p", access_key_id="AKIANOSUCHKEY"),
            "TARGET_AUTH_FAILED",
            "InvalidAccessKeyId",
        ),
        (s3_server.target(unique("none"), "p"), "TARGET_BUCKET_MISSING", "NoSuchBucket"),
    ]
    for target, code, cause in cases:
        with pytest.raises(TargetError) as caught:
            await s3.probe(target)
        error = caught.value
        assert error.code == code, error
        assert "the write of p/.pressluft-probe-" in error.message
        assert target.endpoint in error.message and target.bucket in error.message
        assert cause in error.message
        assert error.hint
        no_secrets(error, target.secret_access_key)
    assert s3_server.objects(bucket) == {}


@pytest.mark.spec("BAK-2")
async def test_probe_failures_of_a_key_without_every_right(
    s3_server: S3Server, bucket: str
) -> None:
    cases = [
        (("s3:GetObject", "s3:DeleteObject"), "TARGET_AUTH_FAILED", "the write of"),
        (("s3:PutObject", "s3:DeleteObject"), "TARGET_READ_FAILED", "the read of"),
        (("s3:PutObject", "s3:GetObject"), "TARGET_DELETE_FAILED", "the delete of"),
    ]
    for actions, code, step in cases:
        key_id, secret = s3_server.key_allowed(*actions)
        target = s3_server.target(bucket, "p", access_key_id=key_id, secret_access_key=secret)
        with pytest.raises(TargetError) as caught:
            await s3.probe(target)
        assert caught.value.code == code, caught.value
        assert step in caught.value.message and "AccessDenied" in caught.value.message
    # the read's failure deleted its probe object; the failed delete left its own
    assert len(s3_server.objects(bucket, "p/.pressluft-probe-")) == 1


@pytest.mark.spec("BAK-2", "BAK-9")
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # the set-up's
async def test_an_endpoint_whose_tls_is_not_trusted_is_unreachable(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "tls", tls=True).start()
    try:
        bucket = server.create_bucket(unique())
        target = server.target(bucket, "p")
        with pytest.raises(TargetError) as caught:
            await s3.probe(target)
        assert caught.value.code == "TARGET_UNREACHABLE"
        assert "certificate" in caught.value.message.lower()
        with pytest.raises(RepositoryUnreachable) as failed:
            await restic.ensure_initialized(repository(target, tmp_path / "cache"))
        assert "x509" in failed.value.message
        assert server.objects(bucket) == {}
    finally:
        server.stop()


@pytest.mark.spec("BAK-12")
async def test_delete_prefix_deletes_one_repository(s3_server: S3Server, bucket: str) -> None:
    client = s3_server.client()
    for key in ("pl/sites/a/config", "pl/sites/a/data/00/x", "pl/sites/ab/config", "pl/sites/b/k"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    target = s3_server.target(bucket, "pl")
    assert await s3.list_keys(target, "sites/a") == ["pl/sites/a/config", "pl/sites/a/data/00/x"]
    assert await s3.delete_prefix(target, "sites/a") == 2
    assert await s3.list_keys(target, "sites/a") == []
    assert sorted(s3_server.objects(bucket)) == ["pl/sites/ab/config", "pl/sites/b/k"]
    assert await s3.delete_prefix(target, "sites/a") == 0
    for path in ("", "/"):
        with pytest.raises(ValueError, match="folder"):
            await s3.delete_prefix(target, path)


# -- restic ------------------------------------------------------------------------


@pytest.mark.spec("BAK-3")
async def test_a_repository_is_initialised_once(
    s3_server: S3Server, target: Target, tmp_path: Path
) -> None:
    repo = repository(target, tmp_path / "cache", site="s9")
    assert repo.url == f"s3:{s3_server.endpoint}/{target.bucket}/pressluft/sites/s9"
    assert repo.password not in repr(repo)
    assert await restic.ensure_initialized(repo) is True
    assert await restic.ensure_initialized(repo) is False
    keys = await s3.list_keys(target, "sites/s9")
    assert "pressluft/sites/s9/config" in keys
    assert any(key.startswith("pressluft/sites/s9/keys/") for key in keys)
    assert await restic.snapshots(repo) == []


@pytest.mark.spec("BAK-4")
async def test_a_stream_is_backed_up_and_dumped_back(repo: Repository) -> None:
    data = os.urandom(3 * MiB + 12345)
    stored = await restic.backup_stream(
        repo, stream(data), "files.tar", ["backup=b1", "kind=files"]
    )
    assert re.fullmatch(r"[0-9a-f]{64}", stored.snapshot_id)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert stored.added_bytes >= len(data)  # random bytes neither dedupe nor compress
    [snapshot] = await restic.snapshots(repo, tag="backup=b1")
    assert snapshot.id == stored.snapshot_id
    assert set(snapshot.tags) == {"backup=b1", "kind=files"}
    assert snapshot.paths == ("/files.tar",)
    assert await restic.snapshots(repo, tag="backup=other") == []
    assert await dumped(repo, stored.snapshot_id, "files.tar") == data
    await restic.verify(repo, stored.snapshot_id, "files.tar", stored.sha256, stored.size)
    assert len(data) <= await restic.raw_size(repo) < len(data) * 1.01


@pytest.mark.spec("BAK-5")
async def test_an_identical_stream_adds_almost_nothing(repo: Repository) -> None:
    data = os.urandom(4 * MiB)
    first = await restic.backup_stream(repo, stream(data), "db.sql", ["backup=1"])
    size_after_first = await restic.raw_size(repo)
    second = await restic.backup_stream(repo, stream(data, 100_000), "db.sql", ["backup=2"])
    assert second.snapshot_id != first.snapshot_id
    assert second.sha256 == first.sha256
    assert second.added_bytes < len(data) / 100
    assert await restic.raw_size(repo) - size_after_first < len(data) / 100
    assert len(await restic.snapshots(repo)) == 2


@pytest.mark.spec("BAK-6")
async def test_the_bucket_holds_no_plaintext(
    s3_server: S3Server, repo: Repository, target: Target
) -> None:
    markers = [b"CREATE TABLE wp_posts", b"<?php", b"pressluft-plaintext-marker"]
    rows = b"".join(
        b"INSERT INTO wp_posts VALUES (%d,'pressluft-plaintext-marker','hello');\n" % i
        for i in range(40_000)
    )
    data = b"CREATE TABLE wp_posts (ID bigint, post_title text);\n" + rows
    data += b"<?php echo 'hello'; ?>\n" * 20_000
    stored = await restic.backup_stream(repo, stream(data), "db.sql", ["backup=p"])
    objects = s3_server.objects(target.bucket)
    assert any("/data/" in key for key in objects)
    for key, body in objects.items():
        for marker in markers:
            assert marker not in body, f"{marker!r} readable in {key}"
    # repository format 2 compresses: the text is stored in a fraction of its size
    # (restic 0.14's `data_added`, `added_bytes`, counts the new data uncompressed)
    assert await restic.raw_size(repo) < len(data) / 4
    assert stored.added_bytes >= len(data)


@pytest.mark.spec("BAK-7")
async def test_a_changed_byte_in_the_bucket_is_found(
    s3_server: S3Server, repo: Repository, target: Target
) -> None:
    data = os.urandom(3 * MiB)
    stored = await restic.backup_stream(repo, stream(data), "files.tar", ["backup=c"])
    await restic.verify(repo, stored.snapshot_id, "files.tar", stored.sha256, stored.size)
    with pytest.raises(RepositoryCorrupt) as wrong_sum:
        await restic.verify(repo, stored.snapshot_id, "files.tar", "0" * 64, stored.size)
    assert wrong_sum.value.code == "BACKUP_CORRUPT"
    assert "not what was backed up" in wrong_sum.value.message

    s3_server.corrupt_one_object(target.bucket, "pressluft/sites/s1/data/")
    with pytest.raises(RepositoryCorrupt) as caught:
        await restic.verify(repo, stored.snapshot_id, "files.tar", stored.sha256, stored.size)
    assert caught.value.code == "BACKUP_CORRUPT"
    assert "ciphertext verification failed" in caught.value.message
    no_secrets(caught.value, repo.password, target.secret_access_key)


@pytest.mark.spec("BAK-8")
async def test_a_wrong_password_is_locked_out(repo: Repository) -> None:
    stored = await restic.backup_stream(repo, stream(b"x" * 1000), "db.sql", ["backup=w"])
    other = dataclasses.replace(repo, password=secrets.token_hex(32))
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: restic.ensure_initialized(other),  # never initialises over it
        lambda: restic.snapshots(other),
        lambda: restic.backup_stream(other, stream(b"y" * 1000), "db.sql", ["backup=w2"]),
        lambda: dumped(other, stored.snapshot_id, "db.sql"),
    ]
    for attempt in attempts:
        with pytest.raises(WrongPassword) as caught:
            await attempt()
        assert caught.value.code == "BACKUP_REPOSITORY_LOCKED_OUT"
        assert "wrong password" in caught.value.message
        no_secrets(caught.value, repo.password, other.password, repo.target.secret_access_key)
    assert [s.id for s in await restic.snapshots(repo)] == [stored.snapshot_id]


@pytest.mark.spec("BAK-9")
async def test_a_refused_key_and_a_stopped_server(tmp_path: Path) -> None:
    server = S3Server(tmp_path / "s3").start()
    try:
        bucket = server.create_bucket(unique())
        target = server.target(bucket, "p")
        repo = repository(target, tmp_path / "cache")
        await restic.ensure_initialized(repo)
        stored = await restic.backup_stream(repo, stream(b"z" * 5000), "db.sql", ["backup=s"])

        for wrong in (
            dataclasses.replace(target, secret_access_key=secrets.token_hex(20)),
            dataclasses.replace(target, access_key_id="AKIANOSUCHKEY"),
        ):
            refused = dataclasses.replace(repo, target=wrong)
            for attempt in (restic.ensure_initialized, restic.snapshots):
                with pytest.raises(RepositoryAuthFailed) as caught:
                    await attempt(refused)
                assert caught.value.code == "BACKUP_TARGET_AUTH_FAILED"
                assert "Access Denied" in caught.value.message
                no_secrets(caught.value, repo.password, wrong.secret_access_key)
    finally:
        server.stop()

    # at once: restic's S3 client retries a refused connection for some 14 s each
    outcomes = await asyncio.gather(
        restic.snapshots(repo),
        restic.verify(repo, stored.snapshot_id, "db.sql", stored.sha256, stored.size),
        restic.backup_stream(repo, stream(b"z" * 5000), "db.sql", ["backup=t"]),
        return_exceptions=True,
    )
    for gone in outcomes:
        assert isinstance(gone, RepositoryUnreachable), gone
        assert gone.code == "BACKUP_TARGET_UNREACHABLE"
        assert "connection refused" in gone.message
        no_secrets(gone, repo.password, target.secret_access_key)


@pytest.mark.spec("BAK-10")
async def test_a_source_that_fails_leaves_no_snapshot(repo: Repository, target: Target) -> None:
    class SourceBroke(Exception):
        pass

    sent = 0

    async def failing() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(40):
            block = os.urandom(MiB)
            sent += len(block)
            yield block
        raise SourceBroke("the node's dump stopped")

    with pytest.raises(SourceBroke):
        await restic.backup_stream(repo, failing(), "db.sql", ["backup=broken"])
    assert sent == 40 * MiB  # restic was fed the stream up to the failure...
    assert await restic.snapshots(repo) == []  # ...and made no snapshot of it
    # the killed restic left its lock (stale now) and whatever packs it had uploaded
    # (how many depends on its timing); prune (an exclusive lock) removes the lock
    # first, then the packs no snapshot uses
    assert await s3.list_keys(target, "sites/s1/locks") != []
    await restic.prune(repo)
    assert await s3.list_keys(target, "sites/s1/locks") == []
    assert await s3.list_keys(target, "sites/s1/data") == []

    data = os.urandom(MiB)
    stored = await restic.backup_stream(repo, stream(data), "db.sql", ["backup=after"])
    assert await dumped(repo, stored.snapshot_id, "db.sql") == data


@pytest.mark.spec("BAK-11")
async def test_forget_and_prune_delete_a_snapshots_own_data(
    repo: Repository, target: Target
) -> None:
    before = set(await s3.list_keys(target, "sites/s1/data"))
    first = await restic.backup_stream(repo, stream(os.urandom(2 * MiB)), "files.tar", ["backup=1"])
    of_first = set(await s3.list_keys(target, "sites/s1/data")) - before
    kept_data = os.urandom(2 * MiB)
    kept = await restic.backup_stream(repo, stream(kept_data), "files.tar", ["backup=2"])
    assert of_first
    size_before = await restic.raw_size(repo)

    await restic.forget(repo, [first.snapshot_id])
    assert [s.id for s in await restic.snapshots(repo)] == [kept.snapshot_id]
    assert of_first <= set(await s3.list_keys(target, "sites/s1/data"))  # until pruned
    await restic.prune(repo)
    assert of_first.isdisjoint(await s3.list_keys(target, "sites/s1/data"))
    assert await restic.raw_size(repo) < size_before - MiB
    await restic.verify(repo, kept.snapshot_id, "files.tar", kept.sha256, kept.size)
    await restic.forget(repo, [])  # nothing to forget is no call


@pytest.mark.spec("BAK-13")
async def test_without_restic_the_error_says_so(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert restic.find_restic() is not None
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert restic.find_restic() is None
    with pytest.raises(ResticMissing) as caught:
        await restic.snapshots(repo)
    assert caught.value.code == "BACKUP_ENGINE_MISSING"
    assert "apt-get install restic" in caught.value.message


@pytest.mark.spec("BAK-14")
async def test_restic_gets_its_secrets_only_through_its_environment(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "restic"
    fake.write_text(
        '#!/bin/sh\nenv > "$RESTIC_CACHE_DIR/env.txt"\n'
        'printf "%s\\n" "$@" > "$RESTIC_CACHE_DIR/argv.txt"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("AWS_PROFILE", "someone-else")
    monkeypatch.setenv("RESTIC_PASSWORD_FILE", "/nonexistent")
    await restic.unlock(repo)

    env = dict(
        line.split("=", 1)
        for line in (repo.cache_dir / "env.txt").read_text().splitlines()
        if "=" in line
    )
    expected = {
        "RESTIC_REPOSITORY": repo.url,
        "RESTIC_PASSWORD": repo.password,
        "AWS_ACCESS_KEY_ID": repo.target.access_key_id,
        "AWS_SECRET_ACCESS_KEY": repo.target.secret_access_key,
        "AWS_DEFAULT_REGION": repo.target.region,
        "RESTIC_CACHE_DIR": str(repo.cache_dir),
        "HOME": os.environ["HOME"],
        "PATH": os.environ["PATH"],
    }
    if "TMPDIR" in os.environ:
        expected["TMPDIR"] = os.environ["TMPDIR"]
    shell_own = {"PWD", "OLDPWD", "SHLVL", "_"}  # set by /bin/sh itself
    assert {k: v for k, v in env.items() if k not in shell_own} == expected
    argv = (repo.cache_dir / "argv.txt").read_text()
    assert argv.splitlines() == ["unlock"]
    assert repo.password not in argv and repo.target.secret_access_key not in argv
