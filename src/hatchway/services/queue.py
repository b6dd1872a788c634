"""The local queue's doorbell: how runs recorded in this process reach its worker pool at once."""

from __future__ import annotations

import threading
from collections.abc import Callable

from hatchway.domain.runs import Run


class LocalQueue:
    """The :class:`~hatchway.ports.RunDispatcher` of a process with a worker pool.

    A run created or queued again here wakes an idle worker at once (other processes' runs are
    found by polling). The pool reports its size and how many workers are busy, for the dashboard
    and ``/metrics``; until a pool attaches, :meth:`capacity` is None.
    """

    def __init__(self) -> None:
        self._bell = threading.Condition()
        self._pool: tuple[int, Callable[[], int]] | None = None

    def created(self, run: Run) -> None:
        self.ring()

    def requeued(self, run: Run) -> None:
        self.ring()

    def ring(self, everyone: bool = False) -> None:
        with self._bell:
            if everyone:
                self._bell.notify_all()
            else:
                self._bell.notify()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Sleep up to ``timeout`` seconds, or until the bell rings (or ``stop`` is set)."""
        with self._bell:
            if stop is None or not stop.is_set():
                self._bell.wait(timeout)

    def attach(self, size: int, busy: Callable[[], int]) -> None:
        """A pool of ``size`` workers serves this queue; ``busy`` counts those running an attempt."""
        self._pool = (size, busy)

    def capacity(self) -> tuple[int, int] | None:
        """(size, busy) of the pool serving this process, if one does."""
        return None if self._pool is None else (self._pool[0], self._pool[1]())


class NoDispatcher:
    """The dispatcher of a process nothing serves from (a CLI command, a container attempt): runs
    wait in the store for a worker, or for the sweeper to hand them on."""

    def created(self, run: Run) -> None:
        """Nobody to tell."""

    def requeued(self, run: Run) -> None:
        """Nobody to tell."""
