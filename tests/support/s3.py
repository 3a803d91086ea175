"""A real S3-compatible server for the tests: moto's `moto_server` (the venv's, from
the `moto[server]` dev dependency) on a free loopback port, checking credentials
like S3 does.

- On start it makes an IAM user with an access key allowed `s3:*` (`access_key_id`,
  `secret_access_key`) and then turns moto's authentication on
  (`/moto-api/reset-auth` to 0): from then on every request must be signed with a
  known key (`InvalidAccessKeyId`, `SignatureDoesNotMatch` otherwise) and is
  checked against the key's IAM policy (`AccessDenied`), the way a real bucket
  refuses a wrong secret. `key_allowed(*actions)` makes another key allowed only
  those actions (e.g. `s3:PutObject` without `s3:GetObject`); `key_with_policy(*statements)`
  one under the IAM statements given (resources and `Deny` included, e.g. no
  `s3:PutObject` on `arn:aws:s3:::*/data/*`); `revoke(key_id)` deletes such a key
  (a rotated-out key: S3 refuses it from then on).
- `configure_target(api, bucket, prefix)` makes it a daemon's backup target.
- `create_bucket(name)` (moto, like S3, wants at least 3 characters; one the key owns
  already is kept), `target(bucket, prefix)` → `pressluft.runners.s3.Target` with
  the good key (or another secret),
  `objects(bucket, prefix)` (every key and its bytes, for looking inside),
  `corrupt_one_object(bucket, key_prefix)` (flips one byte in the middle of the
  largest object under the prefix: for a restic repository's `…/data/` that is a
  pack of file data, not a small tree pack restic may keep in its local cache).
- `S3Server(tls=True)` serves https with moto's throwaway certificate, which nothing
  trusts (the clients here do not verify it; Pressluft's must refuse it).
- `stop()` ends moto_server by its PID.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

from pressluft.runners.s3 import Target
from tests.support.sshd import free_port

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
REGION = "eu-central-1"


def allow(*actions: str) -> str:
    """An IAM policy document allowing `actions` on every resource."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
        }
    )


class S3Server:
    def __init__(self, root: Path | None = None, *, tls: bool = False) -> None:
        if not MOTO_SERVER.exists():
            raise RuntimeError(f"moto_server is missing beside {sys.executable}: `make venv`")
        self._own_root = root is None
        self.root = root or Path(tempfile.mkdtemp(prefix="pl-s3-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.region = REGION
        self.tls = tls  # https with moto's throwaway certificate (which nothing trusts)
        self.log = self.root / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.access_key_id = ""
        self.secret_access_key = ""
        self._admin = ("", "")
        self._users = 0
        self._owners: dict[str, str] = {}  # access key id → its IAM user

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)]
                + (["--ssl"] if self.tls else []),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited ({self.process.returncode}):\n{self.tail()}"
                )
            try:
                # verify=False: moto's throwaway certificate (tls=True)
                url = f"{self.endpoint}/moto-api/"
                reply = httpx.get(url, timeout=1, verify=False)  # noqa: S501
                if reply.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto_server did not answer within 30 s:\n{self.tail()}")
            time.sleep(0.1)
        self._enforce_credentials()
        return self

    def _iam(self, key: tuple[str, str]) -> Any:
        return boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            verify=False,
        )

    def _user(self, iam: Any, name: str, policy: str) -> tuple[str, str]:
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="allow", PolicyDocument=policy)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        self._owners[key["AccessKeyId"]] = name
        return key["AccessKeyId"], key["SecretAccessKey"]

    def _enforce_credentials(self) -> None:
        iam = self._iam(("setup", "setup"))  # not checked yet
        self._admin = self._user(iam, "admin", allow("*"))
        self.access_key_id, self.secret_access_key = self._user(iam, "pressluft", allow("s3:*"))
        url = f"{self.endpoint}/moto-api/reset-auth"
        reply = httpx.post(url, content=b"0", timeout=5, verify=False)  # noqa: S501
        reply.raise_for_status()

    def key_allowed(self, *actions: str) -> tuple[str, str]:
        """A new access key (id, secret) allowed only `actions`."""
        self._users += 1
        return self._user(self._iam(self._admin), f"limited{self._users}", allow(*actions))

    def key_with_policy(self, *statements: dict[str, Any]) -> tuple[str, str]:
        """A new access key (id, secret) under an IAM policy of these statements (moto
        checks each request's action and resource, `arn:aws:s3:::{bucket}/{key}`;
        a matching `Deny` wins)."""
        self._users += 1
        policy = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
        return self._user(self._iam(self._admin), f"limited{self._users}", policy)

    def revoke(self, access_key_id: str) -> None:
        """Delete an access key made by `key_allowed` or `key_with_policy`."""
        owner = self._owners.pop(access_key_id)
        self._iam(self._admin).delete_access_key(UserName=owner, AccessKeyId=access_key_id)

    def client(self) -> Any:
        """A boto3 S3 client with the good key."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            verify=False,
        )

    def create_bucket(self, name: str) -> str:
        """The bucket `name`, made unless the good key owns it already (test modules of
        one session may share one: the live site's repository stays where it began)."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": self.region}
            )
        return name

    def target(
        self,
        bucket: str,
        prefix: str = "",
        *,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        endpoint: str | None = None,
    ) -> Target:
        return Target(
            endpoint=endpoint or self.endpoint,
            region=self.region,
            bucket=bucket,
            prefix=prefix,
            access_key_id=self.access_key_id if access_key_id is None else access_key_id,
            secret_access_key=(
                self.secret_access_key if secret_access_key is None else secret_access_key
            ),
        )

    def configure_target(self, api: httpx.Client, bucket: str, prefix: str) -> None:
        """A daemon's backup target (`PUT /api/backup-target` through `api`): this
        server's bucket `bucket` (made when missing) under `prefix`, the good key."""
        self.create_bucket(bucket)
        reply = api.put(
            "/api/backup-target",
            json={
                "endpoint": self.endpoint,
                "region": self.region,
                "bucket": bucket,
                "prefix": prefix,
                "access_key_id": self.access_key_id,
                "secret_access_key": self.secret_access_key,
            },
        )
        assert reply.status_code == 200, reply.text

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix`: key → its bytes."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])[
                    "Body"
                ].read()
        return found

    def corrupt_one_object(self, bucket: str, key_prefix: str) -> str:
        """Flip one byte in the middle of the largest object under `key_prefix`; its key."""
        client = self.client()
        listed = client.list_objects_v2(Bucket=bucket, Prefix=key_prefix).get("Contents", [])
        if not listed:
            raise AssertionError(f"no object under {bucket}/{key_prefix}")
        key = max(listed, key=lambda item: item["Size"])["Key"]
        body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0x01
        client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
        return str(key)

    def tail(self) -> str:
        """The end of moto_server's log (for failure messages)."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
