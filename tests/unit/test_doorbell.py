"""The doorbell between processes on one SQLite store: real FIFOs, real threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hatchway.services.queue import LocalQueue
from hatchway.store.sqlite.doorbell import Doorbell
from tests.helpers import wait_until


def listening(directory: Path) -> tuple[Doorbell, list[int]]:
    rung: list[int] = []
    bell = Doorbell(directory)
    bell.listen(rung.append)
    return bell, rung


def test_a_ring_wakes_every_other_listener_and_not_the_ringer(tmp_path: Path) -> None:
    a, rung_a = listening(tmp_path / "wake")
    b, rung_b = listening(tmp_path / "wake")
    try:
        a.ring()
        wait_until(lambda: rung_b, what="b woken")
        b.ring()
        wait_until(lambda: rung_a, what="a woken")
        # a bell that does not listen (a gateway without workers) rings both
        Doorbell(tmp_path / "wake").ring()
        wait_until(lambda: len(rung_a) + len(rung_b) >= 4, what="both woken again")
        assert sum(rung_a) == 2 and sum(rung_b) == 2  # nobody heard its own ring
    finally:
        a.close()
        b.close()


def test_gone_listeners_are_forgotten_and_a_ring_never_fails(tmp_path: Path) -> None:
    directory = tmp_path / "wake"
    # nothing to ring yet (no directory): no error
    Doorbell(directory).ring()
    a, rung = listening(directory)
    ringer = Doorbell(directory)
    ringer.ring()
    wait_until(lambda: rung, what="a woken")
    # Given a listener that stopped, and a FIFO a killed process left behind (no reader)
    a.close()
    os.mkfifo(directory / "12345-dead", 0o600)
    (directory / ".not-a-listener").write_text("")
    # When a bell rings, both are removed and it does not raise
    ringer.RELIST_SECONDS = ringer.CHECK_SECONDS = 0.0
    ringer.ring()
    ringer.ring()
    assert sorted(p.name for p in directory.iterdir()) == [".not-a-listener"]


def test_a_full_pipe_drops_wake_ups_without_blocking(tmp_path: Path) -> None:
    # Given a listener whose process reads nothing (its wake-ups pile up)
    stuck = threading.Event()
    bell = Doorbell(tmp_path / "wake")
    bell.listen(lambda _: stuck.wait(30))
    try:
        ringer = Doorbell(tmp_path / "wake")
        for _ in range(70_000):  # more than a pipe holds
            ringer.ring()
    finally:
        stuck.set()
        bell.close()


def test_a_local_queue_hears_other_processes_once_its_pool_attached(tmp_path: Path) -> None:
    queue = LocalQueue(Doorbell(tmp_path / "wake"))
    woken = threading.Event()

    def wait() -> None:
        queue.wait(30)
        woken.set()

    queue.attach(1, lambda: 0)
    try:
        waiter = threading.Thread(target=wait)
        waiter.start()
        ringer = Doorbell(tmp_path / "wake")
        # rung until heard: the waiter may not be waiting yet at the first ring (30 s if unheard)
        wait_until(lambda: ringer.ring() or woken.is_set(), what="the waiting worker woken")
        waiter.join()
    finally:
        queue.detach()
    assert list((tmp_path / "wake").iterdir()) == []
