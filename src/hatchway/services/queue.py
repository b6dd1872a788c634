"""The local queue: how runs recorded in this process reach its worker pool at once, and, through a
:class:`~hatchway.ports.Doorbell` (store/sqlite/doorbell.py), the pools of other processes on the
same store."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from hatchway.domain.runs import Run
from hatchway.ports import Doorbell


class LocalQueue:
    """The :class:`~hatchway.ports.RunDispatcher` of a process with a worker pool.

    A run created or queued again here wakes an idle worker at once; with a doorbell, so
    does one created in another process on the same store, and this process rings theirs (without
    one, other processes' runs are found by polling). The pool reports its size and how many
    workers are busy, for the dashboard and ``/metrics``; until a pool attaches, :meth:`capacity`
    is None.
    """

    def __init__(self, doorbell: Doorbell | None = None) -> None:
        self._bell = threading.Condition()
        #: a ring nobody was waiting for (a worker between a claim that found nothing and its wait)
        self._unheard = False
        self._pool: tuple[int, Callable[[], int]] | None = None
        self.doorbell = doorbell

    def created(self, run: Run) -> None:
        self.ring()
        if self.doorbell is not None:
            self.doorbell.ring()

    def requeued(self, run: Run) -> None:
        self.created(run)

    def ring(self, everyone: bool = False) -> None:
        with self._bell:
            self._unheard = True
            if everyone:
                self._bell.notify_all()
            else:
                self._bell.notify()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> None:
        """Sleep up to ``timeout`` seconds, or until the bell rings (or ``stop`` is set); at once
        if it rang since the last wait ended, while nobody waited."""
        with self._bell:
            if not self._unheard and (stop is None or not stop.is_set()):
                self._bell.wait(timeout)
            self._unheard = False

    def attach(self, size: int, busy: Callable[[], int]) -> None:
        """A pool of ``size`` workers serves this queue; ``busy`` counts those running an attempt."""
        self._pool = (size, busy)
        if self.doorbell is not None:
            with contextlib.suppress(OSError):  # without it, the pool polls
                self.doorbell.listen(lambda count: self.ring(everyone=count > 1))

    def detach(self) -> None:
        """The pool stopped: other processes no longer ring this one."""
        if self.doorbell is not None:
            self.doorbell.close()

    def capacity(self) -> tuple[int, int] | None:
        """(size, busy) of the pool serving this process, if one does."""
        return None if self._pool is None else (self._pool[0], self._pool[1]())


class NoDispatcher:
    """The dispatcher of a process nothing serves from (a CLI command, a gateway without workers):
    runs wait in the store for a worker, rung through the doorbell where there is one."""

    def __init__(self, doorbell: Doorbell | None = None) -> None:
        self.doorbell = doorbell

    def created(self, run: Run) -> None:
        if self.doorbell is not None:
            self.doorbell.ring()

    def requeued(self, run: Run) -> None:
        self.created(run)
