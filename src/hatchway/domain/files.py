"""Files as the gateway keeps them: keyed blobs and the paths that name them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

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
    if any(len(part.encode("utf-8", "surrogatepass")) > max_component for part in parts):
        raise ValidationFailed.at([field], f"a name in a path may hold at most {max_component} bytes", "too_long")
    return path
