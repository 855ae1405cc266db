"""An S3-compatible server on loopback for the ``s3://`` tests: moto's server mode as a child process.

moto stands in for AWS S3, MinIO, Ceph RGW or R2: it speaks the same REST API with SigV4 signatures.
With ``INITIAL_NO_AUTH_ACTION_COUNT`` set it checks every request's signature against the IAM users it
knows, so wrong credentials are refused as a real service refuses them; the first few requests
(unchecked) create the one user whose keys the tests use.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import free_port, serving

__all__ = ["MotoS3", "moto_s3"]

REGION = "us-east-1"
_SETUP_ACTIONS = 3  # create_user, put_user_policy, create_access_key: unauthenticated


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    access_key: str
    secret: str
    pid: int

    def env(self) -> dict[str, str]:
        """The usual AWS variables that point a client at this server with valid credentials."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": REGION}

    def client(self, **overrides: str) -> Any:
        """A boto3 S3 client with these credentials (``overrides`` replace them)."""
        import boto3

        args = {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret, **overrides}
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION, **args)


@contextlib.contextmanager
def moto_s3(workdir: Path) -> Iterator[MotoS3]:
    """``moto_server`` on a free loopback port, with one IAM user allowed everything on S3."""
    import boto3

    port = free_port()
    exe = str(Path(sys.executable).with_name("moto_server"))
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_ACTIONS), "MOTO_PORT": str(port),
           # keep moto away from any real AWS configuration of the machine
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    with serving([exe, "-H", "127.0.0.1", "-p", str(port)], port, cwd=workdir, env=env) as proc:
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="blocks")
        iam.put_user_policy(UserName="blocks", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}],
        }))
        key = iam.create_access_key(UserName="blocks")["AccessKey"]
        yield MotoS3(endpoint, key["AccessKeyId"], key["SecretAccessKey"], proc.pid)
