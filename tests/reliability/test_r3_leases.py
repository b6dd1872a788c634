"""R3: leases and heartbeats - a long run is never picked up twice; bad lease settings never start.

The live part runs runs longer than three leases on two gateway processes that both sweep and
poll. The deterministic part replays the races a live run only meets by chance: a heartbeat that
lands while the sweeper is requeueing the run, and an attempt that finishes after its lease was
swept and the run claimed again (its outcome must not be written).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.runs import Run, RunStatus, now_ms
from hatchway.services import Services
from hatchway.store.runs import Due
from hatchway.store.sqlite._db import Database
from hatchway.store.sqlite.runs import SqliteRunRepo
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client, make_settings
from tests.helpers import LiveServer, child_env
from tests.reliability.conftest import Figures, scaled
from tests.reliability.harness import WorkerProcess, chaos_spec, read_ledger, read_runs

pytestmark = pytest.mark.integration

LEASE, HEARTBEAT = 1.5, 0.5


def test_r3_runs_longer_than_three_leases_are_never_picked_up_twice(
    tmp_path: Path, figures: Figures, is_full: bool
) -> None:
    # Given two gateway processes on one home, both polling the queue and sweeping every 0.75 s
    home, ledger = tmp_path / "home", tmp_path / "ledger"
    runs_wanted = scaled(8, 4, is_full)
    seconds = 3.4 * LEASE
    env = {
        "HATCHWAY_LEASE_SECONDS": str(LEASE),
        "HATCHWAY_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "HATCHWAY_SANDBOX": "none",
        "HATCHWAY_WORKERS": str(runs_wanted // 2 + 1),
    }
    server = LiveServer(home, **env).start()
    worker = WorkerProcess(home, **env).start()
    try:
        with server.client() as hw:
            hw.register_action(chaos_spec())
            # When runs of 3.4 leases each are submitted
            ids = [
                hw.start_run("chaos", {"behaviour": "long", "seconds": f"{seconds:.2f}", "ledger": str(ledger)})["id"]
                for _ in range(runs_wanted)
            ]
            finals = [hw.wait(run_id, timeout=60) for run_id in ids]
    finally:
        worker.stop()
        server.kill()
    # Then each ran exactly once, with one attempt and no lost lease
    starts = [line for line in read_ledger(ledger) if line.event == "start"]
    twice = {line.run_id for line in starts if sum(other.run_id == line.run_id for other in starts) > 1}
    not_once = [f["id"] for f in finals if f["status"] != "SUCCESSFUL" or f["attempt"] != 1]
    lost = [r.id for r in read_runs(home).values() if r.lost_attempts]
    processes = {line.pid for line in starts}
    figures.add("R3", "runs of 3.4 leases (lease 1.5 s, heartbeat 0.5 s), 2 processes", len(ids))
    figures.add("R3", "runs picked up twice", len(twice), "0", not twice)
    figures.add("R3", "runs not SUCCESSFUL in 1 attempt / with a lost lease", f"{len(not_once)} / {len(lost)}",
                "0 / 0", not not_once and not lost)  # fmt: skip
    assert len(starts) == len(ids) and len(processes) == len(ids)
    assert not twice and not not_once and not lost


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("heartbeat", ["2", "3"])
def test_r3_lease_not_longer_than_heartbeat_is_refused_at_start_up(
    tmp_path: Path, command: str, heartbeat: str, figures: Figures
) -> None:
    # Given a lease of 2 s and a heartbeat of 2 s (or 3 s)
    home = tmp_path / "home"
    env = child_env(home, HATCHWAY_LEASE_SECONDS="2", HATCHWAY_HEARTBEAT_SECONDS=heartbeat)
    # When the gateway is started
    done = subprocess.run(
        [sys.executable, "-m", "hatchway", command, *(["--port", "0"] if command == "serve" else [])],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    # Then it refuses, says why, and leaves nothing behind
    refused = done.returncode != 0 and "heartbeat interval must be shorter than the lease" in done.stderr
    figures.add("R3", f"`hatchway {command}` with lease 2 s, heartbeat {heartbeat} s", f"exit {done.returncode}",
                "refused at start-up", refused)  # fmt: skip
    assert refused, done.stderr
    assert "Traceback" not in done.stderr
    assert not (home / "hatchway.db").exists()


# ---- the races, replayed deterministically ----------------------------------------------------


class _RacingRuns(SqliteRunRepo):
    """SQLite runs whose sweeper is overtaken by a heartbeat at a chosen moment."""

    heartbeat_at: str = ""
    owner = "node-a/w0"
    run_id = ""

    def _due_runs(self, due: Due, below: int, limit: int, after: str | None = None) -> list[Run]:
        found = super()._due_runs(due, below, limit, after)
        if due is Due.EXPIRED and self.heartbeat_at == "after_list":
            self._renew()
        return found

    def _replace_run(self, run: Run, expected_rev: int) -> tuple[bool, tuple[Run, int] | None]:
        if self.heartbeat_at == "before_write" and run.status == RunStatus.ENQUEUED:
            self._renew()
        return super()._replace_run(run, expected_rev)

    def _renew(self) -> None:
        self.heartbeat_at = ""
        self.heartbeat(self.run_id, self.owner, 600)


@pytest.mark.parametrize("moment", ["after_list", "before_write"])
def test_r3_a_heartbeat_that_races_the_sweeper_wins(tmp_path: Path, moment: str, figures: Figures) -> None:
    # Given a claimed run whose lease the sweeper sees expired
    store = _RacingRuns(Database(tmp_path / "race.db"))
    now = now_ms()
    run = Run(
        id="run_race", project_id="p", environment="e", action_name="a", action_version=1,
        action_digest="sha256:" + "0" * 64, created_at=now, available_at=now,
    )  # fmt: skip
    store.create_run(run)
    store.run_id = run.id
    assert store.claim(store.owner, 1, now=now) is not None
    # When the worker's heartbeat lands between the sweeper's read and its write
    store.heartbeat_at = moment
    swept = store.sweep(3, now=now + 5_000)
    # Then the renewal wins: the run stays with its worker
    current = store.get_run(run.id)
    assert current is not None
    kept = not swept.requeued and current.status == RunStatus.INPROGRESS and current.lease_owner == store.owner
    figures.add("R3", f"heartbeat racing the sweeper ({moment.replace('_', ' ')})",
                "renewal wins" if kept else "run requeued", "renewal wins", kept)  # fmt: skip
    assert kept
    store.db.close()


@pytest.fixture
def plain_services(tmp_path: Path) -> Iterator[Services]:
    services = build_services(make_settings(tmp_path / "home", sandbox="none"), pool=True)
    bootstrap(services)
    yield services
    services.close()


def test_r3_an_attempt_whose_lease_was_taken_over_does_not_write_its_outcome(
    plain_services: Services, tmp_path: Path, figures: Figures
) -> None:
    ledger = tmp_path / "ledger"
    store = plain_services.repos.runs
    with inprocess_client(plain_services) as hw:
        hw.register_action(chaos_spec())
        run_id = hw.start_run("chaos", {"behaviour": "work", "ledger": str(ledger)})["id"]
    # Given attempt 1 claimed by worker A, whose lease then expired and was swept
    first = store.claim("node-a/w0", 1)
    assert first is not None and first.id == run_id
    later = now_ms() + 5_000
    assert store.sweep(3, now=later).requeued == [run_id]
    # and attempt 2 claimed by worker B
    second = store.claim("node-b/w0", 30, now=later)
    assert second is not None and second.attempt == 2
    # When A's attempt finishes late
    stale: Any = plain_services.attempts.execute_claimed(first)
    # Then its outcome is dropped: the run is still B's, running attempt 2
    current = store.get_run(run_id)
    assert current is not None
    fenced = current.status == RunStatus.INPROGRESS and current.lease_owner == "node-b/w0" and current.ret is None
    # and B's attempt is the one recorded
    final = plain_services.attempts.execute_claimed(second)
    figures.add("R3", "late attempt after its lease was taken over", "outcome dropped" if fenced else "outcome written",
                "outcome dropped", fenced)  # fmt: skip
    assert fenced, stale
    assert final.status == RunStatus.SUCCESSFUL and final.ret == {"run": run_id, "attempt": 2}
    assert [line.attempt for line in read_ledger(ledger)] == [1, 2]
