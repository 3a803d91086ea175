"""The S3-compatible storage target of backups: where it is (`Target`), the URL restic
takes for a repository in it (`restic_url`), the probe that proves the credentials
can write, read back and delete an object there (`probe`), and the listing and
deletion of a repository's objects (`list_keys`, `delete_prefix`: tests, and the
cleanup of a deleted site).

restic moves the backup data itself (`pressluft.runners.restic`); this module talks
to the bucket directly with boto3, synchronous, so every call runs in a thread
(`asyncio.to_thread`) with short timeouts (5 s to connect, 5 s per read) and at most
one retry.

Failures are `TargetError(code, message, hint)`; the message names the step, the
endpoint and the bucket (never the secret), the hint what the operator can do:

- `TARGET_UNREACHABLE`: no connection (refused, DNS, TLS, timeout, a bad endpoint URL);
- `TARGET_AUTH_FAILED`: the storage refused the credentials (InvalidAccessKeyId,
  SignatureDoesNotMatch; AccessDenied on the probe's write, its first step);
- `TARGET_BUCKET_MISSING`: no such bucket;
- `TARGET_WRITE_FAILED`, `TARGET_READ_FAILED` (also: the bytes read back differ),
  `TARGET_DELETE_FAILED`: that step failed for another reason (its S3 error code
  in the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "Target",
    "TargetError",
    "delete_prefix",
    "list_keys",
    "probe",
    "restic_url",
]

T = TypeVar("T")

#: Seconds to open a connection, and to wait for each read, of one S3 request.
CONNECT_SECONDS = 5.0
READ_SECONDS = 5.0
#: Attempts of one request in all: the first and one retry.
ATTEMPTS = 2
#: The probe object's name under the target's prefix (a random suffix follows).
PROBE_NAME = ".pressluft-probe-"

#: S3 error codes that mean the credentials were refused, in any step.
CREDENTIALS_REFUSED = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"})
#: ... and that the key may not do what was asked: the credentials' fault on the
#: probe's write (the first step), the step's own failure after it.
ACCESS_DENIED = frozenset({"AccessDenied", "403"})
BUCKET_MISSING_CODES = frozenset({"NoSuchBucket"})

HINTS = {
    "TARGET_UNREACHABLE": "Check the endpoint URL (scheme, host, port), that its name "
    "resolves, that the storage answers there and that its TLS certificate is trusted.",
    "TARGET_AUTH_FAILED": "Check the access key id and secret, and that the key may "
    "write to the bucket.",
    "TARGET_BUCKET_MISSING": "Create the bucket at the storage provider, or correct its "
    "name and region.",
    "TARGET_WRITE_FAILED": "The storage refused to store an object; check the key's "
    "rights and the bucket's policy.",
    "TARGET_READ_FAILED": "The key must be allowed to read objects back (s3:GetObject), "
    "and the storage must return what was written.",
    "TARGET_DELETE_FAILED": "The key must be allowed to delete objects (s3:DeleteObject): "
    "old backups are pruned; an object lock or retention rule forbids that.",
}


class TargetError(Exception):
    """The storage target failed a step; `code` is one of the module's codes, `hint`
    says what the operator can do."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.hint = hint or HINTS.get(code, "")


@dataclass(frozen=True)
class Target:
    """An S3-compatible bucket: `endpoint` is a URL (`https://s3.eu-central-1.amazonaws.com`,
    `http://127.0.0.1:9000`); `prefix` is a key prefix without leading or trailing
    slash (may be empty)."""

    endpoint: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ValueError(f"prefix {self.prefix!r}: no leading or trailing slash")
        if not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {self.endpoint!r}: an http:// or https:// URL")

    def key(self, path: str) -> str:
        """The object key of `path` under the prefix."""
        return "/".join(part for part in (self.prefix, path) if part)

    @property
    def where(self) -> str:
        """The endpoint and bucket, for messages."""
        return f"{self.endpoint.rstrip('/')} bucket {self.bucket}"


def restic_url(target: Target, path: str) -> str:
    """restic's repository URL for `path` under the target's prefix:
    `s3:{endpoint}/{bucket}/{prefix}/{path}`."""
    return f"s3:{target.endpoint.rstrip('/')}/{target.bucket}/{target.key(path.strip('/'))}"


# -- the client -----------------------------------------------------------------


def _client(target: Target) -> S3Client:
    config = Config(
        connect_timeout=CONNECT_SECONDS,
        read_timeout=READ_SECONDS,
        retries={"total_max_attempts": ATTEMPTS, "mode": "standard"},
    )
    session = boto3.session.Session(
        aws_access_key_id=target.access_key_id,
        aws_secret_access_key=target.secret_access_key,
        region_name=target.region,
    )
    return session.client("s3", endpoint_url=target.endpoint, config=config)


def _clean(target: Target, text: str) -> str:
    """`text` without the secret (S3's messages never echo it; this makes sure)."""
    return text.replace(target.secret_access_key, "…") if target.secret_access_key else text


