"""The process executor's recovery journal, with real processes killed by SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hatchway.executors.journal import Journal, boot_ticks, read_journal, recover, start_time
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

CRASHING_GATEWAY = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    from hatchway.executors.journal import Journal, boot_ticks, start_time
    pids, work = Path(sys.argv[1]), Path(sys.argv[2])
    journal = Journal(pids, f"{os.getpid()}-{start_time(os.getpid())}")
    for name in ("run_done-1", "run_cut-1"):
        journal.began(name)
        (work / name).mkdir()
        (work / name / "config.json").write_text('{"parameters": {"password": "plain"}}')
        first = boot_ticks()
        action = subprocess.Popen(["sleep", "60"], start_new_session=True)
        journal.started(name, action.pid, first)
        if name == "run_done-1":
            action.kill()
            action.wait()
            (work / name / "config.json").unlink()
            (work / name).rmdir()
            journal.ended(name)
        else:
            print(action.pid, flush=True)
    time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_bytes().split(b") ")[1][:1] != b"Z"


def test_an_attempt_cut_off_by_a_crash_is_killed_and_its_workspace_removed(tmp_path: Path) -> None:
    # Given a gateway that journaled two attempts, ended one, and was SIGKILLed during the other
    pids, work = tmp_path / "pids", tmp_path / "work"
    pids.mkdir()
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    gateway = subprocess.Popen(
        [sys.executable, "-c", CRASHING_GATEWAY, str(pids), str(work)], stdout=subprocess.PIPE, env=env
    )
    assert gateway.stdout is not None
    action = int(gateway.stdout.readline())
    gateway.kill()
    gateway.wait()
    assert _alive(action), "the orphaned action should outlive its gateway"
    # When a new gateway recovers
    killed = recover(pids, work, "1-1")
    # Then the orphan's group was killed, its workspace (with the plain parameters) and the journal removed
    assert killed == 1
    wait_until(lambda: not _alive(action), 10, 0.01, "the orphaned action to die")
    assert list(work.iterdir()) == []
    assert list(pids.iterdir()) == []


def test_the_journal_of_a_live_gateway_is_left_alone(tmp_path: Path) -> None:
    # Given this (live) process's journal with an open attempt
    me = f"{os.getpid()}-{start_time(os.getpid())}"
    journal = Journal(tmp_path, me)
    journal.began("run_live-1")
    (tmp_path / "run_live-1").mkdir()
    # When another process on the same home recovers
    assert recover(tmp_path, tmp_path, "other-1") == 0
    # Then the live attempt's workspace and the journal are still there
    assert (tmp_path / "run_live-1").is_dir()
    assert journal.path.exists()
    journal.close()


def test_a_reused_pid_is_not_killed(tmp_path: Path) -> None:
    # Given a dead gateway's journal naming a pid that now belongs to another process
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        record = {"w": "run_old-1", "pid": bystander.pid, "start": [1, 2]}  # started long before this process
        (tmp_path / f"999999999-1{'.journal'}").write_text(json.dumps(record) + "\n")
        # When it is recovered, then the bystander lives on
        assert recover(tmp_path, tmp_path, "me-1") == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_the_start_window_holds_the_kernels_start_time() -> None:
    # Given actions started between two readings of the boot clock
    for _ in range(50):
        first = boot_ticks()
        action = subprocess.Popen(["true"])
        last = boot_ticks()
        # Then the kernel's start time of each lies within them (it is compared at recovery)
        started = start_time(action.pid)
        action.wait()
        assert started is not None and first <= started <= last


def test_a_long_journal_is_cut_back_to_the_open_attempts(tmp_path: Path) -> None:
    # Given a journal that compacts past 2 KiB, one attempt open through many others
    journal = Journal(tmp_path, "1-1", compact_bytes=2048)
    journal.began("run_long-1")
    journal.started("run_long-1", 12345, boot_ticks())
    for index in range(200):
        journal.began(f"run_{index}-1")
        journal.ended(f"run_{index}-1")
    # Then the file stayed small and still tells recovery about the open attempt, and only that
    assert journal.path.stat().st_size <= 2048 + 200
    owner, attempts = read_journal(journal.path)
    assert owner == "1-1"
    assert [(a["workspace"], a["pid"]) for a in attempts] == [("run_long-1", 12345)]
    journal.ended("run_long-1")
    journal.close()
    assert not journal.path.exists()


def test_a_torn_last_line_and_a_record_of_an_older_release_are_read(tmp_path: Path) -> None:
    # Given a journal whose last write was cut off by the crash, and a one-file record of an older release
    journal = tmp_path / "999999999-1.journal"
    journal.write_bytes(b'{"w": "run_a-1"}\n{"w": "run_b-1"}\n{"w": "run_b-1", "pid": 12')
    (tmp_path / "run_c-1").write_text(json.dumps({
        "pid": None, "start": None, "workspace": "run_c-1", "owner_pid": 999999999, "owner_start": 1,
    }))  # fmt: skip
    work = tmp_path / "work"
    for name in ("run_a-1", "run_b-1", "run_c-1"):
        (work / name).mkdir(parents=True)
    # When recovered
    recover(tmp_path, work, "me-1")
    # Then every workspace is removed, the records with them
    assert list(work.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["work"]


def test_a_stopped_action_is_killed_as_soon_as_recovery_runs(tmp_path: Path) -> None:
    # Given an orphaned action of a dead gateway, stopped (it cannot even handle SIGTERM)
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    first = boot_ticks()
    os.kill(orphan.pid, signal.SIGSTOP)
    (tmp_path / "999999999-1.journal").write_text(
        json.dumps({"w": "run_x-1", "pid": orphan.pid, "start": [first - 100, boot_ticks()]}) + "\n"
    )
    # When recovered, then it is killed
    assert recover(tmp_path, tmp_path, "me-1") == 1
    assert orphan.wait(timeout=10) == -signal.SIGKILL
