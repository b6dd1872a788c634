"""Files the gateway keeps: uploaded inputs, run artifacts, file stashes.

A :class:`BlobStore` maps keys (``files/<project>/<env>/<path>``, ``artifacts/<run>/<path>``,
``stashes/<project>/<env>/<id>/<path>``) to bytes. The embedded default keeps them under
``$HATCHWAY_HOME/blobs``; the AWS backend keeps them in S3. Keys never leave their prefix: a path
with ``..``, an absolute path or an empty segment is refused before any file is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hatchway.errors import Conflict, ValidationFailed

MAX_PATH = 1024
#: bytes of one path segment: a file name longer than this cannot exist (Linux NAME_MAX)
MAX_NAME = 255
#: a temporary upload left this long without a write belongs to nobody (its writer died)
STALE_UPLOAD_SECONDS = 300


@dataclass
class BlobInfo:
    key: str
    size: int
    sha256: str | None = None
    modified_at: int = 0


def clean_path(path: str, field: str = "path") -> str:
    """A relative POSIX path without tricks, or a 422."""
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
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME for part in parts):
        raise ValidationFailed.at([field], f"a name in the path is longer than {MAX_NAME} bytes")
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
        self._remove_stale_uploads()

    def _remove_stale_uploads(self) -> None:
        """Temporary uploads of a process that died mid-write (another live process may be writing
        its own, so only those nobody has written to for a while)."""
        horizon = time.time() - STALE_UPLOAD_SECONDS
        for path in self.root.glob(".upload-*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < horizon:
                    path.unlink()

    def _path(self, key: str) -> Path:
        clean_path(key, "key")
        return self.root / key

    def _commit(self, key: str, write: Path) -> BlobInfo:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write.chmod(0o400)
            write.replace(target)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            # a file where the path needs a directory (k1, then k1/k2), or a directory where the file goes
            raise Conflict(f"cannot store {_shown(key)}: a file and a directory would have the same path") from None
        stat = target.stat()
        return BlobInfo(key, stat.st_size, _sha256(target), int(stat.st_mtime * 1000))

    def _upload(self, key: str, write: Callable[[int, str], None]) -> BlobInfo:
        """Write into a temporary file beside the blobs, then move it into place; removed on failure."""
        self._path(key)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            write(fd, temporary)
            return self._commit(key, Path(temporary))
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def put_file(self, key: str, source: Path) -> BlobInfo:
        def copy(fd: int, temporary: str) -> None:
            os.close(fd)
            shutil.copyfile(source, temporary)

        return self._upload(key, copy)

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        def write(fd: int, _: str) -> None:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)

        return self._upload(key, write)

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


def _shown(key: str) -> str:
    """A key as a client named it: the path inside its project and environment (files/<p>/<e>/...)."""
    parts = key.split("/", 3)
    return repr(parts[3] if parts[0] == "files" and len(parts) == 4 else key)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
