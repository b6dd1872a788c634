"""Pipelines on the embedded default, through the API in-process with a real worker pool.

Every step is a real run of a real process (``tests/actions/stage.py``), so what these tests see
is what a user sees: statuses, run records, parameters, logs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from hatchway.api import create_app
from hatchway.client import (
    Client,
    ConflictResponse,
    ForbiddenResponse,
    UserErrorResponse,
    ValidationErrorResponse,
)
from hatchway.server import LambdaContext, http_event
from hatchway.services import Services
from tests.conftest import inprocess_client
from tests.functional.stages import base, execute, execution, explain, finish, put, run_of, stage, statuses, step
from tests.helpers import ADMIN_TOKEN, wait_until


@pytest.fixture
def hw(client: Client) -> Client:
    client.register_action(stage())
    return client


# ---- data between steps -------------------------------------------------------------------------


def test_three_steps_pass_exports_and_results_forward(hw: Client) -> None:
    # Given extract -> transform (an async run) -> load (a sync action), each fed by the one before
    put(
        hw,
        "etl",
        variables=[{"key": "SOURCE", "value": "orders", "settable": True}],
        steps=[
            step("extract", "$SOURCE"),
            step("transform", "${steps.extract.exports.value}-${steps.extract.ret.items.1}"),
            step("load", "${steps.transform.ret.upper} ($$5)", sync_action="peek"),
        ],
    )
    # When it runs
    started = execute(hw, "etl")
    assert started["status"] in ("ENQUEUED", "INPROGRESS") and started["id"].startswith("pex_")
    final = finish(hw, "etl", started["id"])
    # Then each step received what the one before produced
    assert final["status"] == "SUCCESSFUL", explain(final)
    assert statuses(final) == {"extract": "SUCCESSFUL", "transform": "SUCCESSFUL", "load": "SUCCESSFUL"}
    assert run_of(hw, final, "extract")["parameters"]["value"] == "orders"
    transform = run_of(hw, final, "transform")
    assert transform["parameters"]["value"] == "orders!-ordersorders"
    load = run_of(hw, final, "load")
    assert load["mode"] == "sync" and load["invoked"] == "peek"
    assert load["parameters"]["value"] == "ORDERS!-ORDERSORDERS ($5)"
    assert load["ret"]["value"] == "ORDERS!-ORDERSORDERS ($5)"
    # and the steps ran one after another
    times = [(s["started_at"], s["finished_at"]) for s in final["steps"]]
    assert times[0][1] <= times[1][0] and times[1][1] <= times[2][0]


def test_a_reference_without_a_value_fails_the_step_clearly(hw: Client) -> None:
    put(
        hw,
        "missing",
        steps=[step("first"), step("second", "${steps.first.exports.nothing}"), step("third")],
    )
    final = finish(hw, "missing", execute(hw, "missing")["id"])
    assert statuses(final) == {"first": "SUCCESSFUL", "second": "FAILED", "third": "NOT_EXECUTED"}
    second = final["steps"][1]
    assert "${steps.first.exports.nothing} has no value" in second["status_reason"]


# ---- which steps run ------------------------------------------------------------------------------


def pipeline_with_sections(hw: Client, name: str, **main_fields: Any) -> None:
    put(
        hw,
        name,
        variables=[{"key": "MODE", "value": "ok", "settable": True}],
        steps=[
            step("work", parameters={"mode": "$MODE"}, **main_fields),
            step("after-work"),
            step("on-success", trigger_time="ON_SUCCESS"),
            step("on-failure", trigger_time="ON_FAILURE", run_only_on_first_failure=False),
            step("on-warning", trigger_time="ON_WARNING"),
            step("on-terminate", trigger_time="ON_TERMINATE"),
        ],
    )


def test_on_success_steps_run_after_a_success(hw: Client) -> None:
    pipeline_with_sections(hw, "sections")
    final = finish(hw, "sections", execute(hw, "sections")["id"])
    assert final["status"] == "SUCCESSFUL", explain(final)
    assert statuses(final) == {
        "work": "SUCCESSFUL",
        "after-work": "SUCCESSFUL",
        "on-success": "SUCCESSFUL",
        "on-failure": "NOT_EXECUTED",
        "on-warning": "NOT_EXECUTED",
        "on-terminate": "NOT_EXECUTED",
    }


def test_on_failure_steps_run_after_a_failure(hw: Client) -> None:
    pipeline_with_sections(hw, "sections")
    final = finish(hw, "sections", execute(hw, "sections", MODE="fail")["id"])
    assert final["status"] == "FAILED", explain(final)
    assert statuses(final) == {
        "work": "FAILED",
        "after-work": "NOT_EXECUTED",
        "on-success": "NOT_EXECUTED",
        "on-failure": "SUCCESSFUL",
        "on-warning": "NOT_EXECUTED",
        "on-terminate": "NOT_EXECUTED",
    }
    assert "failed on purpose" in final["steps"][0]["status_reason"]
    assert run_of(hw, final, "work")["error"]["kind"] == "user"


def test_ignored_errors_give_a_warning_and_run_on_warning_steps(hw: Client) -> None:
    pipeline_with_sections(hw, "lenient", ignore_errors=True)
    final = finish(hw, "lenient", execute(hw, "lenient", MODE="fail")["id"])
    assert final["status"] == "WARNING", explain(final)
    assert statuses(final) == {
        "work": "WARNING",
        "after-work": "SUCCESSFUL",
        "on-success": "NOT_EXECUTED",
        "on-failure": "NOT_EXECUTED",
        "on-warning": "SUCCESSFUL",
        "on-terminate": "NOT_EXECUTED",
    }


def test_trigger_conditions_skip_steps(hw: Client) -> None:
    put(
        hw,
        "conditional",
        variables=[{"key": "ENV", "value": "staging", "settable": True}],
        steps=[
            step(
                "prod-only",
                trigger_conditions=[
                    {"trigger_condition": "VAR_IS", "trigger_variable_key": "ENV", "trigger_variable_value": "prod"}
                ],
            ),  # fmt: skip
            step(
                "not-prod",
                trigger_conditions=[
                    {"trigger_condition": "VAR_IS_NOT", "trigger_variable_key": "ENV", "trigger_variable_value": "prod"}
                ],
            ),  # fmt: skip
            step("off", disabled=True),
        ],
    )
    staging = finish(hw, "conditional", execute(hw, "conditional")["id"])
    assert statuses(staging) == {"prod-only": "SKIPPED", "not-prod": "SUCCESSFUL", "off": "SKIPPED"}
    assert staging["status"] == "SUCCESSFUL"
    prod = finish(hw, "conditional", execute(hw, "conditional", ENV="prod")["id"])
    assert statuses(prod) == {"prod-only": "SUCCESSFUL", "not-prod": "SKIPPED", "off": "SKIPPED"}


def test_first_failure_and_back_to_success_follow_the_previous_execution(hw: Client) -> None:
    put(
        hw,
        "history",
        variables=[{"key": "MODE", "value": "ok", "settable": True}],
        steps=[
            step("work", parameters={"mode": "$MODE"}),
            step("page-someone", trigger_time="ON_FAILURE", run_only_on_first_failure=True),
            step("log-failure", trigger_time="ON_FAILURE", run_only_on_first_failure=False),
            step("all-clear", trigger_time="ON_BACK_TO_SUCCESS"),
        ],
    )
    first = finish(hw, "history", execute(hw, "history", MODE="fail")["id"])
    assert statuses(first)["page-someone"] == "SUCCESSFUL"
    second = finish(hw, "history", execute(hw, "history", MODE="fail")["id"])
    assert statuses(second)["page-someone"] == "NOT_EXECUTED"
    assert statuses(second)["log-failure"] == "SUCCESSFUL"
    recovered = finish(hw, "history", execute(hw, "history")["id"])
    assert statuses(recovered)["all-clear"] == "SUCCESSFUL"
    steady = finish(hw, "history", execute(hw, "history")["id"])
    assert statuses(steady)["all-clear"] == "NOT_EXECUTED"


# ---- parallel groups ------------------------------------------------------------------------------


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"])


def test_parallel_steps_run_at_the_same_time(hw: Client) -> None:
    put(
        hw,
        "fan-out",
        steps=[
            step("left", parameters={"mode": "sleep", "seconds": "1.5"}, run_next="IN_SOFT_PARALLEL"),
            step("right", parameters={"mode": "sleep", "seconds": "1.5"}),
            step("join"),
        ],
    )
    final = finish(hw, "fan-out", execute(hw, "fan-out")["id"])
    assert final["status"] == "SUCCESSFUL", explain(final)
    left, right = run_of(hw, final, "left"), run_of(hw, final, "right")
    assert overlap(left, right), "the two parallel steps' runs should overlap in time"
    join = run_of(hw, final, "join")
    assert join["started_at"] >= max(left["finished_at"], right["finished_at"])


def test_soft_parallel_lets_siblings_finish_after_a_failure(hw: Client) -> None:
    put(
        hw,
        "soft",
        steps=[
            step("breaks", parameters={"mode": "fail"}, run_next="IN_SOFT_PARALLEL"),
            step("keeps-going", parameters={"mode": "sleep", "seconds": "2"}),
            step("next"),
        ],
    )
    final = finish(hw, "soft", execute(hw, "soft")["id"])
    assert final["status"] == "FAILED", explain(final)
    assert statuses(final) == {"breaks": "FAILED", "keeps-going": "SUCCESSFUL", "next": "NOT_EXECUTED"}
    assert run_of(hw, final, "keeps-going")["status"] == "SUCCESSFUL"


def test_hard_parallel_stops_siblings_after_a_failure(hw: Client) -> None:
    put(
        hw,
        "hard",
        steps=[
            step("breaks", parameters={"mode": "fail"}, run_next="IN_HARD_PARALLEL"),
            step("long", parameters={"mode": "sleep", "seconds": "60"}),
            step("next"),
        ],
    )
    final = finish(hw, "hard", execute(hw, "hard")["id"], timeout=40)
    assert final["status"] == "FAILED", explain(final)
    assert statuses(final) == {"breaks": "FAILED", "long": "TERMINATED", "next": "NOT_EXECUTED"}
    assert run_of(hw, final, "long")["status"] == "TERMINATED"


# ---- approval and termination -------------------------------------------------------------------


def test_an_approval_gate_waits_and_then_continues(hw: Client) -> None:
    put(
        hw,
        "gated",
        steps=[
            step("build"),
            {"name": "approve-deploy", "type": "WAIT_FOR_APPROVE", "comment": "deploy to production?"},
            step("deploy"),
            step("tell-approvers", trigger_time="ON_WAIT_FOR_APPROVE"),
        ],
    )
    started = execute(hw, "gated")
    path = f"{base(hw)}/gated/executions/{started['id']}"

    # Given the execution reached its gate
    def waiting() -> dict[str, Any] | None:
        body = execution(hw, "gated", started["id"])
        return body if body["status"] == "WAITING_FOR_APPROVE" else None

    body = wait_until(waiting, 30, what="the gate")
    assert statuses(body)["approve-deploy"] == "WAITING_FOR_APPROVE"
    assert statuses(body)["deploy"] == "ENQUEUED"
    assert body["steps"][1]["status_reason"] == "deploy to production?"
    # the approvers are told while it waits, and it keeps waiting
    wait_until(lambda: statuses(execution(hw, "gated", started["id"]))["tell-approvers"] == "SUCCESSFUL", 30)
    assert execution(hw, "gated", started["id"])["status"] == "WAITING_FOR_APPROVE"
    # When it is approved
    approved = hw.request("POST", f"{path}/approve")
    assert approved["status"] == "INPROGRESS"
    assert approved["steps"][1]["approved_by"] == "admin"
    # Then it goes on to the end, and cannot be approved twice
    final = finish(hw, "gated", started["id"])
    assert final["status"] == "SUCCESSFUL", explain(final)
    assert statuses(final)["deploy"] == "SUCCESSFUL"
    with pytest.raises(ConflictResponse):
        hw.request("POST", f"{path}/approve")


def test_approve_refuses_an_execution_that_does_not_wait(hw: Client) -> None:
    put(hw, "plain", steps=[step("only", parameters={"mode": "sleep", "seconds": "5"})])
    started = execute(hw, "plain")
    with pytest.raises(ConflictResponse) as err:
        hw.request("POST", f"{base(hw)}/plain/executions/{started['id']}/approve")
    assert "not waiting for approval" in err.value.message


def test_terminate_stops_the_running_step_and_runs_on_terminate_steps(hw: Client) -> None:
    put(
        hw,
        "stoppable",
        steps=[
            step("long", parameters={"mode": "sleep", "seconds": "60"}),
            step("after"),
            step("on-terminate", trigger_time="ON_TERMINATE"),
            step("on-failure", trigger_time="ON_FAILURE", run_only_on_first_failure=False),
        ],
    )
    started = execute(hw, "stoppable")
    path = f"{base(hw)}/stoppable/executions/{started['id']}"
    wait_until(lambda: statuses(execution(hw, "stoppable", started["id"]))["long"] == "INPROGRESS", 30)
    # When it is terminated mid-step
    answer = hw.request("POST", f"{path}/terminate")
    assert answer["status"] == "TERMINATING"
    # Then the running step is stopped, the rest is not executed, and the ON_TERMINATE step runs
    final = finish(hw, "stoppable", started["id"], timeout=40)
    assert final["status"] == "TERMINATED", explain(final)
    assert statuses(final) == {
        "long": "TERMINATED",
        "after": "NOT_EXECUTED",
        "on-terminate": "SUCCESSFUL",
        "on-failure": "NOT_EXECUTED",
    }
    assert run_of(hw, final, "long")["status"] == "TERMINATED"
    with pytest.raises(ConflictResponse):
        hw.request("POST", f"{path}/terminate")


def test_terminate_while_waiting_for_approval(hw: Client) -> None:
    put(
        hw,
        "gated-stop",
        steps=[
            {"name": "gate", "type": "WAIT_FOR_APPROVE"},
            step("deploy"),
            step("cleanup", trigger_time="ON_TERMINATE"),
        ],
    )
    started = execute(hw, "gated-stop")
    wait_until(lambda: execution(hw, "gated-stop", started["id"])["status"] == "WAITING_FOR_APPROVE", 30)
    hw.request("POST", f"{base(hw)}/gated-stop/executions/{started['id']}/terminate")
    final = finish(hw, "gated-stop", started["id"])
    assert final["status"] == "TERMINATED", explain(final)
    assert statuses(final) == {"gate": "TERMINATED", "deploy": "NOT_EXECUTED", "cleanup": "SUCCESSFUL"}


# ---- variables ------------------------------------------------------------------------------------


def test_settable_variables_may_be_overridden_and_others_may_not(hw: Client) -> None:
    put(
        hw,
        "vars",
        variables=[
            {"key": "TARGET", "value": "staging", "settable": True, "description": "where to deploy"},
            {"key": "REGION", "value": "eu-west-1"},
        ],
        steps=[step("show", "$TARGET@${REGION}")],
    )
    overridden = finish(hw, "vars", execute(hw, "vars", TARGET="production")["id"])
    assert overridden["variables"] == {"TARGET": "production", "REGION": "eu-west-1"}
    assert run_of(hw, overridden, "show")["parameters"]["value"] == "production@eu-west-1"
    default = finish(hw, "vars", execute(hw, "vars")["id"])
    assert run_of(hw, default, "show")["parameters"]["value"] == "staging@eu-west-1"
    # Buddy's list form is accepted too
    listed = hw.request("POST", f"{base(hw)}/vars/executions", json={"variables": [{"key": "TARGET", "value": "qa"}]})
    assert listed["variables"]["TARGET"] == "qa"
    with pytest.raises(ValidationErrorResponse) as err:
        execute(hw, "vars", REGION="us-east-1")
    assert err.value.details[0]["loc"] == ["body", "variables", "REGION"]
    assert "not settable" in err.value.message
    with pytest.raises(ValidationErrorResponse) as err:
        execute(hw, "vars", NOPE="x")
    assert err.value.details[0]["loc"] == ["body", "variables", "NOPE"]


def test_an_idempotency_key_starts_one_execution_however_often_it_is_sent(hw: Client) -> None:
    put(
        hw,
        "keyed",
        variables=[{"key": "TARGET", "value": "staging", "settable": True}],
        steps=[step("show", "$TARGET")],
    )
    path, key = f"{base(hw)}/keyed/executions", {"Idempotency-Key": "deploy-42"}
    # Given a start with a key, When the client sends it again (a retry after a lost answer)
    first = hw.request("POST", path, json={"variables": {"TARGET": "prod"}}, headers=key)
    again = hw.request("POST", path, json={"variables": {"TARGET": "prod"}}, headers=key)
    # Then both answers name the one execution, and only one was started
    assert again["id"] == first["id"] and again["variables"] == {"TARGET": "prod"}
    listed = hw.request("GET", path)["items"]
    assert [e["id"] for e in listed] == [first["id"]]
    # and the same key with other overrides is a conflict, starting nothing
    with pytest.raises(ConflictResponse):
        hw.request("POST", path, json={"variables": {"TARGET": "qa"}}, headers=key)
    # while another key, or none, starts another execution each time
    other = hw.request("POST", path, json={"variables": {"TARGET": "prod"}}, headers={"Idempotency-Key": "deploy-43"})
    plain = [execute(hw, "keyed", TARGET="prod")["id"] for _ in range(2)]
    assert len({first["id"], other["id"], *plain}) == 4
    assert len(hw.request("GET", path)["items"]) == 4
    assert finish(hw, "keyed", first["id"])["status"] == "SUCCESSFUL"
    # A key is scoped to its pipeline: the same key on another pipeline starts that one
    put(hw, "keyed-too", steps=[step("show")])
    elsewhere = hw.request("POST", f"{base(hw)}/keyed-too/executions", json={}, headers=key)
    assert elsewhere["id"] != first["id"] and elsewhere["pipeline"] == "keyed-too"


def test_encrypted_variables_reach_only_the_step(hw: Client, settings: Any) -> None:
    secret = "hunter2-very-secret"
    put(
        hw,
        "secretive",
        variables=[{"key": "TOKEN", "value": secret, "encrypted": True, "settable": True}],
        steps=[step("use", parameters={"#token": "$TOKEN"})],
    )
    # the definition never shows the value, and the database never holds it
    shown = hw.request("GET", f"{base(hw)}/secretive")
    assert shown["variables"][0]["value"] == "[hidden]"
    assert secret.encode() not in settings.db_path.read_bytes()
    final = finish(hw, "secretive", execute(hw, "secretive")["id"])
    assert final["status"] == "SUCCESSFUL", explain(final)
    assert final["variables"]["TOKEN"] == "[hidden]"
    run = run_of(hw, final, "use")
    # the action received the plaintext (it reports its length) but nothing shows it
    assert run["ret"]["token_length"] == len(secret)
    assert run["parameters"]["#token"] == "[hidden]"
    logs = [e["msg"] for e in hw.logs(run["id"])["items"]]
    assert "the token is [hidden]" in logs
    assert secret not in repr(final) + repr(run) + repr(logs)
    # a settable secret is encrypted on receipt as well
    other = "another-secret-value"
    again = finish(hw, "secretive", execute(hw, "secretive", TOKEN=other)["id"])
    assert run_of(hw, again, "use")["ret"]["token_length"] == len(other)
    assert other.encode() not in settings.db_path.read_bytes()


def test_a_plain_parameter_may_not_use_an_encrypted_variable(hw: Client) -> None:
    with pytest.raises(ValidationErrorResponse) as err:
        put(
            hw,
            "leaky",
            variables=[{"key": "TOKEN", "value": "x", "encrypted": True}],
            steps=[step("use", "$TOKEN")],
        )
    assert err.value.details[0]["loc"] == ["body", "steps", 0, "parameters", "value"]


def test_a_ciphertext_of_another_environment_is_refused(hw: Client) -> None:
    foreign = hw.request(
        "POST", f"/v1/projects/{hw.project}/encrypt", json={"value": "x"}, headers={"x-hatchway-environment": "prod"}
    )["ciphertext"]
    with pytest.raises(UserErrorResponse):
        put(hw, "foreign", variables=[{"key": "K", "value": foreign, "encrypted": True}], steps=[step("a")])


# ---- retries and timeouts ---------------------------------------------------------------------------


def test_a_steps_retries_and_timeout_apply_to_its_run(hw: Client) -> None:
    put(
        hw,
        "flaky",
        steps=[
            step("recovers", parameters={"mode": "crash_until", "seconds": "3"}, retry_count=2, retry_interval=0),
            step("too-slow", parameters={"mode": "sleep", "seconds": "30"}, timeout=1, ignore_errors=True),
        ],
    )
    final = finish(hw, "flaky", execute(hw, "flaky")["id"])
    assert final["status"] == "WARNING", explain(final)
    recovers = run_of(hw, final, "recovers")
    assert (recovers["status"], recovers["attempt"], recovers["max_attempts"]) == ("SUCCESSFUL", 3, 3)
    assert final["steps"][0]["attempt"] == 3
    too_slow = run_of(hw, final, "too-slow")
    assert too_slow["status"] == "FAILED" and too_slow["error"]["kind"] == "timeout"
    assert statuses(final)["too-slow"] == "WARNING"


def test_a_sync_step_is_retried_by_the_pipeline(hw: Client) -> None:
    put(
        hw,
        "sync-retry",
        steps=[step("ask", parameters={"mode": "crash"}, sync_action="peek", retry_count=1, retry_interval=0)],
    )
    final = finish(hw, "sync-retry", execute(hw, "sync-retry")["id"])
    assert final["status"] == "FAILED", explain(final)
    assert final["steps"][0]["attempt"] == 2
    assert run_of(hw, final, "ask")["error"]["kind"] == "application"


def test_retry_interval_delays_each_retry_by_the_same_interval(hw: Client) -> None:
    # Given an async step crashing twice and a sync step crashing once, each retried after 1 s
    put(
        hw,
        "spaced",
        steps=[
            step("async", parameters={"mode": "crash_until", "seconds": "3"}, retry_count=2, retry_interval=1),
            step("sync", parameters={"mode": "crash"}, sync_action="peek", retry_count=1, retry_interval=1,
                 ignore_errors=True),
        ],
    )  # fmt: skip
    final = finish(hw, "spaced", execute(hw, "spaced")["id"], timeout=90)
    assert final["status"] == "WARNING", explain(final)
    # Then the async step's attempts each began at least 1 s after the previous one, and its run
    # waits the step's interval, fixed (Buddy's delay; a run's own retries double): 1 s each time
    async_run = run_of(hw, final, "async")
    entries = hw.logs(async_run["id"])["items"]
    starts = [e["ts"] for e in entries if e["msg"].startswith("stage async attempt")]
    assert len(starts) == 3, entries
    assert starts[1] - starts[0] >= 1000 and starts[2] - starts[1] >= 1000, starts
    # and the sync step's second call (a new run) began at least 1 s after the first ended
    sync_runs = [r for r in hw.list_runs(action="stage", limit=100)["items"] if r["parameters"]["value"] == "sync"]
    assert len(sync_runs) == 2
    first, second = sorted(sync_runs, key=lambda r: r["created_at"])
    assert iso_ms(second["started_at"]) - iso_ms(first["finished_at"]) >= 1000


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# ---- definitions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "loc", "words"),
    [
        ([{"name": "a", "action": "nope"}], ["body", "steps", 0, "action"], "no action nope"),
        ([{"name": "a", "action": "stage", "version": 9}], ["body", "steps", 0, "action"], "version 9"),
        ([{"name": "a", "action": "stage", "sync_action": "nope"}], ["body", "steps", 0, "sync_action"], "nope"),
        ([{"name": "a", "action": "stage", "parameters": {"bogus": "1"}}], ["body", "steps", 0, "parameters", "bogus"],
         "no parameter"),
        ([step("a", "${steps.a.ret.x}")], ["body", "steps", 0, "parameters", "value"], "cycle"),
        ([step("a", "${steps.b.ret.x}"), step("b", "${steps.a.ret.x}")], ["body", "steps", 0, "parameters", "value"],
         "cycle"),
        ([step("a", run_next="IN_SOFT_PARALLEL"), step("b", "${steps.a.ret.x}")],
         ["body", "steps", 1, "parameters", "value"], "does not finish before"),
        ([step("a", "$UNDECLARED")], ["body", "steps", 0, "parameters", "value"], "no variable UNDECLARED"),
        ([step("a"), step("a")], ["body", "steps", 1, "name"], "named twice"),
        ([step("a", run_only_on_first_failure=True)], ["body", "steps", 0, "run_only_on_first_failure"], "ON_FAILURE"),
        ([step("a", trigger_time="ON_FAILURE")], ["body", "steps", 0, "run_only_on_first_failure"], "needs"),
        ([{"name": "a", "execute_commands": ["ls"]}], ["body", "steps", 0, "docker_image_name"], "needs"),
        ([{"name": "a"}], ["body", "steps", 0, "action"], "runs an action"),
        ([{"name": "a", "docker_image_name": "alpine", "execute_commands": ["ls"]}],
         ["body", "steps", 0, "docker_image_name"], "container executor"),
        ([{"name": "g", "type": "WAIT_FOR_APPROVE", "action": "stage"}], ["body", "steps", 0, "action"], "gate"),
        ([step("a", trigger_conditions=[{"trigger_condition": "VAR_IS", "trigger_variable_key": "X"}])],
         ["body", "steps", 0, "trigger_conditions", 0, "trigger_variable_key"], "no pipeline variable X"),
        ([step("hook", trigger_time="ON_WAIT_FOR_APPROVE")], ["body", "steps", 0, "trigger_time"], "no WAIT_FOR"),
        ([{"name": "a b", "action": "stage"}], ["body", "steps", 0, "name"], "step name"),
        ([{"name": "a", "action": "stage", "trigger_time": "SOMETIMES"}], ["body", "steps", 0, "trigger_time"], ""),
        ([{"name": "a", "action": "stage", "colour": "red"}], ["body", "steps", 0, "colour"], "unknown field"),
        ([], ["body", "steps"], ""),
    ],
)  # fmt: skip
def test_invalid_definitions_are_refused_naming_the_field(
    hw: Client, steps: list[dict[str, Any]], loc: list[Any], words: str
) -> None:
    with pytest.raises(ValidationErrorResponse) as err:
        put(hw, "invalid", steps=steps)
    assert err.value.details[0]["loc"] == loc
    assert words in err.value.message
    with pytest.raises(Exception, match="404"):
        hw.request("GET", f"{base(hw)}/invalid")


def test_definitions_are_versioned_and_an_identical_put_is_a_no_op(hw: Client) -> None:
    definition = {
        "description": "nightly",
        "variables": [{"key": "TOKEN", "value": "s3cret-token", "encrypted": True}],
        "steps": [step("only", parameters={"#token": "$TOKEN"})],
    }
    first = hw.request("PUT", f"{base(hw)}/nightly", json=definition)
    assert first["version"] == 1 and first["name"] == "nightly"
    again = hw.request("PUT", f"{base(hw)}/nightly", json=definition)
    assert (again["version"], again["digest"]) == (1, first["digest"])
    # what GET answers can be PUT back as is: [hidden] keeps the current secret
    shown = hw.request("GET", f"{base(hw)}/nightly")
    echoed = {k: shown[k] for k in ("description", "variables", "steps")}
    assert hw.request("PUT", f"{base(hw)}/nightly", json=echoed)["version"] == 1
    changed = hw.request("PUT", f"{base(hw)}/nightly", json={**definition, "description": "nightly, at two"})
    assert changed["version"] == 2
    assert hw.request("GET", f"{base(hw)}/nightly", params={"version": 1})["description"] == "nightly"
    listed = hw.request("GET", base(hw))
    assert [p["name"] for p in listed["items"]] == ["nightly"]
    hw.request("DELETE", f"{base(hw)}/nightly")
    assert hw.request("GET", base(hw))["items"] == []


def test_a_step_view_answers_its_last_execution_status(hw: Client, services: Services) -> None:
    put(hw, "viewed", steps=[step("first"), step("second", parameters={"mode": "fail"})])
    view = hw.request("GET", f"{base(hw)}/viewed/steps/second")
    assert view["last_execution_status"] == "INITIAL"
    # the links are absolute, at the scheme and host the request came to
    assert view["url"] == f"http://hatchway.local{base(hw)}/viewed/steps/second"
    # html_url is the step's page in the console (Buddy's "web URL to view this object"), and the
    # pipeline is Buddy's short pipeline view, with its own links
    assert view["html_url"] == "http://hatchway.local/ui/#/pipelines/viewed/steps/second"
    assert view["pipeline"] == {"name": "viewed", "version": 1, "url": f"http://hatchway.local{base(hw)}/viewed",
                                "html_url": "http://hatchway.local/ui/#/pipelines/viewed"}  # fmt: skip
    assert view["type"] == "ACTION" and view["trigger_time"] == "ON_EVERY_EXECUTION"
    # an action step shows no container fields
    assert view["parameters"] == {"value": "second", "mode": "fail"}
    assert not {"execute_commands", "setup_commands", "variables"} & view.keys()
    finish(hw, "viewed", execute(hw, "viewed")["id"])
    assert hw.request("GET", f"{base(hw)}/viewed/steps/second")["last_execution_status"] == "FAILED"
    assert hw.request("GET", f"{base(hw)}/viewed/steps/first")["last_execution_status"] == "SUCCESSFUL"
    # behind API Gateway on a named stage (the first segment of the path): its scheme, domain and stage
    path = f"{base(hw)}/viewed/steps/first"
    auth = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())]
    event = http_event("GET", f"/prod{path}", "", auth, b"", scheme="https")
    event["requestContext"].update(domainName="abc123.execute-api.eu-west-1.amazonaws.com", stage="prod")
    answer = create_app(services).resolve(event, LambdaContext())
    via_api = json.loads(answer["body"])
    assert via_api["url"] == f"https://abc123.execute-api.eu-west-1.amazonaws.com/prod{path}"
    assert (
        via_api["html_url"]
        == "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/ui/#/pipelines/viewed/steps/first"
    )


def test_a_step_view_names_its_last_status_as_buddy_does(hw: Client) -> None:
    # Given a step whose failure is ignored (the execution ends WARNING)
    put(hw, "tolerant", steps=[step("shaky", parameters={"mode": "fail"}, ignore_errors=True)])
    final = finish(hw, "tolerant", execute(hw, "tolerant")["id"])
    assert final["status"] == "WARNING", explain(final)
    # Then its step view says FAILED: Buddy's last_execution_status has no WARNING
    assert hw.request("GET", f"{base(hw)}/tolerant/steps/shaky")["last_execution_status"] == "FAILED"


def test_starting_an_execution_answers_202_with_its_location(hw: Client) -> None:
    put(hw, "located", steps=[step("only")])
    response = hw._http.post(f"{base(hw)}/located/executions", json={})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "ENQUEUED"
    assert response.headers["Location"] == f"{base(hw)}/located/executions/{body['id']}"
    assert execution(hw, "located", body["id"])["id"] == body["id"]


def test_pipelines_need_the_actions_scopes_and_executions_the_runs_scopes(hw: Client, services: Services) -> None:
    put(hw, "scoped", steps=[step("only")])

    def as_token(*scopes: str) -> Client:
        return inprocess_client(services, hw.create_token(list(scopes), project=hw.project)["token"])

    # an actions:read token reads definitions but cannot change them
    with as_token("actions:read") as reader:
        assert reader.request("GET", f"{base(hw)}/scoped")["name"] == "scoped"
        with pytest.raises(ForbiddenResponse) as refused:
            reader.request("PUT", f"{base(hw)}/scoped", json={"steps": [step("other")]})
        assert refused.value.status_code == 403 and "actions:write" in str(refused.value)
    # a runs:read token reads executions but cannot start one
    with as_token("runs:read", "actions:read") as watcher:
        assert watcher.request("GET", f"{base(hw)}/scoped/executions")["items"] == []
        with pytest.raises(ForbiddenResponse) as refused:
            watcher.request("POST", f"{base(hw)}/scoped/executions", json={})
        assert refused.value.status_code == 403 and "runs:write" in str(refused.value)
    # the write scopes are enough
    with as_token("runs:write") as runner:
        assert execute(runner, "scoped")["status"] == "ENQUEUED"
    assert hw.request("GET", f"{base(hw)}/scoped")["version"] == 1


def test_executions_are_listed_newest_first_and_filtered(hw: Client) -> None:
    put(hw, "listed", variables=[{"key": "MODE", "value": "ok", "settable": True}],
        steps=[step("a", parameters={"mode": "$MODE"})])  # fmt: skip
    ok = finish(hw, "listed", execute(hw, "listed")["id"])
    failed = finish(hw, "listed", execute(hw, "listed", MODE="fail")["id"])
    page = hw.request("GET", f"{base(hw)}/listed/executions")
    assert [e["id"] for e in page["items"]] == [failed["id"], ok["id"]]
    only_failed = hw.request("GET", f"{base(hw)}/listed/executions", params={"status": "FAILED"})
    assert [e["id"] for e in only_failed["items"]] == [failed["id"]]
    first = hw.request("GET", f"{base(hw)}/listed/executions", params={"limit": 1})
    second = hw.request("GET", f"{base(hw)}/listed/executions", params={"limit": 1, "cursor": first["next"]})
    assert [e["id"] for e in second["items"]] == [ok["id"]] and second["next"] is None


def test_another_environment_does_not_see_the_pipeline(hw: Client) -> None:
    put(hw, "private", steps=[step("a")])
    with pytest.raises(Exception, match="404"):
        hw.request("GET", f"{base(hw)}/private", headers={"x-hatchway-environment": "production"})
