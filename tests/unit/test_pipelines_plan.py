"""The pipeline model's references and groups, and the local engine's planner, without any I/O."""

from __future__ import annotations

import base64
import itertools
from dataclasses import replace
from typing import Any

import pytest

from hatchway.domain.pipelines.inline import CONTAINER_STEP, PRELUDE, inline_spec, variables_blob
from hatchway.domain.pipelines.plan import plan
from hatchway.domain.pipelines.records import Execution, ExecutionStatus, StepState, StepStatus
from hatchway.domain.pipelines.spec import PipelineSpec, Reference, parse_pipeline, references, render, runs_before
from hatchway.domain.runs import SYNC_GATEWAY_LOST, Run, RunError, RunStatus, retry_delay_seconds
from hatchway.errors import ValidationFailed


def spec_of(*steps: dict[str, Any], **fields: Any) -> PipelineSpec:
    return parse_pipeline({"steps": list(steps), **fields}, "p")


def test_references_and_rendering() -> None:
    found = list(references("$A ${B} $$C ${steps.x.exports.k} ${steps.y.ret.items.0}"))
    assert found == [
        Reference("$A", variable="A"),
        Reference("${B}", variable="B"),
        Reference("${steps.x.exports.k}", step="x", kind="exports", path=("k",)),
        Reference("${steps.y.ret.items.0}", step="y", kind="ret", path=("items", "0")),
    ]
    assert render("a-$A-$$-${B}", lambda ref: ref.variable.lower()) == "a-a-$-b"
    assert render("no references", lambda ref: 1 / 0) == "no references"


def test_groups_join_steps_linked_by_parallel_run_next() -> None:
    spec = spec_of(
        {"name": "a", "action": "x", "run_next": "IN_SOFT_PARALLEL"},
        {"name": "b", "action": "x"},
        {"name": "c", "action": "x", "run_next": "IN_SOFT_PARALLEL"},
        {"name": "d", "action": "x", "run_next": "IN_HARD_PARALLEL"},
        {"name": "e", "action": "x", "run_next": "IN_SOFT_PARALLEL"},
        {"name": "f", "action": "x", "trigger_time": "ON_FAILURE", "run_only_on_first_failure": False},
    )
    groups = spec.groups(spec.main)
    assert [(g.names, g.is_hard) for g in groups] == [(["a", "b"], False), (["c", "d", "e"], True)]
    before = runs_before(spec)
    assert before["b"] == set() and before["c"] == {"a", "b"} and before["f"] == {"a", "b", "c", "d", "e"}


def test_a_definition_names_the_body_name_mismatch() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_pipeline({"name": "other", "steps": [{"name": "a", "action": "x"}]}, "p")
    assert err.value.details[0]["loc"] == ["body", "name"]


def test_the_container_prelude_reads_the_variables_parameter() -> None:
    spec = spec_of({"name": "s", "docker_image_name": "alpine", "execute_commands": ["echo hi"], "shell": "BASH"},
                   variables=[{"key": "K", "value": "v", "encrypted": True}])  # fmt: skip
    action = inline_spec(spec, spec.steps[0])
    assert action.image_uri == "alpine"
    assert action.argv[:2] == ["/bin/bash", "-c"] and action.argv[2].startswith(PRELUDE)
    assert action.argv[2].endswith("set -e\necho hi\n")
    assert [p.name for p in action.parameters] == ["#HATCHWAY_VARIABLES", "#K"]
    assert base64.b64decode(variables_blob({"A": "it's"})).decode() == "export A='it'\"'\"'s'\n"


