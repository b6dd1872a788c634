"""The blob store contract: local files and S3 (moto) behave alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hatchway.blobs import BlobStore, LocalBlobStore
from hatchway.errors import ValidationFailed
from tests.awsmock import REGION, moto_in_process


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    from hatchway.aws import AwsClients
    from hatchway.s3blobs import S3BlobStore

    with moto_in_process():
        aws = AwsClients(REGION)
        bucket = f"blobs-{uuid.uuid4().hex[:8]}"
        aws.client("s3").create_bucket(Bucket=bucket)
        yield S3BlobStore(bucket, tmp_path / "cache", aws)


def test_bytes_and_files_round_trip(blobs: BlobStore, tmp_path: Path) -> None:
    info = blobs.put_bytes("files/p/e/a.txt", b"hello")
    assert (info.key, info.size) == ("files/p/e/a.txt", 5)
    assert info.sha256 == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert blobs.read("files/p/e/a.txt") == b"hello"
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 8192)
    assert blobs.put_file("files/p/e/dir/big.bin", source).size == 256 * 8192
    local = blobs.local_path("files/p/e/dir/big.bin")
    assert local is not None and local.read_bytes() == source.read_bytes()
    assert blobs.read("files/p/e/missing") is None and blobs.local_path("files/p/e/missing") is None
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
