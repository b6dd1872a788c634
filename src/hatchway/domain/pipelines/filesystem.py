"""The pipeline filesystem: a directory per execution, shared by its Run Docker container steps.

Buddy mounts a pipeline's filesystem in each container step at its ``working_directory``
(``/buddy/<pipeline>`` by default); ``volume_mappings`` (``<filesystem path>:<container path>``)
mount parts of it elsewhere instead, ``mount_filesystem_disable`` leaves it out, and
``export_container_path`` copies a path of the container back into it after the step.

Here the filesystem of an execution is ``<work dir>/pipelines/<project hash>/<execution id>`` on
the gateway's host: one directory per tenant and execution, which only that execution's steps
mount. A filesystem path is relative to that directory (a leading ``/`` names its root) and may
not leave it: ``..`` is refused when the pipeline is defined, and a symbolic link a step left in
the filesystem is refused when the next step would mount through it (:func:`host_path`).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from pathlib import Path

#: where Buddy mounts the filesystem when a step names no working directory
DEFAULT_MOUNT = "/buddy"
#: container paths a mapping may not cover: the root, the kernel's, and hatchway's contract (data dir, /tmp)
RESERVED = ("/", "/hatchway", "/tmp", "/proc", "/sys", "/dev")  # noqa: S108
MAX_MAPPINGS = 20
_EXECUTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class PathRefused(ValueError):
    """A filesystem or container path that may not be used (the message says why)."""


def default_mount(pipeline: str) -> str:
    return f"{DEFAULT_MOUNT}/{pipeline}"


def filesystem_root(work_dir: Path) -> Path:
    return work_dir / "pipelines"


def execution_dir(work_dir: Path, project_id: str, execution_id: str) -> Path:
    """The filesystem of one execution (a tenant's executions live under a directory of their own)."""
    if not _EXECUTION_ID.match(execution_id):
        raise PathRefused("not an execution id")
    tenant = hashlib.sha256(project_id.encode()).hexdigest()[:16]
    return filesystem_root(work_dir) / tenant / execution_id


def filesystem_path(text: str) -> str:
    """A filesystem path as stored: relative to the filesystem's root, ``""`` for the root itself."""
    if "\0" in text or "\\" in text:
        raise PathRefused("a filesystem path has no NUL or backslash")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused("a filesystem path may not contain '..' (it stays inside the pipeline filesystem)")
    return "/".join(parts)


def container_path(text: str, what: str = "a container path") -> str:
    """An absolute, normalised container path outside the reserved ones."""
    if not text.startswith("/"):
        raise PathRefused(f"{what} is absolute (starts with /)")
    if any(char in text for char in ":,\0\n"):
        raise PathRefused(f"{what} has no ':', ',', newline or NUL")
    if ".." in text.split("/"):
        raise PathRefused(f"{what} may not contain '..'")
    path = posixpath.normpath(text)
    path = "/" + path.lstrip("/")
    for reserved in RESERVED:
        if path == reserved or (reserved != "/" and path.startswith(reserved + "/")):
            shown = "the container's root" if reserved == "/" else reserved
            raise PathRefused(f"{what} may not be {shown} or under it (the container needs it)")
    return path


def parse_mapping(text: str) -> tuple[str, str]:
    """``<filesystem path>:<container path>`` -> (filesystem path, container path)."""
    source, sep, target = text.partition(":")
    if not sep or ":" in target:
        raise PathRefused("a volume mapping is <filesystem path>:<container path>, with one colon")
    return filesystem_path(source), container_path(target, "the container path of a mapping")


def host_path(root: Path, relative: str, owner: tuple[int, int] | None = None) -> Path:
    """The host directory of a filesystem path, created if missing (given to ``owner``); no
    component may be a link.

    A step may leave a symbolic link in the filesystem: mounting through it would give the next
    container a directory of the host. Each component is opened without following links.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in [p for p in relative.split("/") if p]:
            made = False
            try:
                os.mkdir(part, 0o770, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                raise PathRefused(f"{relative} is not a folder of the pipeline filesystem") from None
            os.close(fd)
            fd = child
            if made:
                if owner is not None:
                    os.fchown(fd, *owner)
                os.fchmod(fd, 0o2770)
    finally:
        os.close(fd)
    return root / relative if relative else root
