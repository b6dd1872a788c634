"""Wake-ups between the processes of one SQLite store (the :class:`~hatchway.ports.Doorbell` of
``hatchway serve`` and ``hatchway worker`` on one home): FIFOs in a directory beside the database."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path


class Doorbell:
    """Wake-ups between the processes of one SQLite store (``hatchway serve`` and ``hatchway
    worker`` on one home): a process whose worker pool waits for runs listens on a FIFO of its own
    in ``directory``; a run queued in any process writes one byte to every other listener's FIFO, so
    an idle worker elsewhere claims it at once instead of at its next poll.

    A wake-up is only a hint (the poll stays the fallback): a byte that cannot be written (a full
    pipe: that listener has wake-ups pending anyway) is dropped. A FIFO whose process is gone has no
    reader, which the next ring notices (ENXIO or EPIPE) and removes.
    """

    #: how long a listing of the listeners is trusted when the directory seems unchanged
    RELIST_SECONDS = 1.0
    #: how often the directory is looked at for listeners come or gone (a stat costs more than a ring)
    CHECK_SECONDS = 0.05

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._peers: dict[str, int] = {}  # FIFO name -> fd open for writing
        self._listed: tuple[int, float] = (-1, 0.0)  # directory mtime, when listed
        self._checked = -1.0  # when the directory was last looked at
        self._listening: tuple[int, Path] | None = None

    # ---- ringing the others ------------------------------------------------------------------

    def ring(self) -> None:
        """Wake every other listening process (no error ever: a wake-up is a hint)."""
        with self._lock:
            with contextlib.suppress(OSError):
                self._refresh()
            for name, fd in list(self._peers.items()):
                try:
                    os.write(fd, b"\x01")
                except BlockingIOError:
                    pass  # its pipe is full: it has wake-ups enough to read
                except OSError as exc:
                    self._drop(name, stale=exc.errno == errno.EPIPE)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.CHECK_SECONDS:
            return
        self._checked = now
        mtime = self.directory.stat().st_mtime_ns
        if mtime == self._listed[0] and now - self._listed[1] < self.RELIST_SECONDS:
            return
        self._listed = (mtime, now)
        names = {n for n in os.listdir(self.directory) if n != self.name and not n.startswith(".")}
        for name in set(self._peers) - names:
            self._drop(name, stale=False)
        for name in names - set(self._peers):
            path = self.directory / name
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no reader: its process is gone
                    with contextlib.suppress(OSError):
                        path.unlink()
                continue
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                self._peers[name] = fd
            else:
                os.close(fd)

    def _drop(self, name: str, stale: bool) -> None:
        fd = self._peers.pop(name, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if stale:
            with contextlib.suppress(OSError):
                (self.directory / name).unlink()

    # ---- being rung --------------------------------------------------------------------------

    def listen(self, wake: Callable[[int], None]) -> None:
        """Call ``wake(count)`` from a thread of this process whenever others rang, until :meth:`close`."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / self.name
        os.mkfifo(path, 0o600)
        # read-write: the FIFO always has a writer (this process), so a read blocks rather than
        # seeing end-of-file, and a reader (this process) as long as it lives
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._listening = (fd, path)

        def loop() -> None:
            while True:
                try:
                    got = os.read(fd, 4096)
                except OSError:
                    return
                if self._listening is None or self._listening[0] != fd:  # closed
                    with contextlib.suppress(OSError):
                        os.close(fd)
                    return
                wake(len(got))

        threading.Thread(target=loop, name="hatchway-doorbell", daemon=True).start()

    def close(self) -> None:
        """Stop listening (the FIFO is removed) and let go of the others'."""
        listening, self._listening = self._listening, None
        if listening is not None:
            fd, path = listening
            with contextlib.suppress(OSError):
                path.unlink()
            with contextlib.suppress(OSError):
                os.write(fd, b"\x00")  # the reading thread sees it has stopped and returns
        with self._lock:
            for name in list(self._peers):
                self._drop(name, stale=False)
