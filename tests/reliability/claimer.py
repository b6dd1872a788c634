"""R2's claiming worker: a separate process with its own repositories, racing its twin round by round.

It reads ``go <epoch seconds>`` lines, spins until that instant (both twins get the same one),
claims, finishes what it won, and answers ``won <run id> <lost CAS>`` or ``none <lost CAS>`` -
the compare-and-set races it lost show the two processes really met on the same run.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from hatchway.config import Settings
from hatchway.domain.runs import RunStatus, now_ms
from hatchway.errors import TransitionConflict
from hatchway.wiring import build_repos


def main() -> None:
    owner = sys.argv[1]
    runs = build_repos(Settings.from_env()).runs
    lost = 0
    plain = runs.transition

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal lost
        try:
            return plain(*args, **kwargs)
        except TransitionConflict:
            lost += 1
            raise

    runs.transition = counted  # type: ignore[method-assign]
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, when = line.strip().partition(" ")
        if command != "go":
            break
        instant = float(when)
        while time.time() < instant:
            pass
        lost = 0
        run = runs.claim(owner, 30)
        if run is None:
            print(f"none {lost}", flush=True)
            continue
        plain(
            run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL,
            ret={"by": owner}, finished_at=now_ms(), lease_owner=None, lease_until=None,
        )  # fmt: skip
        print(f"won {run.id} {lost}", flush=True)


if __name__ == "__main__":
    main()
