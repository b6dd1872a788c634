"""The sync-call limit (``HATCHWAY_SYNC_CONCURRENCY``) of a gateway made of several processes."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path


class SharedSlots:
    """A counting semaphore across the processes of ``hatchway serve --processes N``: ``limit``
    lock files, a slot held by an exclusive ``flock`` on one of them.

    The kernel lets go of the locks of a process that dies, so a crashed process never keeps a
    slot. A process notices a slot freed by another at its next look (every
    :attr:`LOOK_SECONDS` while it waits), one freed by itself at once. Same interface as
    :class:`threading.BoundedSemaphore` as the run service uses it (the slot a thread holds is
    remembered per thread).
    """

    #: how often a waiting call looks again for a slot another process freed
    LOOK_SECONDS = 0.02

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        self._fds = [os.open(directory / f"slot-{index}", flags, 0o600) for index in range(limit)]
        self._held = [False] * limit
        self._freed = threading.Condition()
        self._mine = threading.local()
        # processes start their search at different slots, so they seldom try the same files
        self._next = os.getpid() % limit

    def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds for one; False if none came free."""
        deadline = time.monotonic() + timeout
        with self._freed:
            while True:
                slot = self._take()
                if slot is not None:
                    self._mine.slot = slot
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._freed.wait(min(left, self.LOOK_SECONDS))

    def _take(self) -> int | None:
        count = len(self._fds)
        for step in range(count):
            slot = (self._next + step) % count
            if self._held[slot]:
                continue  # a thread of this process holds it (flock would let this one in too)
            try:
                fcntl.flock(self._fds[slot], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            self._held[slot] = True
            self._next = (slot + 1) % count
            return slot
        return None

    def release(self) -> None:
        """Give back the slot this thread took."""
        slot: int = self._mine.slot
        del self._mine.slot
        with self._freed:
            fcntl.flock(self._fds[slot], fcntl.LOCK_UN)
            self._held[slot] = False
            self._freed.notify()


__all__ = ["SharedSlots"]
