"""The thread that moves local executions forward, inside the worker pool.

It sleeps until something happens to an execution - it was created, approved or terminated, or
one of its steps' runs ended (the worker that ran it says so) - and then advances that execution.
Every ``scan_seconds`` it also advances every execution that has not ended, which covers what
happened in another process (``hatchway worker`` on the same home), sync steps waiting for their
retry interval, runs settled by the lease sweeper, and executions a crashed gateway left behind.
Advancing is idempotent, so two processes advancing the same execution is merely redundant.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hatchway.services.pipelines.executions import PipelineService

log = logging.getLogger("hatchway.pipelines")

SCAN_SECONDS = 1.0
#: an execution stays cached as "known active" for the wake-ups of this many scans
_SCAN_LIMIT = 500


class Advancer:
    """Advances local executions when woken, and all active ones on a timer."""

    def __init__(self, service: PipelineService, scan_seconds: float = SCAN_SECONDS) -> None:
        self.service = service
        self.scan_seconds = scan_seconds
        self._wake = threading.Condition()
        self._pending: set[str] = set()
        self._scan_now = True
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hatchway-pipelines", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self, execution_id: str | None = None) -> None:
        """Advance ``execution_id`` soon (None: every active execution)."""
        with self._wake:
            if execution_id is None:
                self._scan_now = True
            else:
                self._pending.add(execution_id)
            self._wake.notify()

    def _loop(self) -> None:
        last_scan = 0.0
        while not self._stopping.is_set():
            with self._wake:
                if not self._pending and not self._scan_now:
                    self._wake.wait(max(0.0, self.scan_seconds - (time.monotonic() - last_scan)))
                due, self._pending = self._pending, set()
                scan, self._scan_now = self._scan_now, False
            if self._stopping.is_set():
                return
            if scan or time.monotonic() - last_scan >= self.scan_seconds:
                last_scan = time.monotonic()
                try:
                    due |= {e.id for e in self.service.store.active_executions("local", _SCAN_LIMIT)}
                except Exception:
                    log.exception("listing active executions failed")
            for execution_id in sorted(due):
                if self._stopping.is_set():
                    return
                try:
                    self.service.advance(execution_id)
                except Exception:
                    log.exception("advancing an execution failed; retrying on the next scan",
                                  extra={"execution_id": execution_id})  # fmt: skip
