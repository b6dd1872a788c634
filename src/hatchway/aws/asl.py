"""A pipeline as an AWS Step Functions state machine (Amazon States Language).

The machine follows the local engine's rules (:mod:`hatchway.domain.pipelines.plan`) with ASL's means:

* The input carries the execution: ``execution_id``, ``project_id``, ``environment``, the plain
  ``variables``, ``previous_status``, ``phase`` (``main`` or ``terminate``), ``warned`` and the
  run id chosen beforehand for each step (``runs.s<index>``), so a step's run is known before it
  starts and its Batch job or ECS task carries it.
* An async step is two tasks: ``<step>.start`` (Lambda: hatchway's pipeline function resolves the
  step's references and records its run) and ``<step>`` (Batch ``submitJob.sync`` or ECS
  ``runTask.sync`` of the run executors' job or task definition, whose container runs the runtime
  adapter for that run) with ``TimeoutSeconds``. Retries follow the run executors: a Batch job's
  retry strategy (``1 + retry_count`` attempts, never after exit 1; Batch has no interval), an ECS
  step's ``Retry`` (``retry_interval``, a fixed delay: backoff rate 1). A sync step is one Lambda task with that
  ``Retry``: the pipeline function calls the action's sync Lambda, so decrypted parameters never
  enter the execution history. An approval gate is a ``lambda:invoke.waitForTaskToken`` task; the
  API's approve sends the token back.
* ``Catch`` sends a failure to the section run on failure, or, with ``ignore_errors``, to a
  ``<step>.warned`` state that marks the execution ``warned`` and goes on.
* A parallel group is a ``Parallel`` state. Hard: a failing branch fails the state, which stops the
  other branches. Soft: each branch catches its failure and ends with ``{"failed": true}``; a
  ``Choice`` after the group fails the pipeline once every branch has ended.
* Trigger conditions, ``ON_BACK_TO_SUCCESS`` and ``run_only_on_first_failure`` are ``Choice``
  states (``<step>.when``) leading to ``<step>.skipped`` or ``<step>.not-executed``.
* The sections after the main one are chosen by ``Choice`` states; the machine ends in a
  ``Succeed`` (output ``outcome`` SUCCESSFUL, WARNING or TERMINATED) or a ``Fail``. Terminating
  stops the execution and starts the same machine with ``phase: terminate``, which runs only the
  ``ON_TERMINATE`` section (a stopped execution runs nothing more).

State names are the step names (a step's main task) plus suffixes no step name can have, so the
execution history maps back to step statuses (:func:`hatchway.aws.stepfunctions.step_states`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hatchway.domain.pipelines.spec import Condition, Group, PipelineSpec, Step, TriggerCondition, TriggerTime

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
BATCH_SYNC = "arn:aws:states:::batch:submitJob.sync"
ECS_SYNC = "arn:aws:states:::ecs:runTask.sync"
#: Lambda's own transient errors, retried for every Lambda task
LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
#: the pipeline function raises this while a referenced step's outputs are not recorded yet
INPUTS_PENDING = "StepInputsPending"
#: errors of a sync action worth another attempt (never a user error)
SYNC_RETRYABLE = ["ActionAppError", "ActionTimeout", "ExecutionFailed", "Unavailable"]
SYNC_LIMIT_SECONDS = 30
SUFFIXES = (".start", ".when", ".skipped", ".not-executed", ".warned", ".ok", ".failed", ".group", ".joined",
            ".waiting")  # fmt: skip


@dataclass
class Targets:
    """Where steps run on AWS."""

    #: hatchway's pipeline function (prepares runs, calls sync actions, hears about approvals)
    function_arn: str
    #: "batch" (submitJob.sync) or "ecs" (runTask.sync) for async steps
    runs_on: str = "batch"
    job_queue: str | None = None
    cluster: str | None = None
    subnets: list[str] = field(default_factory=list)
    security_groups: list[str] = field(default_factory=list)
    #: step name -> Batch job definition or ECS task definition (ARN or name)
    definitions: dict[str, str] = field(default_factory=dict)
    #: the container name of ECS task definitions
    container_name: str = "action"


def state_machine_definition(spec: PipelineSpec, targets: Targets) -> dict[str, Any]:
    """The ASL document for ``spec``."""
    return _Compiler(spec, targets).compile()


class _Compiler:
    def __init__(self, spec: PipelineSpec, targets: Targets) -> None:
        self.spec = spec
        self.targets = targets
        self.index = {step.name: i for i, step in enumerate(spec.steps)}

    def compile(self) -> dict[str, Any]:
        spec = self.spec
        states: dict[str, Any] = {}
        main = self._section(states, spec.main, "main.done", "main.failed")
        on_success = self._section(
            states, spec.section(TriggerTime.ON_SUCCESS, TriggerTime.ON_BACK_TO_SUCCESS), "outcome.successful",
            "outcome.failed",
        )  # fmt: skip
        on_warning = self._section(states, spec.section(TriggerTime.ON_WARNING), "outcome.warning", "outcome.failed")
        on_failure = self._section(states, spec.section(TriggerTime.ON_FAILURE), "outcome.failed", "outcome.failed")
        on_terminate = self._section(
            states, spec.section(TriggerTime.ON_TERMINATE), "outcome.terminated", "outcome.terminated"
        )
        states.update(
            {
                "phase": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.phase", "StringEquals": "terminate", "Next": on_terminate}],
                    "Default": main,
                },
                "main.done": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.warned", "BooleanEquals": True, "Next": on_warning}],
                    "Default": on_success,
                },
                "main.failed": {"Type": "Pass", "Result": True, "ResultPath": "$.failed", "Next": on_failure},
                "outcome.successful": _outcome("SUCCESSFUL"),
                "outcome.warning": _outcome("WARNING"),
                "outcome.terminated": _outcome("TERMINATED"),
                "succeeded": {"Type": "Succeed"},
                "outcome.failed": {"Type": "Fail", "Error": "PipelineFailed", "Cause": "a step of the pipeline failed"},
            }
        )
        return {
            "Comment": f"hatchway pipeline {spec.name}",
            "StartAt": "phase",
            "States": states,
        }

    # ---- sections and groups -------------------------------------------------------------------

    def _section(self, states: dict[str, Any], steps: list[Step], done: str, failed: str | None) -> str:
        """Compile a section into ``states``; its first state (``done`` when it has no steps).

        ``failed`` is where a failure goes; None: it is recorded and the section goes on (the
        approval notifications).
        """
        entry = done
        for group in reversed(self.spec.groups(steps)):
            entry = self._group(states, group, entry, failed)
        return entry

    def _group(self, states: dict[str, Any], group: Group, nxt: str, failed: str | None) -> str:
        if group.steps[0].is_gate:
            return self._gate(states, group.steps[0], nxt, failed)
        if not group.is_parallel:
            return self._step(states, group.steps[0], nxt, failed, branch=None)
        first = group.steps[0].name
        key = f"$.groups.g{self.index[first]}"
        branches = []
        for step in group.steps:
            branch_states: dict[str, Any] = {}
            start = self._step(branch_states, step, "", failed, branch="hard" if group.is_hard else "soft")
            branches.append({"StartAt": start, "States": branch_states})
        parallel: dict[str, Any] = {
            "Type": "Parallel",
            "Branches": branches,
            "ResultPath": key,
            "Next": f"{first}.joined",
        }
        if failed is not None:
            parallel["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failed}]
        states[f"{first}.group"] = parallel
        count = len(group.steps)
        choices: list[dict[str, Any]] = []
        if failed is not None:
            choices.append({**_any_present(key, "failed", count), "Next": failed})
        choices.append({**_any_present(key, "warned", count), "Next": f"{first}.group-warned"})
        states[f"{first}.joined"] = {"Type": "Choice", "Choices": choices, "Default": nxt}
        states[f"{first}.group-warned"] = {"Type": "Pass", "Result": True, "ResultPath": "$.warned", "Next": nxt}
        return f"{first}.group"

    # ---- steps -----------------------------------------------------------------------------------

    def _step(self, states: dict[str, Any], step: Step, nxt: str, failed: str | None, branch: str | None) -> str:
        """Compile one step; its first state. In a parallel ``branch`` every path ends the branch
        with a small result (``ok``, ``warned``, ``skipped``, ``failed``)."""
        name = step.name

        def ending(label: str, sets_warned: bool = False) -> dict[str, Any]:
            if branch is not None:
                return {"Type": "Pass", "Result": {label: True}, "End": True}
            if sets_warned:
                return {"Type": "Pass", "Result": True, "ResultPath": "$.warned", "Next": nxt}
            return {"Type": "Pass", "Next": nxt}

        states[f"{name}.skipped"] = ending("skipped")
        if step.disabled:
            return f"{name}.skipped"
        success = nxt
        if branch is not None:
            states[f"{name}.ok"] = ending("ok")
            success = f"{name}.ok"
        catch: list[dict[str, Any]] = []
        if step.ignore_errors:
            states[f"{name}.warned"] = ending("warned", sets_warned=True)
            catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{name}.warned"}]
        elif failed is None or branch == "soft":
            states[f"{name}.failed"] = ending("failed") if branch else {"Type": "Pass", "Next": nxt}
            catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": f"{name}.failed"}]
        elif branch != "hard":
            catch = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failed}]
        entry = self._tasks(states, step, success, catch)
        return self._when(states, step, entry, ending)

    def _tasks(self, states: dict[str, Any], step: Step, success: str, catch: list[dict[str, Any]]) -> str:
        name = step.name
        run_id = f"$.runs.s{self.index[name]}"
        payload = {"execution_id.$": "$.execution_id", "step": name, "run_id.$": run_id}
        common: dict[str, Any] = {"ResultPath": None, **({"Catch": catch} if catch else {})}
        lambda_retry = {"ErrorEquals": LAMBDA_TRANSIENT, "IntervalSeconds": 1, "MaxAttempts": 3, "BackoffRate": 2.0}
        if step.is_sync:
            limit = min(step.timeout or SYNC_LIMIT_SECONDS, SYNC_LIMIT_SECONDS)
            task = {
                "Type": "Task",
                "Resource": LAMBDA_INVOKE,
                "Parameters": {
                    "FunctionName": self.targets.function_arn,
                    "Payload": {"op": "sync_step", **payload, "attempt.$": "$$.State.RetryCount"},
                },
                "TimeoutSeconds": limit + 15,
                "Retry": [lambda_retry, *_retry(step, SYNC_RETRYABLE)],
                **common,
                "Next": success,
            }
            states[name] = _drop_empty(task)
            return name
        states[f"{name}.start"] = {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {"FunctionName": self.targets.function_arn, "Payload": {"op": "start_step", **payload}},
            "Retry": [
                {"ErrorEquals": [INPUTS_PENDING], "IntervalSeconds": 2, "MaxAttempts": 15, "BackoffRate": 1.5},
                lambda_retry,
            ],
            **common,
            "Next": name,
        }
        task = {
            "Type": "Task",
            **self._run_target(step, run_id),
            **({"TimeoutSeconds": step.timeout} if step.timeout else {}),
            # a Batch job's attempts are the run's attempts (its retry strategy); an ECS task is one attempt
            "Retry": _retry(step, ["States.TaskFailed", "States.Timeout"]) if self.targets.runs_on == "ecs" else [],
            **common,
            "Next": success,
        }
        states[name] = _drop_empty(task)
        return f"{name}.start"

    def _run_target(self, step: Step, run_id: str) -> dict[str, Any]:
        """The Batch job or ECS task of a run, as the run executors define them: the container runs the
        runtime adapter for the run (job parameter ``run_id``, or the task's command ``--run <id>``)."""
        targets = self.targets
        definition = targets.definitions.get(step.name, f"hatchway-step-{step.name}")
        # the run's project leads its keys, and the task role reaches no others (engines.run_environment)
        environment = [
            {"Name": "HATCHWAY_PIPELINE_EXECUTION_ID", "Value.$": "$.execution_id"},
            {"Name": "HATCHWAY_RUN_PROJECT", "Value.$": "$.project_id"},
            {"Name": "HATCHWAY_LEGACY_RUN_KEYS", "Value": "off"},
        ]
        if targets.runs_on == "ecs":
            return {
                "Resource": ECS_SYNC,
                "Parameters": {
                    "Cluster": targets.cluster,
                    "TaskDefinition": definition,
                    "LaunchType": "FARGATE",
                    "StartedBy.$": run_id,
                    "NetworkConfiguration": {
                        "AwsvpcConfiguration": {
                            "Subnets": targets.subnets,
                            "SecurityGroups": targets.security_groups,
                            "AssignPublicIp": "DISABLED",
                        }
                    },
                    "Overrides": {
                        "ContainerOverrides": [
                            {
                                "Name": targets.container_name,
                                "Command.$": f"States.Array('--run', {run_id})",
                                "Environment": environment,
                            }
                        ]
                    },
                },
            }
        parameters: dict[str, Any] = {
            "JobName.$": run_id,
            "JobQueue": targets.job_queue,
            "JobDefinition": definition,
            "Parameters": {"run_id.$": run_id},
            "ContainerOverrides": {"Environment": environment},
        }
        if step.retry_count:
            parameters["RetryStrategy"] = {
                "Attempts": min(10, 1 + step.retry_count),
                "EvaluateOnExit": [{"OnExitCode": "1", "Action": "EXIT"}],  # a user error is not retried
            }
        if step.timeout:
            parameters["Timeout"] = {"AttemptDurationSeconds": max(60, step.timeout)}
        return {"Resource": BATCH_SYNC, "Parameters": parameters}

    def _when(self, states: dict[str, Any], step: Step, entry: str, ending: Any) -> str:
        """Guard ``entry`` with the step's trigger rules and conditions, if it has any."""
        name = step.name
        choices: list[dict[str, Any]] = []
        if step.trigger_time == TriggerTime.ON_BACK_TO_SUCCESS:
            choices.append({"Not": _previous_failed(), "Next": f"{name}.not-executed"})
        if step.trigger_time == TriggerTime.ON_FAILURE and step.run_only_on_first_failure:
            choices.append({**_previous_failed(), "Next": f"{name}.not-executed"})
        if choices:
            states[f"{name}.not-executed"] = ending("skipped")
        if step.trigger_conditions:
            rules = [_condition(c) for c in step.trigger_conditions]
            choices.append({"Not": rules[0] if len(rules) == 1 else {"And": rules}, "Next": f"{name}.skipped"})
        if not choices:
            return entry
        states[f"{name}.when"] = {"Type": "Choice", "Choices": choices, "Default": entry}
        return f"{name}.when"

    def _gate(self, states: dict[str, Any], step: Step, nxt: str, failed: str | None) -> str:
        name = step.name
        task: dict[str, Any] = {
            "Type": "Task",
            "Resource": LAMBDA_WAIT,
            "Parameters": {
                "FunctionName": self.targets.function_arn,
                "Payload": {
                    "op": "await_approval",
                    "execution_id.$": "$.execution_id",
                    "step": name,
                    "token.$": "$$.Task.Token",
                },
            },
            "ResultPath": None,
        }
        states[f"{name}.skipped"] = {"Type": "Pass", "Next": nxt}
        if step.disabled:
            return f"{name}.skipped"
        hooks = self.spec.section(TriggerTime.ON_WAIT_FOR_APPROVE)
        if not hooks:
            states[name] = {**task, "Next": nxt}
            entry = name
        else:
            hook_states: dict[str, Any] = {"hooks.done": {"Type": "Pass", "End": True}}
            hook_entry = self._section(hook_states, hooks, "hooks.done", None)
            waiting: dict[str, Any] = {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": name, "States": {name: {**task, "End": True}}},
                    {"StartAt": hook_entry, "States": hook_states},
                ],
                "ResultPath": None,
                "Next": nxt,
            }
            if failed is not None:
                waiting["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": failed}]
            states[f"{name}.waiting"] = waiting
            entry = f"{name}.waiting"
        if step.trigger_conditions:
            rules = [_condition(c) for c in step.trigger_conditions]
            rule = rules[0] if len(rules) == 1 else {"And": rules}
            states[f"{name}.when"] = {"Type": "Choice", "Choices": [{"Not": rule, "Next": f"{name}.skipped"}],
                                      "Default": entry}  # fmt: skip
            return f"{name}.when"
        return entry


