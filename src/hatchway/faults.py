"""Crash points: a test hook that kills this process at a named place on the run path.

The reliability suite (``tests/reliability``) must crash a gateway at moments a signal sent from
outside cannot hit reliably: right after a worker claimed a run, or after the action finished but
before its outcome is written. ``HATCHWAY_TEST_CRASH_AT=point:n[,point:n]`` makes the process
SIGKILL itself the ``n``-th time it reaches ``point`` (counted from its start). Unset - the
default, and the only sane production setting - :meth:`CrashPoints.reach` is one attribute test.
SIGKILL is used on purpose: no ``finally``, no atexit, no flushing - exactly a crash.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("hatchway.faults")

#: where a crash can be injected
POINTS = {
    "after_claim": "a worker claimed a run (INPROGRESS, leased) and has not started the action",
    "before_result": "the action ended and its outputs were read; nothing of the outcome is stored yet",
    "after_idempotency_begin": "a submit holds its Idempotency-Key in progress; no run is created yet",
}


def parse(spec: str | None) -> dict[str, int]:
    """``"point:n,point:n"`` -> ``{point: n}``; a ValueError names what is wrong."""
    plan: dict[str, int] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        point, _, count = part.strip().partition(":")
        if point not in POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(sorted(POINTS))}")
        try:
            plan[point] = int(count or "1")
        except ValueError:
            raise ValueError(f"crash point {point!r} needs a count (point:n)") from None
        if plan[point] < 1:
            raise ValueError(f"crash point {point!r} needs a count of at least 1")
    return plan


class CrashPoints:
    """Counts arrivals at crash points and SIGKILLs the process at the planned one."""

    def __init__(self, spec: str | None = None) -> None:
        self._plan = parse(spec)
        self.is_armed = bool(self._plan)
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def reach(self, point: str, run_id: str | None = None) -> None:
        if not self.is_armed or point not in self._plan:
            return
        with self._lock:
            self._seen[point] = self._seen.get(point, 0) + 1
            if self._seen[point] != self._plan[point]:
                return
            # the line the suite looks for in the gateway's log; then nothing else runs
            log.critical("crash point reached", extra={"point": point, "run_id": run_id})
            for handler in logging.getLogger("hatchway").handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)


NO_CRASHES = CrashPoints()
