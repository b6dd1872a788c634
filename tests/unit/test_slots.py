"""The sync-call limit shared by the processes of ``hatchway serve --processes N`` (lock files)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from hatchway.services.slots import SharedSlots


def test_slots_are_shared_between_holders_of_the_same_directory(tmp_path: Path) -> None:
    # two instances open the lock files apart, as two processes do: flock tells them apart
    one, other = SharedSlots(tmp_path, 2), SharedSlots(tmp_path, 2)
    assert one.acquire(timeout=0)
    assert other.acquire(timeout=0)
    assert not one.acquire(timeout=0)
    assert not other.acquire(timeout=0.05)
    other.release()
    assert one.acquire(timeout=0)
    one.release()


def test_threads_of_one_process_hold_a_slot_each(tmp_path: Path) -> None:
    slots = SharedSlots(tmp_path, 2)
    held: list[bool] = []

    def take() -> None:
        held.append(slots.acquire(timeout=0))

    threads = [threading.Thread(target=take) for _ in range(3)]
    for thread in threads:
        thread.start()
        thread.join()
    assert sorted(held) == [False, True, True]


def test_a_waiting_call_gets_the_slot_another_thread_frees(tmp_path: Path) -> None:
    slots = SharedSlots(tmp_path, 1)
    assert slots.acquire(timeout=0)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire(timeout=30)))
    waiter.start()
    slots.release()
    waiter.join()
    assert got == [True]


def test_a_dead_process_holds_no_slot(tmp_path: Path) -> None:
    code = (
        "import sys, os; from pathlib import Path; from hatchway.services.slots import SharedSlots\n"
        "s = SharedSlots(Path(sys.argv[1]), 1); assert s.acquire(timeout=0); print('held', flush=True)\n"
        "sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        slots = SharedSlots(tmp_path, 1)
        assert not slots.acquire(timeout=0)
        holder.kill()
        holder.wait()
        assert slots.acquire(timeout=0)
    finally:
        holder.kill()
        holder.wait()
