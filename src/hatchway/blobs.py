"""Files the gateway keeps: uploaded inputs, run artifacts, file stashes.

A blob store (:class:`hatchway.ports.BlobStore`) maps keys (``files/<project>/<env>/<path>``,
``artifacts/<project>/<run>/<path>``, ``stashes/<project>/<env>/<id>/<path>``) to bytes, written and read as
streams of chunks so a blob of any size passes in bounded memory. The embedded default keeps them under
``$HATCHWAY_HOME/blobs``, each encrypted with the deployment's key file
(:class:`~hatchway.secrets.box.BlobCipher`); the AWS backend keeps them in S3 under SSE-KMS. Keys
never leave their prefix: a path with ``..``, an absolute path, an empty segment or a name longer
than a file system allows is refused before any file is touched.

What an action leaves (artifacts, its stash) passes :func:`hatchway.domain.files.redacted_text` on the way in: a text
file - valid UTF-8 - has every secret of its run hidden like the run's log; a binary file is kept
as it is, since no search can tell a secret inside compressed or encoded bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from hatchway.domain.files import CHUNK, BlobInfo, clean_path, file_chunks
from hatchway.errors import Conflict, ValidationFailed
from hatchway.secrets.box import BlobCipher

if TYPE_CHECKING:
    from hatchway import ports

log = logging.getLogger("hatchway")

#: a temporary upload left this long without a write belongs to nobody (its writer died)
STALE_UPLOAD_SECONDS = 300
#: the first line of a blob the embedded default encrypted: then the plaintext's size, in hex
#: (listings show it without decrypting), and the Encryption SDK message
MAGIC = b"HWBLOB1 "
_HEADER = len(MAGIC) + 16 + 1


class Measured:
    """Chunks passed through, counted and hashed on the way (a blob's size and SHA-256)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    def info(self, key: str, modified_at: int) -> BlobInfo:
        return BlobInfo(key, self.size, self._digest.hexdigest(), modified_at)


class ChunkReader(io.RawIOBase):
    """A readable binary file over an iterator of chunks (for readers that take no iterator)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


class BaseBlobStore(ABC):
    """Keyed bytes, written and read as streams: what every blob store shares."""

    @abstractmethod
    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        """Store the bytes of ``chunks`` under ``key`` (replacing what was there), atomically."""

    def put_file(self, key: str, source: Path) -> BlobInfo:
        return self.put_chunks(key, file_chunks(source))

    def put_bytes(self, key: str, data: bytes) -> BlobInfo:
        return self.put_chunks(key, [data])

    @abstractmethod
    @contextlib.contextmanager
    def chunks(self, key: str) -> Iterator[Iterator[bytes] | None]:
        """The blob's bytes as chunks (None when there is no such blob), while the context is open."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[BlobInfo]: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the blob is there (without reading it)."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The blob's length in bytes (without reading it); None when there is no such blob."""

    def link(self, key: str, seconds: int) -> str | None:
        """A URL that reads the blob for ``seconds``, where the store can give one (None here)."""
        return None

    def read(self, key: str) -> bytes | None:
        with self.chunks(key) as chunks:
            return None if chunks is None else b"".join(chunks)

    def export(self, key: str, target: Path) -> bool:
        """Write the blob's bytes to a new private file ``target``; False when there is no such blob."""
        with self.chunks(key) as chunks:
            if chunks is None:
                return False
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    handle.write(chunk)
        return True


class LocalBlobStore(BaseBlobStore):
    """Blobs as files under one directory (written atomically, read-only once written).

    With a ``cipher`` every blob is written encrypted (:data:`MAGIC`, the plaintext's size, an
    Encryption SDK message under the deployment's key) and a file without the magic - a blob kept
    before blobs were encrypted - is read as it is, until :meth:`encrypt_legacy` rewrites it.
    """

    def __init__(self, root: Path, cipher: BlobCipher | Callable[[], BlobCipher] | None = None) -> None:
        self.root = root
        self._cipher = cipher
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

    @property
    def cipher(self) -> BlobCipher | None:
        if self._cipher is not None and not isinstance(self._cipher, BlobCipher):
            self._cipher = self._cipher()  # made on first use: a damaged key fails that use, not the start
        return self._cipher

    def _path(self, key: str) -> Path:
        clean_path(key, "key")
        return self.root / key

    def put_chunks(self, key: str, chunks: Iterable[bytes]) -> BlobInfo:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except (FileExistsError, NotADirectoryError):
            raise _clash(key) from None
        measured = Measured(chunks)
        fd, temporary = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                cipher = self.cipher
                if cipher is None:
                    for chunk in measured:
                        handle.write(chunk)
                else:
                    handle.write(bytes(_HEADER))  # the size is known at the end
                    for piece in cipher.encrypt(ChunkReader(measured), key):
                        handle.write(piece)
                    handle.seek(0)
                    handle.write(MAGIC + f"{measured.size:016x}\n".encode())
            written = Path(temporary)
            written.chmod(0o400)
            written.replace(target)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            Path(temporary).unlink(missing_ok=True)
            raise _clash(key) from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return measured.info(key, int(target.stat().st_mtime * 1000))

    @contextlib.contextmanager
    def chunks(self, key: str) -> Iterator[Iterator[bytes] | None]:
        try:
            handle = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            yield None
            return
        with handle:
            header = handle.read(_HEADER)
            if header.startswith(MAGIC) and self.cipher is not None:
                yield self.cipher.decrypt(handle, key)
            else:  # kept before blobs were encrypted
                yield _prefixed(header, handle)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        try:
            return self._size(self._path(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _size(self, path: Path) -> int:
        with path.open("rb") as handle:
            header = handle.read(_HEADER)
        if header.startswith(MAGIC):
            return int(header[len(MAGIC) : _HEADER - 1], 16)
        return path.stat().st_size

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file():
                modified = int(path.stat().st_mtime * 1000)
                yield BlobInfo(path.relative_to(self.root).as_posix(), self._size(path), None, modified)

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

    def encrypt_legacy(self) -> int:
        """Encrypt in place every blob kept in the clear (before blobs were encrypted); how many."""
        if self.cipher is None:
            return 0
        done = 0
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(".") or not path.is_file() or path.is_symlink():
                continue
            with path.open("rb") as handle:
                if handle.read(len(MAGIC)) == MAGIC:
                    continue
            try:
                self.put_file(key, path)
            except (OSError, ValidationFailed) as exc:
                log.warning("a blob kept in the clear could not be encrypted", extra={"reason": str(exc)})
                continue
            done += 1
        return done


def _prefixed(first: bytes, handle: BinaryIO) -> Iterator[bytes]:
    if first:
        yield first
    yield from iter(lambda: handle.read(CHUNK), b"")


def _clash(key: str) -> Conflict:
    """A file where the path needs a directory (k1, then k1/k2), or a directory where the file goes."""
    parts = key.split("/", 3)  # shown as the client named it: the path inside its project and environment
    shown = repr(parts[3] if parts[0] == "files" and len(parts) == 4 else key)
    return Conflict(f"cannot store {shown}: a file and a directory would have the same path")


if TYPE_CHECKING:  # mypy checks that the store answers the port

    def _implements(store: LocalBlobStore) -> ports.BlobStore:
        return store
