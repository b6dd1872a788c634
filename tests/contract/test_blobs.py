"""The blob store contract: local files and S3 (moto) behave alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.blobs import LocalBlobStore
from hatchway.errors import InternalError, ValidationFailed
from hatchway.ports import BlobStore
from hatchway.secrets.box import local_blob_cipher


@pytest.fixture(params=["local", "local-encrypted", pytest.param("s3", marks=pytest.mark.aws)])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    if request.param == "local-encrypted":
        yield LocalBlobStore(tmp_path / "blobs", local_blob_cipher(tmp_path / "secret.key"))
        return
    from hatchway.aws.s3blobs import S3BlobStore

    aws = request.getfixturevalue("moto_aws")  # the suite's one moto (conftest.py)
    bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    yield S3BlobStore(bucket, aws)


def test_bytes_and_files_round_trip(blobs: BlobStore, tmp_path: Path) -> None:
    info = blobs.put_bytes("files/p/e/a.txt", b"hello")
    assert (info.key, info.size) == ("files/p/e/a.txt", 5)
    assert info.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert blobs.read("files/p/e/a.txt") == b"hello"
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 8192)
    assert blobs.put_file("files/p/e/dir/big.bin", source).size == 256 * 8192
    assert blobs.export("files/p/e/dir/big.bin", tmp_path / "out" / "big.bin")
    assert (tmp_path / "out" / "big.bin").read_bytes() == source.read_bytes()
    assert blobs.read("files/p/e/missing") is None and not blobs.export("files/p/e/missing", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    # a stream of chunks of any size is stored as their concatenation, and sized and listed so
    info = blobs.put_chunks("files/p/e/s.txt", (bytes([65 + i % 26]) * i for i in range(2000)))
    assert info.size == sum(range(2000)) and blobs.read("files/p/e/s.txt") == b"".join(
        bytes([65 + i % 26]) * i for i in range(2000)
    )
    assert {i.key: i.size for i in blobs.list("files/p/e")}["files/p/e/s.txt"] == info.size
    assert blobs.put_bytes("files/p/e/empty", b"").size == 0 and blobs.read("files/p/e/empty") == b""
    assert blobs.exists("files/p/e/a.txt") and not blobs.exists("files/p/e/missing")
    assert not blobs.exists("files/p/e/dir")  # a prefix is not a blob


def test_list_and_delete_by_prefix(blobs: BlobStore) -> None:
    for key in ("files/p/e/a", "files/p/e/d/b", "files/p/e/d/c", "files/p/other/x"):
        blobs.put_bytes(key, key.encode())
    assert sorted(i.key for i in blobs.list("files/p/e")) == ["files/p/e/a", "files/p/e/d/b", "files/p/e/d/c"]
    assert sorted(i.key for i in blobs.list("files/p/e/d/")) == ["files/p/e/d/b", "files/p/e/d/c"]
    assert blobs.delete_prefix("files/p/e/a") == 1
    assert blobs.delete_prefix("files/p/e/d") == 2
    assert blobs.delete_prefix("files/p/e/nothing") == 0
    assert [i.key for i in blobs.list("files/p")] == ["files/p/other/x"]


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/./b", "", "a\\b"])
def test_keys_never_escape(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValidationFailed):
        blobs.put_bytes(key, b"x")


def test_encrypted_blobs_are_bound_to_their_name_and_refuse_damage(tmp_path: Path) -> None:
    # Given blobs the embedded default kept encrypted
    blobs = LocalBlobStore(tmp_path / "blobs", local_blob_cipher(tmp_path / "secret.key"))
    blobs.put_bytes("files/p/e/a.txt", b"secret-looking text " * 1000)
    blobs.put_bytes("files/p/e/b.txt", b"other")
    stored = tmp_path / "blobs" / "files" / "p" / "e"
    assert b"secret-looking" not in (stored / "a.txt").read_bytes()
    # When one is damaged, or put in another's place on disk
    damaged = bytearray((stored / "a.txt").read_bytes())
    damaged[len(damaged) // 2] ^= 1
    (stored / "a.txt").chmod(0o600)
    (stored / "a.txt").write_bytes(bytes(damaged))
    blobs.put_bytes("files/p/e/c.txt", b"third")
    (stored / "b.txt").chmod(0o600)
    (stored / "b.txt").write_bytes((stored / "c.txt").read_bytes())
    # Then reading it is an internal error, never other bytes
    for key in ("files/p/e/a.txt", "files/p/e/b.txt"):
        with pytest.raises(InternalError):
            blobs.read(key)
    assert blobs.read("files/p/e/c.txt") == b"third"


@pytest.mark.aws
@pytest.mark.parametrize("with_key", [True, False])
def test_s3_blobs_are_put_with_sse_kms(tmp_path: Path, with_key: bool, moto_aws: Any) -> None:
    from hatchway.aws.s3blobs import PREFIX, S3BlobStore
    from hatchway.config import Settings

    aws = moto_aws
    s3 = aws.client("s3")
    bucket = f"blobs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    key_arn = aws.client("kms").create_key(Description="outputs")["KeyMetadata"]["Arn"] if with_key else None
    # Given the store the aws backend builds from its settings (the template sets the key)
    settings = Settings().with_(backend="aws", bucket=bucket, outputs_kms_key_id=key_arn)
    blobs = S3BlobStore.from_settings(settings, aws)
    source = tmp_path / "f.bin"
    source.write_bytes(b"f" * 1000)
    # When blobs are put every way, a multipart upload included
    blobs.put_bytes("files/p/e/bytes", b"b")
    blobs.put_file("files/p/e/file", source)
    blobs.put_chunks("files/p/e/big", (bytes([i]) * (1 << 20) for i in range(12)))
    # Then S3 keeps each encrypted with KMS: the outputs key, or the account's aws/s3 key without one
    for name in ("bytes", "file", "big"):
        head = s3.head_object(Bucket=bucket, Key=f"{PREFIX}files/p/e/{name}")
        assert head["ServerSideEncryption"] == "aws:kms", name
        if key_arn:
            assert head["SSEKMSKeyId"] == key_arn, name
    assert blobs.read("files/p/e/big") == b"".join(bytes([i]) * (1 << 20) for i in range(12))