def _error(target: Target, exc: Exception, doing: str, otherwise: str) -> TargetError:
    """The `TargetError` for `exc` raised while `doing` (e.g. "write of x"); `otherwise`
    is the step's code when the cause is neither the connection nor the credentials."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        cause = exc.kwargs.get("error")  # urllib3's: refused, name not known, TLS
        reason = str(exc) if cause is None else f"{exc} ({cause})"
        return TargetError(
            "TARGET_UNREACHABLE",
            _clean(target, f"the {doing} at {target.where} got no answer: {reason}"),
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or str(
            exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        )
        detail = _clean(target, f"{code}: {error.get('Message', '') or exc}")
        if code in BUCKET_MISSING_CODES:
            return TargetError(
                "TARGET_BUCKET_MISSING",
                f"the {doing} at {target.where} failed: the bucket does not exist ({detail})",
            )
        if code in CREDENTIALS_REFUSED or (
            code in ACCESS_DENIED and otherwise == "TARGET_WRITE_FAILED"
        ):
            return TargetError(
                "TARGET_AUTH_FAILED",
                f"the {doing} at {target.where} was refused: {detail}",
            )
        return TargetError(otherwise, f"the {doing} at {target.where} failed: {detail}")
    return TargetError(otherwise, _clean(target, f"the {doing} at {target.where} failed: {exc}"))


async def _call(target: Target, work: Callable[[S3Client], T], doing: str, otherwise: str) -> T:
    def run() -> T:
        try:
            client = _client(target)
        except ValueError as exc:  # botocore cannot use the endpoint URL
            raise TargetError(
                "TARGET_UNREACHABLE", f"the endpoint {target.endpoint} is not usable: {exc}"
            ) from None
        try:
            return work(client)
        except (BotoCoreError, ClientError) as exc:
            raise _error(target, exc, doing, otherwise) from None

    return await asyncio.to_thread(run)


# -- the probe --------------------------------------------------------------------


async def probe(target: Target) -> None:
    """Write a random probe object under the prefix, read it back (same bytes) and
    delete it; raises `TargetError` naming the step that failed. The object is
    deleted also when the read fails."""
    key = target.key(f"{PROBE_NAME}{secrets.token_hex(8)}")
    payload = b"pressluft storage probe " + secrets.token_bytes(32)

    def write(client: S3Client) -> None:
        client.put_object(Bucket=target.bucket, Key=key, Body=payload)

    def read(client: S3Client) -> bytes:
        return client.get_object(Bucket=target.bucket, Key=key)["Body"].read()

    def delete(client: S3Client) -> None:
        client.delete_object(Bucket=target.bucket, Key=key)

    await _call(target, write, f"write of {key}", "TARGET_WRITE_FAILED")
    try:
        back = await _call(target, read, f"read of {key}", "TARGET_READ_FAILED")
        if back != payload:
            raise TargetError(
                "TARGET_READ_FAILED",
                f"the read of {key} at {target.where} returned other bytes than were "
                f"written ({len(back)} bytes, {len(payload)} written)",
            )
    except TargetError:
        with contextlib.suppress(TargetError):  # the read's failure is the one to report
            await _call(target, delete, f"delete of {key}", "TARGET_DELETE_FAILED")
        raise
    await _call(target, delete, f"delete of {key}", "TARGET_DELETE_FAILED")


# -- a repository's objects -------------------------------------------------------


def _folder(target: Target, path: str) -> str:
    path = path.strip("/")
    if not path:
        raise ValueError("path must name a folder under the prefix (never the whole prefix)")
    return target.key(path) + "/"


async def list_keys(target: Target, path: str) -> list[str]:
    """The keys (full, sorted) of every object under `{prefix}/{path}/`."""
    folder = _folder(target, path)

    def work(client: S3Client) -> list[str]:
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=target.bucket, Prefix=folder
        ):
            keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
        return sorted(keys)

    return await _call(target, work, f"listing of {folder}", "TARGET_READ_FAILED")


async def delete_prefix(target: Target, path: str) -> int:
    """Delete every object under `{prefix}/{path}/` (a site's repository); returns how
    many were deleted. Raises `TargetError` (`TARGET_DELETE_FAILED` when the storage
    refused some)."""
    folder = _folder(target, path)

    def work(client: S3Client) -> int:
        deleted = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=target.bucket, Prefix=folder
        ):
            keys = [item["Key"] for item in page.get("Contents", []) if "Key" in item]
            if not keys:
                continue
            answer = client.delete_objects(
                Bucket=target.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
            refused = answer.get("Errors", [])
            if refused:
                first = refused[0]
                raise TargetError(
                    "TARGET_DELETE_FAILED",
                    f"the deletion under {folder} at {target.where} refused {len(refused)} "
                    f"of {len(keys)} objects (first: {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message', '')})",
                )
            deleted += len(keys)
        return deleted

    return await _call(target, work, f"deletion under {folder}", "TARGET_DELETE_FAILED")
