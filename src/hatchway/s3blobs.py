"""The AWS backend's :class:`~hatchway.blobs.BlobStore`: keys are objects in the outputs bucket.

Objects live under ``blobs/`` (beside the store's ``records/`` and the run copies in ``runs/``),
carry their SHA-256 as metadata, and are read through a local cache directory when a caller needs
a file (an input placed in an action's ``in/``). Keys are checked by the same rule as local blobs,
so nothing escapes its prefix.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hatchway.aws import AwsClients, error_code, translate
from hatchway.blobs import BlobInfo, BlobStore, clean_path
from hatchway.config import Settings

PREFIX = "blobs/"
#: S3 keys are up to 1024 bytes, so a name in one may be as long (HATCHWAY_MAX_PATH_COMPONENT_BYTES)
S3_MAX_COMPONENT = 1024
WHAT = "the outputs bucket"


class S3BlobStore(BlobStore):
    """Blobs as S3 objects, with a local read cache."""

    def __init__(self, bucket: str, cache_dir: Path, aws: AwsClients | None = None) -> None:
        self.bucket = bucket
        self.cache_dir = cache_dir
        self.aws = aws or AwsClients()

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None) -> S3BlobStore:
        return cls(settings.outputs_bucket, settings.blob_dir / "s3-cache", aws or AwsClients.from_settings(settings))

    @property
    def s3(self) -> Any:
        return self.aws.client("s3")

    def _object(self, key: str) -> str:
        return PREFIX + clean_path(key, "key", S3_MAX_COMPONENT)

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        sha = hashlib.sha256(data).hexdigest()
        with translate(WHAT):
            self.s3.put_object(Bucket=self.bucket, Key=self._object(key), Body=data, Metadata={"sha256": sha})
        return BlobInfo(key, len(data), sha, _now_ms())

    def put_file(self, key: str, source: Path) -> BlobInfo:
        digest = hashlib.sha256()
        with source.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        with translate(WHAT), source.open("rb") as handle:
            self.s3.upload_fileobj(
                handle, self.bucket, self._object(key), ExtraArgs={"Metadata": {"sha256": digest.hexdigest()}}
            )
        return BlobInfo(key, source.stat().st_size, digest.hexdigest(), _now_ms())

    def read(self, key: str) -> bytes | None:
        with translate(WHAT):
            try:
                body: bytes = self.s3.get_object(Bucket=self.bucket, Key=self._object(key))["Body"].read()
            except self.s3.exceptions.ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
        return body

    def exists(self, key: str) -> bool:
        """A HEAD request: checking that an input exists must not download it."""
        with translate(WHAT):
            try:
                self.s3.head_object(Bucket=self.bucket, Key=self._object(key))
            except self.s3.exceptions.ClientError as exc:
                if _is_missing(exc):
                    return False
                raise
        return True

    def local_path(self, key: str) -> Path | None:
        data = self.read(key)
        if data is None:
            return None
        target = self.cache_dir / clean_path(key, "key", S3_MAX_COMPONENT)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(temporary).replace(target)
        return target

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        start = self._object(prefix.rstrip("/")) + "/"
        paginator = self.s3.get_paginator("list_objects_v2")
        with translate(WHAT):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    modified = int(item["LastModified"].timestamp() * 1000)
                    yield BlobInfo(item["Key"][len(PREFIX) :], int(item["Size"]), None, modified)

    def delete_prefix(self, prefix: str) -> int:
        exact = self._object(prefix.rstrip("/"))
        with translate(WHAT):
            try:
                self.s3.head_object(Bucket=self.bucket, Key=exact)
            except self.s3.exceptions.ClientError as exc:
                if not _is_missing(exc):
                    raise
            else:
                self.s3.delete_object(Bucket=self.bucket, Key=exact)
                return 1
        keys = [PREFIX + info.key for info in self.list(prefix)]
        with translate(WHAT):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)


def _is_missing(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _now_ms() -> int:
    return int(time.time() * 1000)
