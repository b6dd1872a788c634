"""R10: sync calls far over capacity - every call answered in time, none lost; requests never mix."""

from __future__ import annotations

import threading
from collections import Counter

from hatchway.service import Gateway
from tests.conftest import inprocess_client
from tests.functional.actions import behave
from tests.reliability.conftest import Figures


def test_r10_concurrent_requests_never_see_each_others_event(gateway: Gateway, figures: Figures) -> None:
    # Given one resolver answering from many threads at once (as `hatchway serve` does)
    names = [f"mix-{i}" for i in range(4)]
    with inprocess_client(gateway) as hw:
        for name in names:
            hw.register_action(behave(name))
    mixed: Counter[str] = Counter()
    answered = Counter[str]()

    def hammer(index: int) -> None:
        name = names[index % len(names)]
        with inprocess_client(gateway) as hw:
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