def test_a_container_steps_fields_become_its_argv_and_the_executors_instructions() -> None:
    box = {"name": "s", "docker_image_name": "alpine", "execute_commands": ["make"]}
    spec = spec_of(box, {**box, "name": "t", "reset_entrypoint": True, "mount_filesystem_disable": True,
                         "setup_commands": ["apk add make"], "run_as_user": "builder:staff",
                         "volume_mappings": []},
                   {**box, "name": "u", "volume_mappings": ["/src/./:/app/", "/:/all"], "working_directory": "/w",
                    "export_container_path": "/tmp/out"})  # fmt: skip
    kept, reset, mapped = (inline_spec(spec, step) for step in spec.steps)
    # the shell is the image entrypoint's command unless reset_entrypoint; it starts in the filesystem
    assert kept.container_parameters and kept.container_parameters.entry_point is None
    assert kept.container_parameters.workdir == "/buddy/p"
    assert kept.metadata[CONTAINER_STEP] == {"filesystem": [["", "/buddy/p"]]}
    assert reset.container_parameters and reset.container_parameters.entry_point == reset.argv
    assert reset.container_parameters.workdir is None
    assert reset.metadata[CONTAINER_STEP] == {
        "filesystem": None, "user": "builder:staff", "setup": {"shell": "/bin/sh", "script": "set -e\napk add make\n"},
    }  # fmt: skip
    assert "apk add" not in reset.argv[2]  # setup commands customise the image instead
    assert mapped.metadata[CONTAINER_STEP] == {"filesystem": [["src", "/app"], ["", "/all"]], "export": "/tmp/out"}
    # and every step reaches the network, as Buddy's containers do
    assert all(step.metadata["network"] is True for step in (kept, reset, mapped))
    # Buddy's view gives the commands twice, as a list and as one text: both are accepted when they agree
    both = spec_of({**box, "execute_commands": ["make", "make test"], "inline_commands": "make\nmake test\n"})
    alone = spec_of({**box, "execute_commands": [], "inline_commands": "make\nmake test\n"})
    assert inline_spec(both, both.steps[0]).argv[2].endswith("set -e\nmake\nmake test\n")
    assert inline_spec(alone, alone.steps[0]).argv[2].endswith("set -e\nmake\nmake test\n\n")


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"volume_mappings": ["../x:/y"]}, ["volume_mappings", 0], "'..'"),
        ({"volume_mappings": ["x:relative"]}, ["volume_mappings", 0], "absolute"),
        ({"volume_mappings": ["x"]}, ["volume_mappings", 0], "one colon"),
        ({"volume_mappings": ["x:/tmp/y"]}, ["volume_mappings", 0], "/tmp"),
        ({"volume_mappings": ["x:/"]}, ["volume_mappings", 0], "root"),
        ({"volume_mappings": ["a:/y", "b:/y/"]}, ["volume_mappings", 1], "twice"),
        ({"volume_mappings": ["a:/y"], "mount_filesystem_disable": True}, ["volume_mappings"], "drop one"),
        ({"working_directory": "/hatchway/data"}, ["working_directory"], "/hatchway"),
        ({"working_directory": "rel", "mount_filesystem_disable": True}, ["working_directory"], "absolute"),
        ({"export_container_path": "out"}, ["export_container_path"], "absolute"),
        ({"run_as_user": "root"}, ["run_as_user"], "root"),
        ({"run_as_user": "app:0"}, ["run_as_user"], "root"),
        ({"run_as_user": "$USER"}, ["run_as_user"], "no variable USER"),
        ({"run_as_user": "app-$USER"}, ["run_as_user"], "a name or a uid"),
        (
            {"run_as_user": "$K", "variables": [{"key": "K", "value": "x", "encrypted": True}]},
            ["run_as_user"],
            "encrypted",
        ),
        ({"loop": ["a"], "execute_commands": [], "entrypoint": "run"}, ["loop"], "execute_commands"),
        ({"reset_entrypoint": True, "execute_commands": [], "entrypoint": "run"}, ["reset_entrypoint"], "drop one"),
        ({"inline_commands": "make\nmake test"}, ["inline_commands"], "give one"),
        ({"inline_commands": "run", "execute_commands": [], "entrypoint": "run"}, ["entrypoint"], "not both"),
    ],
)
def test_a_container_steps_paths_and_user_are_checked(fields: dict[str, Any], where: list[Any], says: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        spec_of({"name": "s", "docker_image_name": "alpine", "execute_commands": ["true"], **fields})
    detail = err.value.details[0]
    assert detail["loc"] == ["body", "steps", 0, *where] and says in detail["msg"], detail


def test_a_step_opening_paths_of_the_filesystem_runs_beside_no_container_that_mounts_it() -> None:
    box = {"docker_image_name": "alpine", "execute_commands": ["true"]}
    parallel = {"run_next": "IN_SOFT_PARALLEL"}
    # two steps mounting the filesystem's root side by side are fine, as is a step without it
    spec_of({"name": "a", **box, **parallel}, {"name": "b", **box})
    spec_of({"name": "a", **box, **parallel, "volume_mappings": ["/src:/src"]},
            {"name": "b", **box, "mount_filesystem_disable": True}, {"name": "c", **box})  # fmt: skip
    # a mapped folder or an export beside another container with the filesystem is refused
    for field in ({"volume_mappings": ["/src:/src"]}, {"export_container_path": "/tmp/out"}):
        with pytest.raises(ValidationFailed) as err:
            spec_of({"name": "a", **box}, {"name": "b", **box, **parallel}, {"name": "c", **box, **field})
        detail = err.value.details[0]
        assert detail["loc"] == ["body", "steps", 2, next(iter(field))] and "to itself" in detail["msg"], detail


# ---- the planner ------------------------------------------------------------------------------


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"run_{next(counter):026d}"


def run(run_id: str, status: RunStatus, kind: str | None = None, attempt: int = 1) -> Run:
    return Run(
        id=run_id, project_id="proj_a", environment="dev", action_name="x", action_version=1, action_digest="d",
        status=status, attempt=attempt, started_at=1, finished_at=2 if status.is_terminal else None,
        error=RunError(kind, "it broke") if kind else None,
    )  # fmt: skip


def execution_of(spec: PipelineSpec) -> Execution:
    return Execution("pex_1", "proj_a", "dev", "p", 1, steps=[StepState(s.name) for s in spec.steps])


def test_the_planner_starts_the_first_group_and_is_idempotent() -> None:
    spec = spec_of({"name": "a", "action": "x", "run_next": "IN_SOFT_PARALLEL"}, {"name": "b", "action": "x"},
                   {"name": "c", "action": "x"})  # fmt: skip
    new_id = ids()
    first = plan(spec, execution_of(spec), {}, 10, lambda: None, new_id)
    assert first.status == ExecutionStatus.INPROGRESS
    assert [s.run_id is not None for s in first.steps] == [True, True, False]
    # nothing has happened since: the same state again, no new run ids
    again = plan(spec, first, {s.run_id: None for s in first.steps if s.run_id}, 11, lambda: None, new_id)
    assert again == first


def test_a_hard_group_stops_its_siblings_when_one_fails() -> None:
    spec = spec_of({"name": "a", "action": "x", "run_next": "IN_HARD_PARALLEL"}, {"name": "b", "action": "x"},
                   {"name": "c", "action": "x"})  # fmt: skip
    started = plan(spec, execution_of(spec), {}, 10, lambda: None, ids())
    a, b = started.steps[0].run_id, started.steps[1].run_id
    assert a and b
    runs = {a: run(a, RunStatus.FAILED, "user"), b: run(b, RunStatus.INPROGRESS)}
    stopping = plan(spec, started, runs, 20, lambda: None, ids())
    assert stopping.steps[0].status == StepStatus.FAILED and stopping.steps[1].cancel_requested
    runs[b] = run(b, RunStatus.TERMINATED, "cancelled")
    done = plan(spec, stopping, runs, 30, lambda: "SUCCESSFUL", ids())
    assert done.status == ExecutionStatus.FAILED
    assert [s.status for s in done.steps] == [StepStatus.FAILED, StepStatus.TERMINATED, StepStatus.NOT_EXECUTED]


def test_a_sync_step_is_retried_with_a_new_run_after_its_interval() -> None:
    spec = spec_of({"name": "a", "action": "x", "sync_action": "check", "retry_count": 1, "retry_interval": 2})
    new_id = ids()
    started = plan(spec, execution_of(spec), {}, 1_000, lambda: None, new_id)
    first = started.steps[0].run_id
    assert first
    retrying = plan(spec, started, {first: run(first, RunStatus.FAILED, "application")}, 2_000, lambda: None, new_id)
    state = retrying.steps[0]
    assert state.status == StepStatus.INPROGRESS and state.attempt == 2
    assert state.run_id != first and state.available_at == 2_000 + 2_000
    # Buddy's retry_interval is a fixed delay: the second retry waits 2 s as the first did
    spec = spec_of({"name": "a", "action": "x", "sync_action": "check", "retry_count": 2, "retry_interval": 2})
    second = retrying.steps[0].run_id
    assert second
    again = plan(spec, retrying, {second: run(second, RunStatus.FAILED, "application", attempt=2)}, 9_000,
                 lambda: None, new_id)  # fmt: skip
    assert again.steps[0].attempt == 3 and again.steps[0].available_at == 9_000 + 2_000
    # a user error is never retried
    user = plan(spec, started, {first: run(first, RunStatus.FAILED, "user")}, 2_000, lambda: None, ids())
    assert user.steps[0].status == StepStatus.FAILED


def test_an_async_step_run_waits_its_interval_each_time_where_a_run_backs_off() -> None:
    plain = replace(run("run_a", RunStatus.FAILED, "application"), retry_interval_seconds=2.0)
    step_run = replace(plain, options={"pipeline": {"execution_id": "pex_1", "pipeline": "p", "step": "a"}})
    assert [retry_delay_seconds(step_run, attempt) for attempt in (1, 2, 3)] == [2.0, 2.0, 2.0]
    assert [retry_delay_seconds(plain, attempt) for attempt in (1, 2, 3)] == [2.0, 4.0, 8.0]


def test_a_sync_step_cut_off_by_a_stopped_gateway_is_called_again_without_retries() -> None:
    # Given a sync step with no retries whose call was cut off by a gateway that stopped
    spec = spec_of({"name": "a", "action": "x", "sync_action": "check"})
    new_id = ids()
    state = plan(spec, execution_of(spec), {}, 1_000, lambda: None, new_id)
    lost: list[str] = []
    for n in range(2):
        run_id = state.steps[0].run_id
        assert run_id
        lost.append(run_id)
        swept = run(run_id, RunStatus.FAILED)
        swept.error = RunError("platform", SYNC_GATEWAY_LOST)
        # When the sweeper failed its run
        state = plan(spec, state, {run_id: swept}, 2_000 + n, lambda: None, new_id, max_lost_attempts=2)
        # Then the step is called again at once with a new run (its retries untouched)
        step = state.steps[0]
        assert step.status == StepStatus.INPROGRESS and step.run_id not in lost and step.available_at is None
        assert (step.attempt, step.lost_attempts) == (n + 2, n + 1)
    # and past the allowance the loss fails the step, like any platform error without retries
    last = state.steps[0].run_id
    assert last
    swept = run(last, RunStatus.FAILED)
    swept.error = RunError("platform", SYNC_GATEWAY_LOST)
    failed = plan(spec, state, {last: swept}, 3_000, lambda: None, new_id, max_lost_attempts=2)
    assert failed.steps[0].status == StepStatus.FAILED and failed.status == ExecutionStatus.FAILED
    # another platform error is not a lost gateway: without retries it fails the step
    other = run(lost[0], RunStatus.FAILED, "platform")
    first = plan(spec, execution_of(spec), {}, 1_000, lambda: None, ids())
    assert plan(spec, first, {lost[0]: other}, 2_000, lambda: None, ids()).steps[0].status == StepStatus.FAILED


def test_terminate_before_anything_ran_goes_to_the_terminate_section() -> None:
    spec = spec_of({"name": "a", "action": "x"}, {"name": "t", "action": "x", "trigger_time": "ON_TERMINATE"})
    execution = execution_of(spec)
    execution.terminate_requested = True
    planned = plan(spec, execution, {}, 10, lambda: None, ids())
    assert planned.status == ExecutionStatus.TERMINATING and planned.outcome == "TERMINATED"
    assert planned.steps[0].status == StepStatus.NOT_EXECUTED and planned.steps[1].run_id is not None
