"""R7: SIGTERM to ``hatchway serve`` with runs in flight - they finish or move to the next process.

Short runs (and a sync call) end within the shutdown grace and are recorded by the stopping
server; long runs are released back to the queue without using their retry budget, and the next
process re-runs them within 5 s: a worker already running on the home, or the next server started
there (measured from when it answers; its own start-up depends on the machine).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from hatchway.domain.runs import RunStatus
from tests.helpers import LiveServer, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import (
    API,
    AUTH,
    FAST,
    Sampler,
    WorkerProcess,
    chaos_spec,
    read_ledger,
    read_runs,
    restart_server,
)

pytestmark = pytest.mark.integration

GRACE = 2.0


@pytest.mark.parametrize("next_process", ["standby worker", "restarted server"])
def test_r7_sigterm_finishes_or_releases_inflight_runs(tmp_path: Path, next_process: str, figures: Figures) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    env = {**FAST, "HATCHWAY_SHUTDOWN_GRACE_SECONDS": str(GRACE), "HATCHWAY_WORKERS": "4", "HATCHWAY_SANDBOX": "none"}
    server = LiveServer(home, **env).start()
    standby = WorkerProcess(home, **env)
    sync_answer: list[httpx.Response] = []
    with server.client() as hw:
        hw.register_action(chaos_spec())
        short = [hw.start_run("chaos", {"behaviour": "long", "seconds": "1", "ledger": str(ledger)})["id"]
                 for _ in range(2)]  # fmt: skip
        long = [hw.start_run("chaos", {"behaviour": "long", "seconds": "8", "ledger": str(ledger)})["id"]
                for _ in range(2)]  # fmt: skip
        wait_until(lambda: len(read_ledger(ledger)) == 4, 20, what="four runs to start")
    if next_process == "standby worker":
        standby.start()  # after the four runs were claimed: it only gets what the server releases

    def call_sync() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
            body = {"parameters": {"behaviour": "sync_sleep", "seconds": "1"}}
            sync_answer.append(http.post(f"{API}/actions/chaos/sync/call", json=body))

    caller = threading.Thread(target=call_sync)
    caller.start()
    time.sleep(0.3)  # let the sync call start before the signal (it is not what is measured)

    def released_at() -> dict[str, float]:
        # a standby worker may claim a released run between two probes: seen already re-claimed
        # (attempt 2), it was released at most one probe interval before
        runs = read_runs(home)
        return {i: time.time() for i in long if runs[i].status == RunStatus.ENQUEUED or runs[i].attempt >= 2}

    # When the server gets SIGTERM
    up_at, startup = 0.0, 0.0
    with Sampler(released_at, 0.05) as watcher:
        stopped = time.monotonic()
        code = server.stop(timeout=60)
        exited = time.monotonic() - stopped
        caller.join(timeout=30)
        try:
            if next_process == "restarted server":
                # and the next server starts on the same home
                spawned = time.time()
                server = restart_server(server)
                up_at = time.time()
                startup = up_at - spawned
            wait_until(lambda: all(r.is_terminal for r in read_runs(home).values()), 60, 0.1, "every run to end")
        finally:
            standby.stop()
            server.kill()
    finals = read_runs(home)
    release: dict[str, float] = {}
    for seen in watcher.values:
        for run_id, when in seen.items():
            release.setdefault(run_id, when)
    restarts = {line.run_id: line.ts for line in read_ledger(ledger) if line.event == "start" and line.attempt == 2}
    # (a restarted server is measured from when it answers: its own start-up is not the release's delay)
    delays = [max(0.0, restarts[i] - max(release[i], up_at)) for i in long if i in restarts and i in release]
    # Then short runs and the sync call finished in the grace, long ones were re-run by the next process
    short_ok = all(finals[i].status == RunStatus.SUCCESSFUL and finals[i].attempt == 1 for i in short)
    long_ok = all(finals[i].status == RunStatus.SUCCESSFUL and finals[i].attempt == 2 for i in long)
    budget_kept = all(finals[i].max_attempts == 1 for i in long)
    finished = f"{sum(finals[i].attempt == 1 for i in short)}/2"
    rerun = f"{sum(finals[i].attempt == 2 for i in long)}/2"
    sync_code = sync_answer[0].status_code if sync_answer else "none"
    tag = f"[{next_process}]"
    figures.add("R7", f"{tag} SIGTERM, 4 runs + 1 sync call in flight (grace {GRACE:g} s): exit",
                f"{exited:.1f} s ({code})")  # fmt: skip
    figures.add("R7", f"{tag} runs ending within the grace: SUCCESSFUL, attempt 1", finished, "2/2", short_ok)
    figures.add("R7", f"{tag} sync call in flight answered", sync_code, "200", sync_code == 200)
    figures.add("R7", f"{tag} long runs released and re-run", rerun, "2/2", long_ok and budget_kept)
    what = f"{tag} release -> re-run" + (f" (after its {startup:.1f} s start-up)" if startup else "")
    shown = " ".join(f"{d:.1f}" for d in delays) + " s"
    figures.add("R7", what, shown, "<= 5 s", len(delays) == 2 and max(delays) <= 5.0)
    assert short_ok and long_ok and budget_kept, finals
    assert sync_answer and sync_answer[0].status_code == 200
    assert len(delays) == 2 and max(delays) <= 5.0, delays
