"""Files the gateway keeps: uploaded inputs, run artifacts, file stashes.

A :class:`BlobStore` maps keys (``files/<project>/<env>/<path>``, ``artifacts/<run>/<path>``,
``stashes/<project>/<env>/<id>/<path>``) to bytes. The embedded default keeps them under
``$HATCHWAY_HOME/blobs``; the AWS backend keeps them in S3. Keys never leave their prefix: a path
with ``..``, an absolute path or an empty segment is refused before any file is touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hatchway.errors import ValidationFailed

MAX_PATH = 1024
#: a name in a path, in bytes (the longest file name Linux file systems store)
MAX_COMPONENT = 255


@dataclass
class BlobInfo:
    key: str
    size: int
    sha256: str | None = None
    modified_at: int = 0


def clean_path(path: str, field: str = "path", max_component: int = MAX_COMPONENT) -> str:
    """A relative POSIX path without tricks, or a 422; no name in it longer than ``max_component`` bytes."""
    parts = PurePosixPath(path).parts
    if (
        not path
        or len(path) > MAX_PATH
        or path.startswith("/")
        or "\\" in path
        or any(part in ("", ".", "..") for part in path.split("/"))
        or any(ord(ch) < 32 for ch in path)
        or not parts
    ):
        raise ValidationFailed.at([field], "a relative path of names separated by '/', without '.' or '..'")
    if any(len(part.encode()) > max_component for part in parts):
        raise ValidationFailed.at([field], f"a name in a path may hold at most {max_component} bytes", "too_long")
    return path


class BlobStore(ABC):
    """Keyed bytes."""

    @abstractmethod
    def put_file(self, key: str, source: Path) -> BlobInfo: ...

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> BlobInfo: ...

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """A readable local file holding the blob (downloaded first if need be), or None."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[BlobInfo]: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    def exists(self, key: str) -> bool:
        """Whether the blob is there (without fetching it)."""
        return self.local_path(key) is not None

    def read(self, key: str) -> bytes | None:
        path = self.local_path(key)
        return path.read_bytes() if path is not None else None


class LocalBlobStore(BlobStore):
    """Blobs as files under one directory (written atomically, read-only once written)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        clean_path(key, "key")
        return self.root / key

    def _commit(self, key: str, write: Path) -> BlobInfo:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write.chmod(0o400)
        write.replace(target)
        stat = target.stat()
        return BlobInfo(key, stat.st_size, _sha256(target), int(stat.st_mtime * 1000))

    def put_file(self, key: str, source: Path) -> BlobInfo:
        self._path(key).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        os.close(fd)
        shutil.copyfile(source, temporary)
        return self._commit(key, Path(temporary))

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return self._commit(key, Path(temporary))

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file():
                stat = path.stat()
                yield BlobInfo(path.relative_to(self.root).as_posix(), stat.st_size, None, int(stat.st_mtime * 1000))

    def delete_prefix(self, prefix: str) -> int:
        target = self._path(prefix.rstrip("/"))
        if target.is_file():
            target.unlink()
            return 1
        if not target.is_dir():
            return 0
        count = sum(1 for p in target.rglob("*") if p.is_file())
        shutil.rmtree(target, ignore_errors=True)
        return count


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
