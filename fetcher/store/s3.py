"""Bodies in an S3-compatible bucket ([storage] bodies = "s3://bucket/prefix",
[storage] s3_endpoint for a server other than AWS): one object per body,
<prefix>/<first two hex digits>/<sha256>.gz, as in the files layout. Credentials
and region come from boto3's usual sources (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ~/.aws). The only module that
imports boto3 (the `s3` extra), and only when a store is configured so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fetcher.core.errors import StoreError
from fetcher.store.bodies import Bodies


class BodyBucket(Bodies):
    """A put is one PUT of the whole object: S3 makes it visible whole or not at all."""

    def __init__(self, location: str, endpoint: str | None):
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as error:
            raise StoreError(f"{location}: bodies in S3 need boto3: pip install 'fetcher[s3]'") from error
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        self.bucket, self.prefix, self.where = bucket, prefix.strip("/"), location
        self._client: Any = boto3.client("s3", endpoint_url=endpoint)
        self._errors = (BotoCoreError, ClientError)
        self._client_error = ClientError

    def key(self, sha: str) -> str:
        name = f"{sha[:2]}/{sha}.gz"
        return f"{self.prefix}/{name}" if self.prefix else name

    def has(self, sha: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(sha))
            return True
        except self._client_error as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._trouble(error) from error
        except self._errors as error:
            raise self._trouble(error) from error

    def put(self, sha: str, gzipped: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self.key(sha), Body=gzipped,
                                    ContentType="application/gzip")
        except self._errors as error:
            raise self._trouble(error) from error

    def get(self, sha: str) -> bytes:
        try:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=self.key(sha))["Body"].read())
        except self._client_error as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{self.where}: no body {sha}") from error
            raise self._trouble(error) from error
        except self._errors as error:
            raise self._trouble(error) from error

    def names(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        for page in pages:
            for entry in page.get("Contents", ()):
                name = entry["Key"].rsplit("/", 1)[-1]
                if name.endswith(".gz"):
                    yield name[:-3]

    def _trouble(self, error: Exception) -> OSError:
        """The bucket's trouble as an OSError: the store's machine trouble (a run stops)."""
        return OSError(f"{self.where}: {' '.join(str(error).split())}")