def _outcome(value: str) -> dict[str, Any]:
    return {"Type": "Pass", "Result": value, "ResultPath": "$.outcome", "Next": "succeeded"}


def _retry(step: Step, errors: list[str]) -> list[dict[str, Any]]:
    if not step.retry_count:
        return []
    interval = max(1, step.retry_interval or 0)  # ASL's smallest interval is one second
    return [{"ErrorEquals": errors, "IntervalSeconds": interval, "MaxAttempts": step.retry_count, "BackoffRate": 1.0}]


def _previous_failed() -> dict[str, Any]:
    return {"Variable": "$.previous_status", "StringEquals": "FAILED"}


def _condition(condition: TriggerCondition) -> dict[str, Any]:
    """A trigger condition as a Choice rule over ``$.variables`` (a missing variable is empty)."""
    variable = f"$.variables.{condition.trigger_variable_key}"
    value = condition.trigger_variable_value
    if condition.trigger_condition in (Condition.VAR_IS, Condition.VAR_IS_NOT):
        rule: dict[str, Any] = {"Variable": variable, "StringEquals": value}
    else:
        escaped = value.replace("\\", "\\\\").replace("*", "\\*")
        rule = {"Variable": variable, "StringMatches": f"*{escaped}*"}
    present = {"And": [{"Variable": variable, "IsPresent": True}, rule]}
    if condition.trigger_condition in (Condition.VAR_IS, Condition.VAR_CONTAINS):
        return present
    return {"Not": present}


def _any_present(key: str, label: str, count: int) -> dict[str, Any]:
    rules = [{"Variable": f"{key}[{i}].{label}", "IsPresent": True} for i in range(count)]
    return rules[0] if len(rules) == 1 else {"Or": rules}


def _drop_empty(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if v != [] or k not in ("Retry", "Catch")}
