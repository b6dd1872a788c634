"""R5: sync calls that time out, hundreds in a row - answered at the limit, nothing left behind.

The action is ``sh -c 'sleep 300 & sleep 300 & wait'``: the shell and two children, all to be
killed at the limit. Calls run 25 at a time against a real server with the default kill grace
(5 s). Each must answer 504 at its 1 s limit (+- 1 s); two seconds after the last answer no
``sleep`` may be left and the server may have no unreaped child. Variants: children that ignore
SIGTERM (they go at the SIGKILL after the grace), and a grandchild that leaves the process group
with ``setsid`` (only a sandbox with cgroups or a PID namespace can find it).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hatchway.executors.sandbox import Cgroups, bwrap_works
from tests.helpers import LiveServer, processes_with
from tests.reliability.conftest import Figures, scaled
from tests.reliability.harness import API, AUTH, percentile, sh_spec, zombies_of

pytestmark = pytest.mark.integration

LIMIT = 1.0
GRACE = 5.0
HAS_CGROUPS = Cgroups.detect("hatchway-test-probe") is not None


def _timeouts(server: LiveServer, name: str, count: int, parallel: int) -> tuple[list[float], list[int], float]:
    """``count`` sync calls of ``name`` with a 1 s limit, ``parallel`` at a time: latencies, codes, last answer."""
    latencies: list[float] = []
    codes: list[int] = []
    left = iter(range(count))
    lock = threading.Lock()
    last = [0.0]

    def caller() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                began = time.monotonic()
                answer = http.post(f"{API}/actions/{name}/sync/call", json={"timeout_seconds": int(LIMIT)})
                ended = time.monotonic()
                with lock:
                    latencies.append(ended - began)
                    codes.append(answer.status_code)
                    last[0] = max(last[0], ended)

    threads = [threading.Thread(target=caller) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return latencies, codes, last[0]


def _within(is_clear: Callable[[], bool], since: float, budget: float) -> float | None:
    """Seconds after ``since`` at which ``is_clear()`` (None: not yet after ``budget``)."""
    while True:
        now = time.monotonic()
        if is_clear():
            return max(0.0, now - since)
        if now - since > budget:
            return None
        time.sleep(0.05)


def _gone_within(marker: str, since: float, budget: float) -> float | None:
    return _within(lambda: not processes_with(marker), since, budget)


SANDBOXES = [
    "none",
    pytest.param("auto", marks=pytest.mark.skipif(not (bwrap_works() or HAS_CGROUPS), reason="no sandbox here")),
]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_r5_sync_timeouts_answer_at_the_limit_and_leave_nothing(
    tmp_path: Path, sandbox: str, figures: Figures, is_full: bool
) -> None:
    count = scaled(500, 100, is_full)
    marker = f"300.{secrets.randbelow(10**6):06d}"
    stubborn = f"301.{secrets.randbelow(10**6):06d}"
    server = LiveServer(tmp_path / "home", HATCHWAY_SANDBOX=sandbox, HATCHWAY_KILL_GRACE_SECONDS=str(GRACE)).start()
    try:
        with server.client() as hw:
            hw.register_action(sh_spec("sleepers", f"sleep {marker} & sleep {marker} & wait"))
            hw.register_action(sh_spec("stubborn", f"trap '' TERM; sleep {stubborn} & sleep {stubborn} & wait"))
        # When hundreds of calls time out, 25 at a time
        began = time.monotonic()
        latencies, codes, last = _timeouts(server, "sleepers", count, 25)
        wall = time.monotonic() - began
        # Then each answered 504 at the limit, and 2 s after the last answer nothing is left
        gone = _gone_within(marker, last, 2.0)
        pid = server.proc.pid if server.proc else 0
        reaped = _within(lambda: not zombies_of(pid), last, 2.0)
        zombies = zombies_of(pid)
        # And children that ignore SIGTERM are gone once the kill grace has passed
        s_latencies, s_codes, s_last = _timeouts(server, "stubborn", 10, 10)
        s_gone = _gone_within(stubborn, s_last, GRACE + 2.0)
        s_zombies = [] if _within(lambda: not zombies_of(pid), s_last, GRACE + 2.0) is not None else zombies_of(pid)
    finally:
        server.kill()
    late = [x for x in latencies if abs(x - LIMIT) > 1.0]
    tag = f"[{sandbox}]"
    figures.add("R5", f"{tag} sync timeouts (limit 1 s, 25 at a time)", f"{len(codes)} in {wall:.0f} s", str(count))
    figures.add("R5", f"{tag} answered 504", f"{codes.count(504)}/{len(codes)}", "all", codes.count(504) == count)
    figures.add("R5", f"{tag} answer time min / p50 / p99 / max",
                f"{min(latencies):.2f} / {percentile(latencies, 50):.2f} / {percentile(latencies, 99):.2f} / "
                f"{max(latencies):.2f} s", "1 s +- 1 s", not late)  # fmt: skip
    figures.add("R5", f"{tag} descendants gone after the last answer",
                "never" if gone is None else f"{gone:.2f} s", "<= 2 s", gone is not None)  # fmt: skip
    figures.add("R5", f"{tag} zombies of the gateway 2 s after the last answer", len(zombies) if reaped is None else 0,
                "0", reaped is not None)  # fmt: skip
    figures.add("R5", f"{tag} SIGTERM-ignoring children gone after",
                "never" if s_gone is None else f"{s_gone:.2f} s", f"<= grace ({GRACE:g} s) + 2 s",
                s_gone is not None and set(s_codes) == {504})  # fmt: skip
    assert codes.count(504) == count, sorted(set(codes))
    assert not late, sorted(late)[-5:]
    assert gone is not None, f"{len(processes_with(marker))} sleeps left"
    assert reaped is not None and not s_zombies, zombies
    assert set(s_codes) == {504} and all(abs(x - LIMIT) <= 1.0 for x in s_latencies)
    assert s_gone is not None


@pytest.mark.skipif(not (bwrap_works() or HAS_CGROUPS), reason="needs bubblewrap or writable cgroups")
def test_r5_a_grandchild_that_left_the_process_group_is_killed_too(tmp_path: Path, figures: Figures) -> None:
    # Given an action whose grandchild starts its own session (out of reach of a group kill)
    marker = f"302.{secrets.randbelow(10**6):06d}"
    server = LiveServer(tmp_path / "home", HATCHWAY_SANDBOX="auto", HATCHWAY_KILL_GRACE_SECONDS="1").start()
    try:
        with server.client() as hw:
            hw.register_action(sh_spec("escaper", f"setsid sleep {marker} & wait"))
        # When its sync call times out
        latencies, codes, last = _timeouts(server, "escaper", 5, 5)
        gone = _gone_within(marker, last, 3.0)
    finally:
        server.kill()
    figures.add("R5", "[auto] setsid grandchild gone after the timeout",
                "never" if gone is None else f"{gone:.2f} s", "<= grace (1 s) + 2 s", gone is not None)  # fmt: skip
    assert set(codes) == {504}
    assert gone is not None
