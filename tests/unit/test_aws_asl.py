"""The generated state machines, checked structurally for the pipelines the local tests run."""

from __future__ import annotations

import json
from typing import Any

from hatchway.aws.asl import BATCH_SYNC, ECS_SYNC, LAMBDA_INVOKE, LAMBDA_WAIT, Targets, state_machine_definition
from hatchway.aws.stepfunctions import machine_name, terminate_arn
from hatchway.domain.pipelines.spec import PipelineSpec

TARGETS = Targets(
    function_arn="arn:aws:lambda:us-east-1:123456789012:function:hatchway-pipelines",
    job_queue="arn:aws:batch:us-east-1:123456789012:job-queue/hatchway",
    definitions={},
)


def compile_(steps: list[dict[str, Any]], targets: Targets = TARGETS, **fields: Any) -> dict[str, Any]:
    spec = PipelineSpec.model_validate({"name": "p", "steps": steps, **fields})
    machine = state_machine_definition(spec, targets)
    json.dumps(machine)  # it is plain JSON
    return machine


def reachable(states: dict[str, Any], start: str) -> set[str]:
    """Every state name reachable from ``start`` (Next, Default, Choices, Catch; not into branches)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])] + [c["Next"] for c in state.get("Catch", [])]
        todo += [t for t in targets if t]
    return seen


def all_names(states: dict[str, Any]) -> list[str]:
    names = list(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            names += all_names(branch["States"])
    return names


def assert_well_formed(states: dict[str, Any], top: bool = True) -> None:
    """Every transition names a state of the same scope; state names are unique in the whole machine."""
    if top:
        names = all_names(states)
        assert len(names) == len(set(names)), "Step Functions wants state names unique across branches"
    for name, state in states.items():
        for target in reachable(states, name) - {name}:
            assert target in states
        for branch in state.get("Branches", []):
            assert branch["StartAt"] in branch["States"]
            assert_well_formed(branch["States"], top=False)
        assert state["Type"] in ("Task", "Pass", "Choice", "Parallel", "Succeed", "Fail")


def test_three_steps_run_in_order_with_their_runs_prepared() -> None:
    machine = compile_(
        [
            {"name": "extract", "action": "a"},
            {"name": "transform", "action": "a", "parameters": {"v": "${steps.extract.exports.x}"}},
            {"name": "load", "action": "a", "sync_action": "push"},
        ]
    )
    states = machine["States"]
    assert_well_formed(states)
    assert machine["StartAt"] == "phase"
    assert states["phase"]["Default"] == "extract.start"
    # an async step: the pipeline function records the run, then Batch runs it to its end
    start = states["extract.start"]
    assert start["Resource"] == LAMBDA_INVOKE and start["Next"] == "extract"
    assert start["Parameters"]["Payload"] == {
        "op": "start_step", "execution_id.$": "$.execution_id", "step": "extract", "run_id.$": "$.runs.s0",
    }  # fmt: skip
    assert start["Retry"][0]["ErrorEquals"] == ["StepInputsPending"]
    run = states["extract"]
    assert run["Resource"] == BATCH_SYNC and run["Next"] == "transform.start"
    assert run["Parameters"]["JobName.$"] == "$.runs.s0"
    assert run["Parameters"]["JobQueue"] == TARGETS.job_queue
    # the container runs the runtime adapter for that run (the run executors' job definitions)
    assert run["Parameters"]["Parameters"] == {"run_id.$": "$.runs.s0"}
    assert run["Catch"][0]["Next"] == "main.failed"
    # a sync step: one Lambda call, within the sync limit
    load = states["load"]
    assert load["Resource"] == LAMBDA_INVOKE and load["Parameters"]["Payload"]["op"] == "sync_step"
    assert load["TimeoutSeconds"] <= 45 and load["Next"] == "main.done"
    assert states["main.done"]["Default"] == "outcome.successful"
    assert states["outcome.successful"]["Next"] == "succeeded" and states["succeeded"]["Type"] == "Succeed"


def test_sections_follow_the_outcome() -> None:
    states = compile_(
        [
            {"name": "work", "action": "a"},
            {"name": "lenient", "action": "a", "ignore_errors": True},
            {"name": "ok", "action": "a", "trigger_time": "ON_SUCCESS"},
            {"name": "back", "action": "a", "trigger_time": "ON_BACK_TO_SUCCESS"},
            {"name": "warn", "action": "a", "trigger_time": "ON_WARNING"},
            {"name": "page", "action": "a", "trigger_time": "ON_FAILURE", "run_only_on_first_failure": True},
            {"name": "stop", "action": "a", "trigger_time": "ON_TERMINATE"},
        ]
    )["States"]
    assert_well_formed(states)
    # a failure goes to the ON_FAILURE section, which ends in a Fail state
    assert states["work"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "main.failed"}]
    assert states["main.failed"]["Next"] == "page.when"
    assert states["page.when"]["Choices"][0] == {
        "Variable": "$.previous_status", "StringEquals": "FAILED", "Next": "page.not-executed",
    }  # fmt: skip
    assert states["page"]["Next"] == "outcome.failed" and states["outcome.failed"]["Type"] == "Fail"
    # an ignored error marks the execution warned and goes on; warned executions run ON_WARNING
    assert states["lenient"]["Catch"][0]["Next"] == "lenient.warned"
    assert states["lenient.warned"] == {"Type": "Pass", "Result": True, "ResultPath": "$.warned", "Next": "main.done"}
    assert states["main.done"]["Choices"] == [{"Variable": "$.warned", "BooleanEquals": True, "Next": "warn.start"}]
    assert states["main.done"]["Default"] == "ok.start"
    assert states["ok"]["Next"] == "back.when"
    assert states["back.when"]["Choices"][0]["Not"] == {"Variable": "$.previous_status", "StringEquals": "FAILED"}
    # the terminate phase runs only the ON_TERMINATE section
    assert states["phase"]["Choices"] == [{"Variable": "$.phase", "StringEquals": "terminate", "Next": "stop.start"}]
    assert states["stop"]["Next"] == "outcome.terminated"
    assert reachable(states, "stop.start") & {"work.start", "ok.start", "page.when"} == set()


def test_soft_and_hard_parallel_groups() -> None:
    def group(run_next: str) -> dict[str, Any]:
        return compile_(
            [
                {"name": "a", "action": "a", "run_next": run_next},
                {"name": "b", "action": "a", "ignore_errors": True},
                {"name": "c", "action": "a"},
            ]
        )["States"]

    soft = group("IN_SOFT_PARALLEL")
    assert_well_formed(soft)
    parallel = soft["a.group"]
    assert parallel["Type"] == "Parallel" and len(parallel["Branches"]) == 2
    branch_a = parallel["Branches"][0]["States"]
    # soft: a branch catches its own failure and ends with {"failed": true}; the join fails the pipeline
    assert branch_a["a"]["Catch"][0]["Next"] == "a.failed"
    assert branch_a["a.failed"] == {"Type": "Pass", "Result": {"failed": True}, "End": True}
    joined = soft["a.joined"]
    assert joined["Choices"][0]["Next"] == "main.failed"
    assert {"Variable": "$.groups.g0[0].failed", "IsPresent": True} in joined["Choices"][0]["Or"]
    assert joined["Choices"][1]["Next"] == "a.group-warned" and joined["Default"] == "c.start"
    hard = group("IN_HARD_PARALLEL")
    branch_a = hard["a.group"]["Branches"][0]["States"]
    branch_b = hard["a.group"]["Branches"][1]["States"]
    # hard: the failure is not caught in the branch, so the Parallel state fails and stops its siblings
    assert "Catch" not in branch_a["a"]
    assert hard["a.group"]["Catch"][0]["Next"] == "main.failed"
    # an ignored error stays a warning in either kind
    assert branch_b["b"]["Catch"][0]["Next"] == "b.warned"


def test_retries_timeouts_and_conditions() -> None:
    states = compile_(
        [
            {
                "name": "flaky", "action": "a", "retry_count": 3, "retry_interval": 5, "timeout": 600,
                "trigger_conditions": [
                    {"trigger_condition": "VAR_IS", "trigger_variable_key": "ENV", "trigger_variable_value": "prod"},
                    {"trigger_condition": "VAR_NOT_CONTAINS", "trigger_variable_key": "ENV",
                     "trigger_variable_value": "*x"},
                ],
            },
            {"name": "ask", "action": "a", "sync_action": "check", "retry_count": 2},
            {"name": "off", "action": "a", "disabled": True},
        ],
        variables=[{"key": "ENV", "value": "dev"}],
    )["States"]  # fmt: skip
    flaky = states["flaky"]
    # a Batch job's attempts are the run's: its retry strategy, never after a user error (exit 1)
    assert "Retry" not in flaky
    assert flaky["Parameters"]["RetryStrategy"] == {"Attempts": 4, "EvaluateOnExit": [{"OnExitCode": "1",
                                                                                        "Action": "EXIT"}]}  # fmt: skip
    assert flaky["TimeoutSeconds"] == 600 and flaky["Parameters"]["Timeout"] == {"AttemptDurationSeconds": 600}
    when = states["flaky.when"]
    assert when["Default"] == "flaky.start"
    rule = when["Choices"][0]
    assert rule["Next"] == "flaky.skipped"
    equals, not_contains = rule["Not"]["And"]
    assert equals["And"][1] == {"Variable": "$.variables.ENV", "StringEquals": "prod"}
    assert not_contains["Not"]["And"][1] == {"Variable": "$.variables.ENV", "StringMatches": "*\\*x*"}
    # a sync step retries application errors and timeouts, never user errors
    ask_retry = states["ask"]["Retry"]
    assert ask_retry[1]["ErrorEquals"] == ["ActionAppError", "ActionTimeout", "ExecutionFailed", "Unavailable"]
    assert ask_retry[1]["MaxAttempts"] == 2 and ask_retry[1]["IntervalSeconds"] == 1
    assert states["ask"]["Parameters"]["Payload"]["attempt.$"] == "$$.State.RetryCount"
    # a disabled step is only its skipped state
    assert "off" not in states and states["ask"]["Next"] == "off.skipped"


def test_an_approval_gate_waits_for_a_task_token_while_its_hooks_run() -> None:
    states = compile_(
        [
            {"name": "build", "action": "a"},
            {"name": "gate", "type": "WAIT_FOR_APPROVE"},
            {"name": "deploy", "action": "a"},
            {"name": "tell", "action": "a", "sync_action": "notify", "trigger_time": "ON_WAIT_FOR_APPROVE"},
        ]
    )["States"]
    assert_well_formed(states)
    waiting = states["gate.waiting"]
    assert waiting["Type"] == "Parallel" and waiting["Next"] == "deploy.start"
    gate_branch, hooks_branch = waiting["Branches"]
    gate = gate_branch["States"]["gate"]
    assert gate["Resource"] == LAMBDA_WAIT
    assert gate["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    # a failing notification does not fail the pipeline
    tell = hooks_branch["States"]["tell"]
    assert tell["Catch"][0]["Next"] == "tell.failed"
    assert hooks_branch["States"]["tell.failed"]["Next"] == "hooks.done"


def test_ecs_runs_use_run_task_sync() -> None:
    targets = Targets(function_arn=TARGETS.function_arn, runs_on="ecs", cluster="arn:cluster", subnets=["subnet-1"],
                      security_groups=["sg-1"], definitions={"x": "arn:task-def"})  # fmt: skip
    task = compile_([{"name": "x", "action": "a", "retry_count": 2, "retry_interval": 3}], targets)["States"]["x"]
    assert task["Resource"] == ECS_SYNC
    parameters = task["Parameters"]
    assert parameters["Cluster"] == "arn:cluster" and parameters["TaskDefinition"] == "arn:task-def"
    assert parameters["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == ["subnet-1"]
    assert parameters["StartedBy.$"] == "$.runs.s0"
    container = parameters["Overrides"]["ContainerOverrides"][0]
    assert container["Name"] == "action" and container["Command.$"] == "States.Array('--run', $.runs.s0)"
    # an ECS task is one attempt: the state machine retries with the step's interval
    assert task["Retry"] == [{"ErrorEquals": ["States.TaskFailed", "States.Timeout"], "IntervalSeconds": 3,
                              "MaxAttempts": 2, "BackoffRate": 1.0}]  # fmt: skip


def test_names_fit_step_functions() -> None:
    name = machine_name("proj_" + "x" * 40, "e" * 63, "p" * 63)
    assert len(name) <= 80 and name.startswith("hatchway-")
    assert machine_name("proj_a", "dev", "etl") != machine_name("proj_b", "dev", "etl")
    arn = "arn:aws:states:us-east-1:123456789012:execution:hatchway-abc-etl:pex_01"
    assert terminate_arn(arn, "pex_01") == arn + "-terminate"
