"""A command that exits before spawn() tracks it is never reaped as an orphan (its status would be lost)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hatchway.runtime import spawn as spawning
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        stat = handle.read()
    return stat[stat.rfind(b")") + 2 :].split()[0] == b"Z"


def test_a_session_leader_not_yet_tracked_waits_while_a_spawn_is_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a command of its own session that exited before anyone tracked it, while a spawn is starting
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    wait_until(lambda: _is_zombie(proc.pid), 10, 0.01, "the command to exit")
    monkeypatch.setattr(spawning, "_starting", 1)
    # When the orphan reaper looks for zombies, it leaves that one alone
    assert proc.pid not in spawning.orphan_zombies()
    assert spawning.reap_orphans({proc.pid}) == 0
    # Then its parent still reads its exit status
    assert proc.wait(timeout=5) == 0


def test_an_untracked_zombie_is_an_orphan_once_no_spawn_is_starting() -> None:
    # Given an exited child that no spawn() is waiting for, and no spawn starting
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    wait_until(lambda: _is_zombie(proc.pid), 10, 0.01, "the command to exit")
    assert spawning._starting == 0
    # When the orphan reaper looks, then it finds and reaps it
    assert proc.pid in spawning.orphan_zombies()
    assert spawning.reap_orphans({proc.pid}) == 1
