"""Empty workspaces kept for the next attempt instead of being made and removed for each one.

A workspace is four directories. Making a directory allocates a block for it and removing it frees
that block, each a journaled change: 0.3 ms for a ``mkdir`` and 0.65 ms for an ``rmdir`` on the
ext4 the benchmarks run on (a file's create or unlink is 0.02-0.04 ms, a ``rename`` 0.03 ms), so
the directories alone were about 4 ms of kernel time per run. An attempt that leaves its
workspace as it found it - nothing but the empty ``in/``, ``out/`` and ``tmp/``, each still private
to its user (the gateway's, or the attempt's own uid), and its process group gone - hands it back
here (one ``rename`` into this process's spare directory, private to the gateway's user); the next
attempt takes it with another ``rename`` to its own name (and gives it to its own uid, if any). A
workspace holding anything else is removed as before, so nothing of one run is ever seen by the
next. Spares belong to the process that made them (the directory is named after its pid and
start time); :meth:`Spares.recover` removes those of dead processes.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from hatchway.runtime.contract import Workspace

#: the empty directories of a workspace that can be reused (Workspace's layout)
_LAYOUT = frozenset({"in", "out", "tmp"})
PREFIX = ".spare-"


class Spares:
    """Up to ``keep`` empty workspaces of this process, under ``root/.spare-<pid>-<start>``."""

    def __init__(self, root: Path, owner: str, keep: int = 16) -> None:
        self.root = root
        self.dir = root / f"{PREFIX}{owner}"
        self.keep = keep
        self._names: list[str] = []
        self._lock = threading.Lock()
        self._is_made = False

    def take(self, workspace: Workspace) -> bool:
        """Move a spare to ``workspace``'s place; False when there is none (make the workspace)."""
        with self._lock:
            name = self._names.pop() if self._names else None
        if name is None:
            return False
        try:
            (self.dir / name).rename(workspace.path)
        except OSError:
            return False
        return True

    def give(self, workspace: Workspace, owner: int | None = None) -> bool:
        """Keep ``workspace`` for another attempt if it is as it was made (owned by ``owner``, default
        this process's user); False when it must be removed."""
        with self._lock:
            if len(self._names) >= self.keep:
                return False
        if not _is_pristine(workspace.path, os.getuid() if owner is None else owner):
            return False
        name = uuid.uuid4().hex
        try:
            if not self._is_made:
                self.dir.mkdir(mode=0o700, exist_ok=True)
                self._is_made = True
            workspace.path.rename(self.dir / name)
        except OSError:
            return False
        with self._lock:
            self._names.append(name)
        return True

    def close(self) -> None:
        with self._lock:
            self._names.clear()
            self._is_made = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def recover(self, is_alive: Callable[[str], bool]) -> None:
        """Remove the spares of processes that are gone (``is_alive(owner)`` says which are not)."""
        for stale in self.root.glob(f"{PREFIX}*"):
            owner = stale.name[len(PREFIX) :]
            if stale != self.dir and is_alive(owner):
                continue
            shutil.rmtree(stale, ignore_errors=True)


def _is_pristine(path: Path, me: int) -> bool:
    """Nothing in ``path`` but the empty workspace directories, all private to the user ``me``."""
    try:
        if not _is_private_dir(os.lstat(path), me):
            return False
        with os.scandir(path) as entries:
            found = {entry.name: entry for entry in entries}
        if set(found) != _LAYOUT:
            return False
        for entry in found.values():
            if not _is_private_dir(entry.stat(follow_symlinks=False), me):
                return False
            with os.scandir(entry.path) as inside:
                if next(inside, None) is not None:
                    return False
    except OSError:
        return False
    return True


def _is_private_dir(info: os.stat_result, me: int) -> bool:
    return stat.S_ISDIR(info.st_mode) and info.st_uid == me and stat.S_IMODE(info.st_mode) == 0o700
