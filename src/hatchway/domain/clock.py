"""Time as the use cases see it (:class:`hatchway.ports.Clock`); tests give them a fake one."""

from __future__ import annotations

import time


class SystemClock:
    """The machine's clocks, and a real sleep."""

    def time(self) -> float:
        return time.time()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
