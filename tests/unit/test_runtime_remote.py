"""The container side of Batch/ECS runs (:mod:`hatchway.runtime.remote`) over a host of its own:
the exit-code protocol the engines act on, the retry wait, the host seam and its one-line refusal."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from hatchway.runtime import remote
from hatchway.runtime.remote import RETRY_EXIT_CODE, Claimed, container_identity, run_attempt


class Host:
    """An AttemptHost that ends every attempt in ``ends`` and records what it was asked."""

    def __init__(self, ends: str = "SUCCESSFUL", claimable: bool = True, status: str | None = "ENQUEUED") -> None:
        self.ends = ends
        self.claimable = claimable
        self.current = status
        self.calls: list[tuple[Any, ...]] = []
        self.available_at_ms = 0
        self.project_id: str | None = None

    def claim(self, run_id: str, owner: str, project_id: str | None = None) -> Claimed | None:
        self.calls.append(("claim", run_id, owner))
        self.project_id = project_id
        return Claimed(1, self.available_at_ms) if self.claimable else None

    def status(self, run_id: str) -> str | None:
        return self.current

    def execute(self, run_id: str, stop: threading.Event) -> str:
        self.calls.append(("execute", run_id, stop.is_set()))
        return self.ends

    def save_outputs(self, run_id: str) -> None:
        self.calls.append(("save", run_id))

    def close(self) -> None:
        self.calls.append(("close",))


@pytest.mark.parametrize(
    ("ends", "code"), [("SUCCESSFUL", 0), ("ENQUEUED", RETRY_EXIT_CODE), ("FAILED", 1), ("TERMINATED", 1)]
)
def test_the_exit_code_tells_the_engine_how_the_attempt_ended(ends: str, code: int) -> None:
    host = Host(ends)
    assert run_attempt(host, "run_a", "batch/job/1") == code
    assert host.calls == [("claim", "run_a", "batch/job/1"), ("execute", "run_a", False), ("save", "run_a")]


@pytest.mark.parametrize(("status", "code"), [("SUCCESSFUL", 0), ("FAILED", 1), (None, 1)])
def test_nothing_to_run_succeeds_only_for_a_run_that_already_succeeded(status: str | None, code: int) -> None:
    host = Host(claimable=False, status=status)
    assert run_attempt(host, "run_a", "ecs/task") == code
    assert [call[0] for call in host.calls] == ["claim"]


def test_a_stop_during_the_retry_wait_still_ends_the_attempt_through_the_host() -> None:
    host = Host("ENQUEUED")
    host.available_at_ms = int(time.time() * 1000) + 600_000  # ten minutes away
    stop = threading.Event()
    stop.set()  # SIGTERM arrived: the wait ends at once and the host stops the attempt
    assert run_attempt(host, "run_a", "o", stop) == RETRY_EXIT_CODE
    assert ("execute", "run_a", True) in host.calls


def test_the_container_names_its_job_or_task() -> None:
    assert container_identity({"AWS_BATCH_JOB_ID": "j1", "AWS_BATCH_JOB_ATTEMPT": "2"}) == "batch/j1/2"
    assert container_identity({"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/abc-1/"}) == "ecs/abc-1"
    assert container_identity({}).startswith("host/")


HOSTS: list[Host] = []


def make_host() -> Host:
    HOSTS.append(Host())
    return HOSTS[-1]


def test_main_loads_the_host_by_name_runs_one_attempt_and_closes_it() -> None:
    code = remote.main("run_a", {remote.HOST_VARIABLE: f"{__name__}:make_host", "AWS_BATCH_JOB_ID": "j"})
    assert code == 0
    assert HOSTS[-1].calls[0] == ("claim", "run_a", "batch/j/1") and HOSTS[-1].calls[-1] == ("close",)
    assert HOSTS[-1].project_id is None


def test_main_claims_the_run_of_the_project_its_job_or_task_names() -> None:
    env = {remote.HOST_VARIABLE: f"{__name__}:make_host", remote.PROJECT_VARIABLE: "proj_a"}
    assert remote.main("run_a", env) == 0
    assert HOSTS[-1].project_id == "proj_a"


def test_main_without_the_package_says_what_to_install_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert remote.main("run_a", {remote.HOST_VARIABLE: "hatchway_not_installed.wiring:container_host"}) == 1
    err = capsys.readouterr().err
    assert err.startswith(remote.MISSING_PACKAGE) and err.count("\n") == 1
