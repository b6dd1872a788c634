"""The AWS backend's blob store (:class:`hatchway.ports.BlobStore`): keys are objects in the outputs bucket.

Objects live under ``blobs/`` (beside the store's ``records/`` and the run copies in ``runs/``)
and are written encrypted by S3 with a KMS key (SSE-KMS: the
outputs key of ``template.yaml``, ``HATCHWAY_OUTPUTS_KMS_KEY_ID``, else the account's ``aws/s3``
key) - asked for on every put, whatever the bucket's default. Uploads and downloads stream (a
multipart upload, a body read in chunks), so a blob of any size passes in bounded memory. Keys
are checked by the same rule as local blobs, so nothing escapes its prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from hatchway.aws.clients import AwsClients, error_code, translate
from hatchway.blobs import BaseBlobStore, ChunkReader, Measured
from hatchway.config import Settings
from hatchway.domain.files import CHUNK, BlobInfo, clean_path

PREFIX = "blobs/"
WHAT = "the outputs bucket"
#: S3 keys are up to 1024 bytes, so a name in one may be as long (HATCHWAY_MAX_PATH_COMPONENT_BYTES)
S3_MAX_COMPONENT = 1024


class S3BlobStore(BaseBlobStore):
    """Blobs as S3 objects, encrypted by S3 under a KMS key."""

    def __init__(
        self, bucket: str, aws: AwsClients | None = None, kms_key_id: str | None = None, prefix: str = PREFIX
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.aws = aws or AwsClients()
        #: SSE-KMS on every put: with this key, or (None) the account's aws/s3 key
        self.encryption: dict[str, str] = {"ServerSideEncryption": "aws:kms"}
        if kms_key_id:
            self.encryption["SSEKMSKeyId"] = kms_key_id

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None, prefix: str = PREFIX) -> S3BlobStore:
        """The outputs bucket's blobs (``prefix``: where keys start; ``""`` for the run copies' ``runs/``)."""
        aws = aws or AwsClients.from_settings(settings)
        return cls(settings.aws.outputs_bucket, aws, settings.aws.outputs_kms_key_id, prefix)

    @property
    def s3(self) -> Any:
        return self.aws.client("s3")

    def _object(self, key: str) -> str:
        return self.prefix + clean_path(key, "key", S3_MAX_COMPONENT)

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        measured = Measured(chunks)
        with translate(WHAT):
            self.s3.upload_fileobj(ChunkReader(measured), self.bucket, self._object(key), ExtraArgs=self.encryption)
        return measured.info(key, _now_ms())

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        with translate(WHAT):
            self.s3.put_object(Bucket=self.bucket, Key=self._object(key), Body=data, **self.encryption)
        return BlobInfo(key, len(data), hashlib.sha256(data).hexdigest(), _now_ms())

    @contextlib.contextmanager
    def chunks(self, key: str) -> Iterator[Iterator[bytes] | None]:
        with translate(WHAT):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=self._object(key))["Body"]
            except self.s3.exceptions.ClientError as exc:
                if _is_missing(exc):
                    body = None
                else:
                    raise
        if body is None:
            yield None
            return
        try:
            yield _translated(body.iter_chunks(CHUNK))
        finally:
            body.close()

    def exists(self, key: str) -> bool:
        """A HEAD request: checking that an input exists must not download it."""
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        with translate(WHAT):
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=self._object(key))
            except self.s3.exceptions.ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
        return int(head["ContentLength"])

    def link(self, key: str, seconds: int) -> str | None:
        """A presigned GET of the object (signed here, so the caller needs no AWS credentials; S3
        decrypts it with the signer's KMS grant)."""
        with translate(WHAT):
            url: str = self.s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._object(key)}, ExpiresIn=seconds
            )
        return url

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        start = self._object(prefix.rstrip("/")) + "/"
        paginator = self.s3.get_paginator("list_objects_v2")
        with translate(WHAT):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for item in page.get("Contents", []):
                    modified = int(item["LastModified"].timestamp() * 1000)
                    yield BlobInfo(item["Key"][len(self.prefix) :], int(item["Size"]), None, modified)

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
        keys = [self.prefix + info.key for info in self.list(prefix)]
        with translate(WHAT):
            for start in range(0, len(keys), 1000):
                batch = [{"Key": key} for key in keys[start : start + 1000]]
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)


def _translated(pieces: Iterator[bytes]) -> Iterator[bytes]:
    with translate(WHAT):
        yield from pieces


def _is_missing(exc: BaseException) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _now_ms() -> int:
    return int(time.time() * 1000)


if TYPE_CHECKING:  # mypy checks that these answer their ports
    from hatchway import ports

    def _implements(store: S3BlobStore) -> ports.BlobStore:
        return store
