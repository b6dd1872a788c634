"""The warm containers of the local Lambda executor: a pool per key, bounded, with idle expiry.

:class:`WarmPool` knows nothing of Docker: it is handed a function that starts a container and one
that stops it, and keeps at most ``per_key`` containers per key and ``total`` in all. A caller
gets an idle container of its key (the most recently used), or a new one when there is room, or
waits for one until its deadline (:class:`PoolBusy`). Starting a container happens outside the
pool's lock, so concurrent calls of other keys never wait for it. A janitor thread stops
containers idle for longer than ``idle_seconds``; at the total, the oldest idle container of any
key makes room for a new one.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path


class ContainerGone(Exception):
    """The warm container could not be reached before the payload was sent (safe to retry)."""


@dataclasses.dataclass(eq=False)
class WarmContainer:
    """One running Lambda container."""

    id: str
    key: tuple[str, ...]
    socket_path: str
    ctl_dir: Path
    busy: bool = True
    last_used: float = dataclasses.field(default_factory=time.monotonic)
    calls: int = 0


class PoolBusy(Exception):
    """Every container of the key is busy and none may be added before the deadline."""


class WarmPool:
    """Warm containers per key: bounded per key and in all, idle expiry, safe under concurrency."""

    def __init__(
        self,
        per_key: int,
        total: int,
        idle_seconds: float,
        stop: Callable[[WarmContainer], None],
    ) -> None:
        self.per_key = per_key
        self.total = total
        self.idle_seconds = idle_seconds
        self._stop = stop
        self._cond = threading.Condition()
        self._items: dict[tuple[str, ...], list[WarmContainer]] = {}
        self._starting: dict[tuple[str, ...], int] = {}
        self._janitor: threading.Thread | None = None
        self._closed = False

    def _count(self, key: tuple[str, ...] | None = None) -> int:
        if key is not None:
            return len(self._items.get(key, [])) + self._starting.get(key, 0)
        return sum(len(items) for items in self._items.values()) + sum(self._starting.values())

    def acquire(
        self, key: tuple[str, ...], start: Callable[[], WarmContainer], deadline: float
    ) -> tuple[WarmContainer, bool]:
        """An idle container of ``key`` (marked busy), or a new one; (container, is_new)."""
        evicted: list[WarmContainer] = []
        with self._cond:
            while True:
                idle = [c for c in self._items.get(key, []) if not c.busy]
                if idle:
                    warm = max(idle, key=lambda c: c.last_used)  # the most recently used: the others may expire
                    warm.busy = True
                    return warm, False
                if self._count(key) < self.per_key:
                    if self._count() >= self.total:
                        victim = self._oldest_idle()
                        if victim is not None:
                            self._forget(victim)
                            evicted.append(victim)
                    if self._count() < self.total:
                        self._starting[key] = self._starting.get(key, 0) + 1
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PoolBusy()
                self._cond.wait(min(left, 0.5))
        for victim in evicted:
            self._stop(victim)
        try:
            warm = start()
        except BaseException:
            with self._cond:
                self._starting[key] -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting[key] -= 1
            self._items.setdefault(key, []).append(warm)
            self._ensure_janitor()
        return warm, True

    def release(self, warm: WarmContainer) -> None:
        with self._cond:
            warm.busy = False
            warm.last_used = time.monotonic()
            warm.calls += 1
            self._cond.notify_all()

    def discard(self, warm: WarmContainer) -> None:
        """Take a container out of the pool and stop it (it died, or must not be reused)."""
        with self._cond:
            self._forget(warm)
            self._cond.notify_all()
        self._stop(warm)

    def _forget(self, warm: WarmContainer) -> None:
        items = self._items.get(warm.key, [])
        if warm in items:
            items.remove(warm)
        if not items:
            self._items.pop(warm.key, None)

    def _oldest_idle(self) -> WarmContainer | None:
        idle = [c for items in self._items.values() for c in items if not c.busy]
        return min(idle, key=lambda c: c.last_used) if idle else None

    def size(self, key: tuple[str, ...] | None = None) -> int:
        with self._cond:
            if key is not None:
                return len(self._items.get(key, []))
            return sum(len(items) for items in self._items.values())

    def _ensure_janitor(self) -> None:
        if self._janitor is None:
            self._janitor = threading.Thread(target=self._expire_loop, name="hatchway-warm-janitor", daemon=True)
            self._janitor.start()

    def _expire_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(min(self.idle_seconds / 4, 5.0))
                if self._closed:
                    return
                now = time.monotonic()
                expired = [
                    c
                    for items in self._items.values()
                    for c in items
                    if not c.busy and now - c.last_used > self.idle_seconds
                ]
                for warm in expired:
                    self._forget(warm)
            for warm in expired:
                self._stop(warm)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            everything = [c for items in self._items.values() for c in items]
            self._items.clear()
            self._cond.notify_all()
        for warm in everything:
            self._stop(warm)
