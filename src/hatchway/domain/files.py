"""Files as the gateway keeps them: keyed blobs and the paths that name them."""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from hatchway.errors import ValidationFailed

if TYPE_CHECKING:
    from hatchway.runtime.redact import RedactorLike

MAX_PATH = 1024
#: a name in a path, in bytes (the longest file name Linux file systems store)
MAX_COMPONENT = 255
#: how much of a file or blob is read or written at a time
CHUNK = 1 << 20


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
    if any(len(part.encode("utf-8", "surrogatepass")) > max_component for part in parts):
        raise ValidationFailed.at([field], f"a name in a path may hold at most {max_component} bytes", "too_long")
    return path


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from iter(lambda: handle.read(CHUNK), b"")


def is_utf8(path: Path) -> bool:
    """Whether the file is text: valid UTF-8 from its first byte to its last (empty included)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in file_chunks(path):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def redacted_text(path: Path, redactor: RedactorLike) -> Iterable[bytes]:
    """The bytes of the file at ``path`` to keep: a text file's with every secret of ``redactor``
    hidden (streamed, a whole spelling looked past each cut), any other file's as they are."""
    if not redactor or not is_utf8(path):
        return file_chunks(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    text = (decoder.decode(chunk) for chunk in file_chunks(path))
    return (piece.encode() for piece in redactor.stream(text) if piece)
