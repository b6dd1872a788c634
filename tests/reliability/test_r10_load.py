"""R10: sync calls far over capacity - every call answered in time, none lost; requests never mix."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from hatchway.services import Services
from tests.conftest import inprocess_client
from tests.functional.actions import behave
from tests.helpers import LiveServer
from tests.reliability.conftest import Figures, scaled
from tests.reliability.harness import API, AUTH, chaos_spec, read_runs


def test_r10_concurrent_requests_never_see_each_others_event(services: Services, figures: Figures) -> None:
    # Given one resolver answering from many threads at once (as `hatchway serve` does)
    names = [f"mix-{i}" for i in range(4)]
    with inprocess_client(services) as hw:
        for name in names:
            hw.register_action(behave(name))
    mixed: Counter[str] = Counter()
    answered = Counter[str]()

    def hammer(index: int) -> None:
        name = names[index % len(names)]
        with inprocess_client(services) as hw:
            for round_ in range(60):
                # When each thread reads its own action and submits its own parameters
                if hw.get_action(name)["name"] != name:
                    mixed["action read"] += 1
                who = f"t{index}-r{round_}"
                run = hw.start_run(name, {"who": who})
                if run["parameters"].get("who") != who or run["action"]["name"] != name:
                    mixed["run submitted"] += 1
                answered["ok"] += 2

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # Then no answer carries another request's path or body
    total = sum(mixed.values())
    figures.add("R10", "requests answered with another request's data", f"{total} of {answered['ok']}", "0", total == 0)
    assert total == 0, dict(mixed)


def test_r10_two_hundred_concurrent_sync_calls_are_all_answered_in_time(
    tmp_path: Path, figures: Figures, is_full: bool
) -> None:
    seconds = scaled(20, 3, is_full)
    home = tmp_path / "home"
    server = LiveServer(home, "--workers", "0", HATCHWAY_SANDBOX="none").start()
    answers: list[tuple[int, float, str | None, dict[str, Any]]] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(200)
    body = {"parameters": {"behaviour": "sync_sleep", "seconds": str(seconds)}}

    def call() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            start.wait()
            began = time.monotonic()
            try:
                answer = http.post(f"{API}/actions/chaos/sync/call", json=body)
            except httpx.HTTPError as exc:
                with lock:
                    errors.append(type(exc).__name__)
                return
            with lock:
                answers.append((answer.status_code, time.monotonic() - began, answer.headers.get("retry-after"),
                                answer.json()))  # fmt: skip

    try:
        with server.client() as hw:
            hw.register_action(chaos_spec())
        # When 200 clients call a sync action at once, far over the 32 calls admitted together
        threads = [threading.Thread(target=call) for _ in range(200)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.kill()
    # Then every call got an answer in time: a result, or 429/503 with Retry-After
    codes = Counter(code for code, _, _, _ in answers)
    refused = [(code, after) for code, _, after, _ in answers if code in (429, 503)]
    slowest = max((elapsed for _, elapsed, _, _ in answers), default=0.0)
    runs = read_runs(home)
    recorded = {body["run_id"] for code, _, _, body in answers if code == 200}
    figures.add("R10", f"200 concurrent sync calls of {seconds} s (32 admitted at once)", dict(codes))
    figures.add(
        "R10", "calls without an answer", len(errors) + 200 - len(answers), "0", not errors and len(answers) == 200
    )
    figures.add("R10", "refusals with Retry-After", f"{sum(1 for _, after in refused if after)}/{len(refused)}",
                "all", all(after for _, after in refused))  # fmt: skip
    figures.add("R10", "slowest answer", f"{slowest:.1f} s", "<= 31 s", slowest <= 31)
    kept = f"{len(recorded & set(runs))}/{len(recorded)} / {len(set(runs) - recorded)}"
    figures.add("R10", "answered calls recorded as runs / other runs", kept, "all / 0", recorded == set(runs))
    assert not errors and len(answers) == 200, errors
    assert set(codes) <= {200, 429, 503}, codes
    assert all(after for _, after in refused)
    assert slowest <= 31
    assert codes[200] >= 32
    assert recorded == set(runs) and all(runs[i].status.value == "SUCCESSFUL" for i in recorded)
