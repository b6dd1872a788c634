"""R7: SIGTERM to ``hatchway serve`` with runs in flight - they finish or move to the next process.

Short runs (and a sync call) end within the shutdown grace and are recorded by the stopping
server; long runs are released back to the queue without using their retry budget, and the next
server started on the home re-runs them within 5 s of their release.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from hatchway.runs import RunStatus
from tests.helpers import LiveServer, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import API, AUTH, FAST, Sampler, chaos_spec, read_ledger, read_runs, restart_server

pytestmark = pytest.mark.integration

GRACE = 2.0


def test_r7_sigterm_finishes_or_releases_inflight_runs(tmp_path: Path, figures: Figures) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    env = {**FAST, "HATCHWAY_SHUTDOWN_GRACE_SECONDS": str(GRACE), "HATCHWAY_WORKERS": "4", "HATCHWAY_SANDBOX": "none"}
    server = LiveServer(home, **env).start()
    sync_answer: list[httpx.Response] = []
    with server.client() as hw:
        hw.register_action(chaos_spec())
        short = [hw.start_run("chaos", {"behaviour": "long", "seconds": "1", "ledger": str(ledger)})["id"]
                 for _ in range(2)]  # fmt: skip
        long = [hw.start_run("chaos", {"behaviour": "long", "seconds": "8", "ledger": str(ledger)})["id"]
                for _ in range(2)]  # fmt: skip
        wait_until(lambda: len(read_ledger(ledger)) == 4, 20, what="four runs to start")

    def call_sync() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
            sync_answer.append(
                http.post(
                    f"{API}/actions/chaos/sync/call", json={"parameters": {"behaviour": "sync_sleep", "seconds": "1"}}
                )
            )

    caller = threading.Thread(target=call_sync)
    caller.start()
    time.sleep(0.3)  # let the sync call start before the signal (it is not what is measured)

    def released_at() -> dict[str, float]:
        runs = read_runs(home)
        return {i: time.time() for i in long if runs[i].status == RunStatus.ENQUEUED}

    # When the server gets SIGTERM
    with Sampler(released_at, 0.05) as watcher:
        stopped = time.monotonic()
        code = server.stop(timeout=60)
        exited = time.monotonic() - stopped
        caller.join(timeout=30)
        # and the next server starts on the same home
        server = restart_server(server)
        try:
            with server.client() as hw:
                finals = {run_id: hw.wait(run_id, timeout=60) for run_id in short + long}
        finally:
            server.kill()
    release = {}
    for seen in watcher.values:
        for run_id, when in seen.items():
            release.setdefault(run_id, when)
    restarts = {line.run_id: line.ts for line in read_ledger(ledger) if line.event == "start" and line.attempt == 2}
    delays = [restarts[i] - release[i] for i in long if i in restarts and i in release]
    # Then short runs and the sync call finished in the grace, long ones were re-run by the next server
    short_ok = all(finals[i]["status"] == "SUCCESSFUL" and finals[i]["attempt"] == 1 for i in short)
    long_ok = all(finals[i]["status"] == "SUCCESSFUL" and finals[i]["attempt"] == 2 for i in long)
    budget_kept = all(finals[i]["max_attempts"] == 1 for i in long)
    finished = f"{sum(finals[i]['attempt'] == 1 for i in short)}/2"
    rerun = f"{sum(finals[i]['attempt'] == 2 for i in long)}/2"
    sync_code = sync_answer[0].status_code if sync_answer else "none"
    figures.add("R7", f"SIGTERM, 4 runs + 1 sync call in flight (grace {GRACE:g} s): exit", f"{exited:.1f} s ({code})")
    figures.add("R7", "runs ending within the grace: SUCCESSFUL, attempt 1", finished, "2/2", short_ok)
    figures.add("R7", "sync call in flight answered", sync_code, "200", sync_code == 200)
    figures.add("R7", "long runs released, re-run by the next server", rerun, "2/2", long_ok and budget_kept)
    figures.add("R7", "release -> re-run (incl. the next server's start)", " ".join(f"{d:.1f}" for d in delays) + " s",
                "<= 5 s", len(delays) == 2 and max(delays) <= 5.0)  # fmt: skip
    assert short_ok and long_ok and budget_kept, finals
    assert sync_answer and sync_answer[0].status_code == 200
    assert len(delays) == 2 and max(delays) <= 5.0, delays
