"""A repeat of an Idempotency-Key still in progress: how often it looks, how long it waits, and
what it answers when it gives up (plan §12). Time is a fake clock: nothing here sleeps."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hatchway.api.common import DEADLINE_MARGIN_SECONDS, NO_CONTEXT_SECONDS, request_deadline
from hatchway.api.errors import error_answer
from hatchway.errors import InProgress, error_record, rebuild_error
from hatchway.faults import CrashPoints
from hatchway.services.idempotency import Idempotency, same
from tests.conftest import make_settings
from tests.fakes import FakeClock, HeldKeyRepo

ANSWER = {"id": "run_first"}


def idempotency(tmp_path: Path, clock: FakeClock, repo: HeldKeyRepo, **settings: Any) -> Idempotency:
    return Idempotency(repo, clock, make_settings(tmp_path, **settings).idempotency, CrashPoints())


def repeat(service: Idempotency, work: Any = None, deadline: float | None = None) -> dict[str, Any]:
    def never(run_id: str) -> dict[str, Any]:
        raise AssertionError(f"a repeat did the work itself (run id {run_id})")

    return service.once(
        "k", "fp", 3600, work or never, encode=same, decode=same, keep_errors=False, code=202, deadline=deadline
    )


def test_a_repeat_looks_again_after_5_10_20_ms_and_so_on_capped_then_gives_up_at_its_deadline(
    tmp_path: Path,
) -> None:
    # Given a key held for another 60 s, and a repeat whose request must answer within 3 s
    clock = FakeClock()
    repo = HeldKeyRepo(clock, held_for=60)
    service = idempotency(tmp_path, clock, repo)
    # When the repeat waits
    with pytest.raises(InProgress) as raised:
        repeat(service, deadline=clock.monotonic() + 3.0)
    # Then its pauses double from 5 ms up to the cap of 0.25 s, and it stops exactly at its deadline
    assert clock.sleeps[:7] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.25])
    assert max(clock.sleeps) == pytest.approx(0.25)
    assert all(pause == pytest.approx(0.25) for pause in clock.sleeps[6:-1])
    assert clock.slept == pytest.approx(3.0)
    # with one store call per look, and a Retry-After of the seconds the key stays held
    assert repo.begins == len(clock.sleeps) + 1
    assert raised.value.retry_after == 57
    assert repo.completed == []


def test_the_cap_is_a_setting(tmp_path: Path) -> None:
    clock = FakeClock()
    service = idempotency(tmp_path, clock, HeldKeyRepo(clock, held_for=60), idempotency_poll_max_seconds=0.05)
    with pytest.raises(InProgress):
        repeat(service, deadline=1.0)
    assert clock.sleeps[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.05])
    assert max(clock.sleeps) == pytest.approx(0.05)


def test_a_repeat_gets_the_first_answer_when_it_comes(tmp_path: Path) -> None:
    # Given a key whose first request answers after about 0.1 s
    clock = FakeClock()
    repo = HeldKeyRepo(clock, held_for=60)
    clock.on_sleep.append(lambda _: repo.finish_first(ANSWER) if clock.slept >= 0.1 else None)
    service = idempotency(tmp_path, clock, repo)
    # When a repeat arrives, Then it waits for and gets that answer, not another
    assert repeat(service, deadline=28.0) == ANSWER
    assert clock.sleeps == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert repo.begins == 6


def test_the_wait_ends_at_the_holders_expiry_which_takes_the_key_over(tmp_path: Path) -> None:
    # Given a key whose first request died 0.5 s before its in-progress time runs out
    clock = FakeClock()
    repo = HeldKeyRepo(clock, held_for=0.5)
    service = idempotency(tmp_path, clock, repo)
    done: list[str] = []

    def work(run_id: str) -> dict[str, Any]:
        done.append(run_id)
        return {"id": run_id}

    # When a repeat with time to spare waits
    answer = repeat(service, work, deadline=28.0)
    # Then it waits just past the expiry, takes the key over and keeps the first request's run id
    assert clock.slept == pytest.approx(0.501)
    assert done == ["run_first"] and answer == {"id": "run_first"}
    assert repo.completed == [{"id": "run_first"}]


def test_a_holder_not_taken_over_past_its_expiry_ends_the_wait_instead_of_polling_on(tmp_path: Path) -> None:
    # Given a key whose holder's in-progress time ran out, but the store does not let it be taken over
    clock = FakeClock()
    repo = HeldKeyRepo(clock, held_for=0.5, takeover=False)
    service = idempotency(tmp_path, clock, repo)
    # When a repeat without a deadline of its own waits
    with pytest.raises(InProgress) as raised:
        repeat(service)
    # Then it gives up just after the expiry (one more look), with Retry-After 1
    assert clock.slept == pytest.approx(0.502)
    assert raised.value.retry_after == 1 and repo.begins == len(clock.sleeps) + 1


def test_a_deadline_of_now_refuses_a_repeat_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    repo = HeldKeyRepo(clock, held_for=10)
    service = idempotency(tmp_path, clock, repo)
    with pytest.raises(InProgress) as raised:
        repeat(service, deadline=clock.monotonic())
    assert clock.sleeps == [] and repo.begins == 1
    assert raised.value.retry_after == 10


def test_in_progress_is_a_409_in_the_error_shape_with_retry_after() -> None:
    code, body, headers = error_answer(InProgress("a request with this Idempotency-Key is still in progress", 7))
    assert code == 409
    assert body == {
        "status": "error",
        "error": "Conflict",
        "code": 409,
        "message": "a request with this Idempotency-Key is still in progress",
    }
    assert headers == {"Retry-After": "7"}
    again = rebuild_error(error_record(InProgress("busy", 7)))
    assert isinstance(again, InProgress) and again.retry_after == 7


class Context:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_a_requests_deadline_is_its_lambdas_remaining_time_less_a_margin() -> None:
    before = time.monotonic()
    lambda_deadline = request_deadline(Context(10_000))
    local_deadline = request_deadline(None)
    after = time.monotonic()
    assert before + 10 - DEADLINE_MARGIN_SECONDS <= lambda_deadline <= after + 10 - DEADLINE_MARGIN_SECONDS
    assert before + NO_CONTEXT_SECONDS - 2 <= local_deadline <= after + NO_CONTEXT_SECONDS - 2
