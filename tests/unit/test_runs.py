"""The run lifecycle as data, ids, cursors and settings checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from hatchway.config import Settings
from hatchway.domain import runs
from hatchway.domain.runs import TERMINAL, TRANSITIONS, RunStatus, can_transition, iso, new_run_id
from hatchway.domain.spec import ActionSpec
from hatchway.errors import ValidationFailed
from hatchway.store._cursor import decode_cursor, encode_cursor


def test_terminal_statuses_have_no_way_out() -> None:
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert status.is_terminal


def test_allowed_transitions() -> None:
    assert can_transition(RunStatus.ENQUEUED, RunStatus.INPROGRESS)
    assert can_transition(RunStatus.ENQUEUED, RunStatus.TERMINATED)  # cancelled before it started
    assert can_transition(RunStatus.INPROGRESS, RunStatus.TERMINATING)
    assert can_transition(RunStatus.TERMINATING, RunStatus.TERMINATED)
    assert can_transition(RunStatus.INPROGRESS, RunStatus.ENQUEUED)  # a retry waits in the queue
    assert not can_transition(RunStatus.ENQUEUED, RunStatus.SUCCESSFUL)
    assert not can_transition(RunStatus.TERMINATING, RunStatus.SUCCESSFUL)
    assert not can_transition(RunStatus.SUCCESSFUL, RunStatus.FAILED)


def test_run_ids_are_sortable_by_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    # ids are monotonic per process: the id from the year 2033 below would stamp every later id
    # of this test session 2033 (and hide runs from sweeps that look back from now) unless restored
    monkeypatch.setattr(runs, "_last_ms", runs._last_ms)
    monkeypatch.setattr(runs, "_last_rand", runs._last_rand)
    ids = [new_run_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("run_") and len(i) == 30 for i in ids)
    assert new_run_id(1_000) < new_run_id(2_000_000_000_000)


def test_iso_times() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(None) is None


def test_cursors_are_bound_to_their_list() -> None:
    cursor = encode_cursor(("runs", "proj_a", "development", "{}"), "run_x")
    assert decode_cursor(cursor, ("runs", "proj_a", "development", "{}")) == "run_x"
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor, ("runs", "proj_b", "development", "{}"))
    with pytest.raises(ValidationFailed):
        decode_cursor("not-a-cursor!!", ("runs", "proj_a", "development", "{}"))
    assert decode_cursor(None, ("x",)) is None


def test_sync_limit_can_only_be_lowered() -> None:
    assert Settings.from_env({"HATCHWAY_SYNC_TIMEOUT_SECONDS": "5"}).sync.sync_timeout_seconds == 5
    with pytest.raises(ValidationFailed):
        Settings.from_env({"HATCHWAY_SYNC_TIMEOUT_SECONDS": "31"})


def test_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValidationFailed) as caught:
        Settings.from_env({"HATCHWAY_LEASE_SECONDS": "5", "HATCHWAY_HEARTBEAT_SECONDS": "5"})
    assert "claimed twice" in caught.value.message
    assert Settings.from_env({"HATCHWAY_LEASE_SECONDS": "6"}).runs.heartbeat_seconds == 2


def test_bad_numbers_in_settings() -> None:
    with pytest.raises(ValidationFailed):
        Settings.from_env({"HATCHWAY_WORKERS": "many"})


def test_the_sandbox_says_when_nothing_caps_an_actions_processes() -> None:
    from hatchway.executors.sandbox import Sandbox

    # Given rlimits only (no cgroups): RLIMIT_NPROC binds other users, not root
    sandbox = Sandbox("limits", cgroups=None)
    sandbox.is_root = True
    assert "no process limit" in sandbox.describe()
    sandbox.is_root = False
    assert "no process limit" not in sandbox.describe()
    spec = ActionSpec.model_validate({"name": "t", "image_uri": "x", "sync_actions": ["a"]})
    confined = sandbox.confine(["/bin/true"], spec, Path("/x"), Path("/x"), "t")
    assert "ulimit -p" in confined.argv[2]


@pytest.mark.parametrize("variable", ["HATCHWAY_EXECUTOR", "HATCHWAY_SYNC_EXECUTOR", "HATCHWAY_RUN_EXECUTOR"])
def test_an_unknown_executor_is_refused_with_its_variable(variable: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Settings.from_env({variable: "nope"})
    assert caught.value.details[0]["loc"] == ["env", variable]
    assert Settings.from_env({variable: "process"}).executors.executor in ("auto", "process")
