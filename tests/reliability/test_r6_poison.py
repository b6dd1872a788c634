"""R6: poison runs end - after their retry budget, with capped backoff, and never loop.

Two kinds of poison: an action that always fails (exit 2, an application error, retried with
exponential backoff capped by ``HATCHWAY_RETRY_BACKOFF_MAX_SECONDS``), and an action that kills
the worker process running it (each attempt is lost; the lost-worker allowance ends it).
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hatchway.domain.runs import RunStatus
from tests.helpers import LiveServer, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import FAST, WorkerProcess, chaos_spec, read_runs, sh_spec

pytestmark = pytest.mark.integration

INTERVAL, CAP, RETRIES = 0.2, 0.8, 5


def test_r6_a_poison_run_fails_after_its_budget_with_capped_backoff(tmp_path: Path, figures: Figures) -> None:
    home = tmp_path / "home"
    server = LiveServer(home, **FAST, HATCHWAY_RETRY_BACKOFF_MAX_SECONDS=str(CAP), HATCHWAY_SANDBOX="none").start()
    try:
        with server.client() as hw:
            hw.register_action(chaos_spec(retry={"count": RETRIES, "interval_seconds": INTERVAL}))
            # When a run that always exits 2 is started, and one that exits 1 (a user error)
            poison = hw.start_run("chaos", {"behaviour": "poison"})
            user = hw.start_run("chaos", {"behaviour": "user_error"}, retries=RETRIES)
            final = hw.wait(poison["id"], timeout=60)
            user_final = hw.wait(user["id"], timeout=30)
            logs = hw.logs(poison["id"], limit=1000)["items"]
            # Then nothing more happens to it afterwards
            settled = (final["attempt"], len(logs))
            later = _unchanged_for(lambda: (hw.get_run(poison["id"])["attempt"], len(hw.logs(poison["id"])["items"])),
                                   settled, 2.0)  # fmt: skip
    finally:
        server.kill()
    starts = [float(m.group(1)) for e in logs if (m := re.match(r"attempt \d+ at ([\d.]+)", e["msg"]))]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    expected = [min(INTERVAL * 2**k, CAP) for k in range(RETRIES)]
    in_step = len(gaps) == RETRIES and all(e - 0.05 <= g <= e + 1.5 for g, e in zip(gaps, expected, strict=True))
    figures.add("R6", "poison run (exit 2, 5 retries): status / attempts",
                f"{final['status']} / {final['attempt']}", f"FAILED / {RETRIES + 1}",
                final["status"] == "FAILED" and final["attempt"] == RETRIES + 1)  # fmt: skip
    figures.add("R6", f"gaps between attempts (interval {INTERVAL:g} s, cap {CAP:g} s)",
                " ".join(f"{g:.2f}" for g in gaps) + " s", " ".join(f"{e:g}" for e in expected) + " s (+ claim)",
                in_step)  # fmt: skip
    figures.add("R6", "attempts after FAILED (2 s watch)", "0" if later else "more", "0", later)
    figures.add("R6", "user error (exit 1) with 5 retries: attempts", user_final["attempt"], "1",
                user_final["attempt"] == 1)  # fmt: skip
    assert final["status"] == "FAILED" and final["attempt"] == RETRIES + 1
    assert final["error"]["kind"] == "application"
    assert in_step, (gaps, expected)
    assert later
    assert user_final["status"] == "FAILED" and user_final["attempt"] == 1


def _unchanged_for(probe: Callable[[], object], value: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe() != value:
            return False
        time.sleep(0.2)
    return True


def test_r6_a_run_that_kills_its_worker_ends_after_the_lost_worker_allowance(tmp_path: Path, figures: Figures) -> None:
    # Given a worker process that a supervisor restarts whenever it dies
    home = tmp_path / "home"
    env = {"HATCHWAY_LEASE_SECONDS": "1.5", "HATCHWAY_HEARTBEAT_SECONDS": "0.5", "HATCHWAY_SANDBOX": "none"}
    server = LiveServer(home, "--workers", "0", **env).start()
    worker = WorkerProcess(home, **env).start()
    deaths = 0
    try:
        with server.client() as hw:
            # When a run's action SIGKILLs the process that runs it
            hw.register_action(sh_spec("killer", f"kill -{int(signal.SIGKILL)} $PPID; sleep 5"))
            run = hw.start_run("killer")

            def settled() -> bool:
                nonlocal deaths
                if not worker.is_alive():
                    deaths += 1
                    worker.start()
                return bool(read_runs(home)[run["id"]].is_terminal)

            wait_until(settled, 60, 0.1, "the killer run to end")
            final = hw.get_run(run["id"])
    finally:
        worker.stop()
        server.kill()
    stored = read_runs(home)[run["id"]]
    figures.add("R6", "run that SIGKILLs its worker: status / attempts / worker deaths",
                f"{final['status']} / {final['attempt']} / {deaths}", "FAILED / 4 / 4 (3 lost allowed)",
                final["status"] == "FAILED" and final["attempt"] == 4)  # fmt: skip
    assert stored.status == RunStatus.FAILED
    assert final["status_reason"] == "the worker was lost 4 times"
    assert final["attempt"] == 4 and deaths == 4
