"""Unprivileged uids for the sandbox's attempts, shared by every gateway on the host.

A uid serves one attempt at a time; gateways on one host (``serve`` and ``hatchway worker``, or two
homes) take turns through ``flock`` on files in a root-only directory, and a uid whose holder died
is swept (every process running as it killed) before it is handed out again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import threading
from collections import deque
from pathlib import Path

from hatchway.runtime.confine import start_confined

LOCK_DIRS = ("/run/hatchway-uids", "/var/tmp/hatchway-uids")  # noqa: S108 - root-owned, checked


class UidPool:
    """Unprivileged uids for attempts: each serves one attempt at a time on this host.

    Gateways on one host (``serve`` and ``hatchway worker``, or two homes) share the range, so a uid
    in use is marked by an exclusive ``flock`` on its file in a root-only directory; the file holds
    its holder while the attempt runs and is emptied when it is given back. A uid goes back only once
    nothing of its attempt can run (its cgroups are gone, else every process of the uid was killed);
    one found marked by a gateway that died is swept before it is handed out again.
    """

    def __init__(self, first: int, last: int, lock_dir: Path | None = None) -> None:
        self.first, self.last = first, last
        self.lock_dir = lock_dir or _lock_dir()
        self._free = deque(range(first, last + 1))
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self._owner = f"{os.getpid()}\n".encode()

    def take(self) -> int | None:
        """A uid no attempt on this host holds, or None when every one is taken."""
        with self._lock:
            tries = len(self._free)
        for _ in range(tries):
            with self._lock:
                if not self._free:
                    return None
                uid = self._free.popleft()
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                with self._lock:
                    self._free.append(uid)  # another gateway's attempt holds it
                continue
            if os.pread(fd, 32, 0):
                sweep(uid)  # its last holder died before giving it back
            os.pwrite(fd, self._owner, 0)
            with self._lock:
                self._held[uid] = fd
            return uid
        return None

    def give(self, uid: int, is_clean: bool) -> None:
        """Give ``uid`` back; unless ``is_clean`` (its attempt's processes are known gone) kill whatever runs as it.

        A uid this pool no longer holds (given back already, or let go by :meth:`close`) is left
        alone: another attempt - of this gateway or of another on the host - may run as it now.
        """
        with self._lock:
            fd = self._held.pop(uid, None)
        if fd is None:
            return
        if not is_clean:
            sweep(uid)  # still locked: nobody else can have taken it
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock
        with self._lock:
            self._free.append(uid)

    def close(self) -> None:
        with self._lock:
            held, self._held = list(self._held.items()), {}
        for uid, fd in held:
            sweep(uid)
            os.close(fd)


def _lock_dir() -> Path:
    for candidate in map(Path, LOCK_DIRS):
        if not candidate.parent.is_dir():
            continue
        with contextlib.suppress(FileExistsError):
            candidate.mkdir(mode=0o700)
        info = os.lstat(candidate)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077:
            return candidate
    raise RuntimeError(f"no private directory for the uid locks ({', '.join(LOCK_DIRS)})")


def sweep(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (``kill -9 -1`` as that uid: all it may signal)."""
    with contextlib.suppress(OSError):
        proc = start_confined(
            lambda: subprocess.Popen(
                ["/bin/sh", "-c", "kill -9 -1 2>/dev/null; exit 0"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            ),
            uid=uid,
            gid=uid,
        )
        proc.wait(timeout=10)


def ids_mapped(first: int, last: int) -> bool:
    """Whether uids and gids ``first``..``last`` exist in this process's user namespace."""
    for name in ("uid_map", "gid_map"):
        try:
            lines = Path(f"/proc/self/{name}").read_text().splitlines()
        except OSError:
            return True  # no user namespaces here: every id is valid
        ranges = [(int(inside), int(inside) + int(count) - 1) for inside, _, count in map(str.split, lines)]
        if not any(low <= first and last <= high for low, high in ranges):
            return False
    return True
