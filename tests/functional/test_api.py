"""The HTTP API of API.md, exercised through the Python client - in-process and against a real server."""

from __future__ import annotations

import os
import time

import pytest

from hatchway.client import (
    ApplicationErrorResponse,
    Client,
    ConflictResponse,
    NotFoundResponse,
    PayloadTooLargeResponse,
    TimeoutResponse,
    UserErrorResponse,
    ValidationErrorResponse,
)
from tests.functional.actions import behave
from tests.helpers import processes_with, wait_until

ERROR_KEYS = {"status", "error", "code", "message"}


# ---- sync actions --------------------------------------------------------------------------


def test_sync_success_answers_json_and_records_a_run(hw: Client) -> None:
    hw.register_action(behave())
    answer = hw.call_sync("behave", "check", {"who": "ada", "behaviour": "ok"})
    assert set(answer) == {"run_id", "status", "ret", "exports", "os", "duration_ms"}
    assert answer["status"] == "SUCCESSFUL"
    assert answer["ret"]["echo"] == {"behaviour": "ok", "who": "ada"}
    assert answer["ret"]["cwd_is_data_dir"] is True
    assert answer["ret"]["env_has_params"] is False  # parameters never travel in the environment
    assert [e["msg"] for e in answer["os"]] == ["starting check"]
    run = hw.get_run(answer["run_id"])
    assert (run["mode"], run["invoked"], run["status"]) == ("sync", "check", "SUCCESSFUL")
    assert run["attempt"] == 1 and run["finished_at"] and run["duration_ms"] is not None


def test_sync_user_error_is_400_with_the_actions_message(hw: Client) -> None:
    hw.register_action(behave())
    with pytest.raises(UserErrorResponse) as caught:
        hw.call_sync("behave", "check", {"behaviour": "user_error"})
    body = caught.value.body
    assert set(body) >= ERROR_KEYS and body["error"] == "User error" and body["code"] == 400
    # the message is the last stderr lines (here the progress line and the error), traces cut
    assert body["message"].splitlines()[-1] == "the database password is wrong"
    assert body["runId"].startswith("run_")
    assert hw.get_run(body["runId"])["status"] == "FAILED"


def test_sync_application_error_hides_internals(hw: Client) -> None:
    hw.register_action(behave())
    with pytest.raises(ApplicationErrorResponse) as caught:
        hw.call_sync("behave", "check", {"behaviour": "app_error"})
    body = caught.value.body
    assert body["error"] == "Application error" and body["code"] == 500
    assert body["exceptionId"].startswith("exc_") and body["exceptionId"] in body["message"]
    assert "/srv" not in body["message"] and "exit code" not in body["message"]
    run = hw.get_run(body["runId"])
    assert run["status"] == "FAILED" and run["error"]["exceptionId"] == body["exceptionId"]


def test_sync_invalid_json_is_an_application_error(hw: Client) -> None:
    hw.register_action(behave())
    with pytest.raises(ApplicationErrorResponse) as caught:
        hw.call_sync("behave", "check", {"behaviour": "invalid_json"})
    assert caught.value.run_id and caught.value.exception_id


@pytest.mark.parametrize("code", ["2", "127"])
def test_other_exit_codes_are_application_errors(hw: Client, code: str) -> None:
    hw.register_action(behave())
    with pytest.raises(ApplicationErrorResponse):
        hw.call_sync("behave", "check", {"behaviour": "exit", "code": code})


def test_sync_timeout_answers_504_at_the_limit_and_leaves_nothing_behind(hw: Client) -> None:
    hw.register_action(behave())
    marker = f"{300 + os.getpid() % 97}.{int(time.time() * 1000) % 100000}"
    started = time.monotonic()
    with pytest.raises(TimeoutResponse) as caught:
        hw.call_sync("behave", "check", {"behaviour": "sleep_tree", "seconds": marker}, timeout_seconds=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5
    assert caught.value.body["error"] == "Timeout" and caught.value.run_id
    wait_until(lambda: not processes_with(f"sleep {marker}"), timeout=5, what="the action's processes to end")


def test_undeclared_sync_action_is_404(hw: Client) -> None:
    hw.register_action(behave())
    with pytest.raises(NotFoundResponse):
        hw.call_sync("behave", "notDeclared")
    with pytest.raises(NotFoundResponse):
        hw.call_sync("behave", "run")


def test_camel_case_sync_action(hw: Client) -> None:
    hw.register_action(behave())
    assert hw.call_sync("behave", "testConnection")["status"] == "SUCCESSFUL"


# ---- async runs ----------------------------------------------------------------------------


def test_async_run_records_ret_exports_and_logs(hw: Client) -> None:
    hw.register_action(behave())
    run = hw.start_run("behave", {"who": "grace"}, external_user_id="user-7")
    assert run["status"] == "ENQUEUED" and run["mode"] == "async" and run["invoked"] == "run"
    assert run["external_user_id"] == "user-7"
    final = hw.wait(run["id"], timeout=20)
    assert final["status"] == "SUCCESSFUL"
    assert final["ret"]["echo"] == {"behaviour": "ok", "who": "grace"}
    assert final["exports"] == {"attempt": 1, "action": "run"}
    assert [(e["k"], e["msg"]) for e in final["os"]] == [("stderr", "starting run"), ("stdout", "working on it")]
    logs = hw.logs(run["id"])
    assert [e["seq"] for e in logs["items"]] == [1, 2] and logs["next"] is None
    assert all(isinstance(e["ts"], int) for e in logs["items"])


def test_log_pages_and_follow(hw: Client) -> None:
    hw.register_action(behave())
    run = hw.start_run("behave", {"behaviour": "lines", "count": "2500"})
    assert hw.wait(run["id"], timeout=30)["status"] == "SUCCESSFUL"
    first = hw.logs(run["id"], limit=1000)
    assert len(first["items"]) == 1000 and first["next"] == "1000"
    followed = list(hw.follow_logs(run["id"]))
    assert [e["msg"] for e in followed if e["k"] == "stdout"] == [f"line {i}" for i in range(2500)]
    assert len(hw.get_run(run["id"])["os"]) == 100  # the record carries the head and the tail


def test_application_errors_are_retried_user_errors_are_not(hw: Client) -> None:
    hw.register_action(behave(retry={"count": 2, "interval_seconds": 0}))
    flaky = hw.start_run("behave", {"behaviour": "fail_until", "succeed_on": "3"})
    done = hw.wait(flaky["id"], timeout=30)
    assert (done["status"], done["attempt"], done["max_attempts"]) == ("SUCCESSFUL", 3, 3)
    assert done["ret"] == {"succeeded_on": 3}
    assert any("attempt 3 of 3" in e["msg"] for e in hw.logs(flaky["id"])["items"])
    user = hw.wait(hw.start_run("behave", {"behaviour": "user_error"})["id"], timeout=20)
    assert (user["status"], user["attempt"]) == ("FAILED", 1)
    assert user["error"]["kind"] == "user" and user["error"]["message"].endswith("the database password is wrong")
    poison = hw.wait(hw.start_run("behave", {"behaviour": "exit", "code": "2"}, retries=1)["id"], timeout=20)
    assert (poison["status"], poison["attempt"], poison["max_attempts"]) == ("FAILED", 2, 2)
    assert poison["error"]["kind"] == "application"


def test_timeout_seconds_only_shortens(hw: Client) -> None:
    hw.register_action(behave(timeout=1))
    run = hw.start_run("behave", {"behaviour": "sleep", "seconds": "0.2"}, timeout_seconds=3600)
    final = hw.wait(run["id"], timeout=20)
    assert final["status"] == "SUCCESSFUL"
    short = hw.wait(hw.start_run("behave", {"behaviour": "sleep", "seconds": "30"}, timeout_seconds=1)["id"], 20)
    assert short["status"] == "FAILED" and short["error"]["kind"] == "timeout"


def test_cancel_a_running_run_stops_its_process_tree(hw: Client) -> None:
    hw.register_action(behave())
    marker = f"{400 + os.getpid() % 97}.{int(time.time() * 1000) % 100000}"
    run = hw.start_run("behave", {"behaviour": "sleep_tree", "seconds": marker})
    wait_until(lambda: processes_with(f"sleep {marker}"), timeout=10, what="the run to start")
    cancelled = hw.cancel_run(run["id"])
    assert cancelled["status"] in ("TERMINATING", "TERMINATED")
    final = hw.wait(run["id"], timeout=10)
    assert final["status"] == "TERMINATED"
    wait_until(lambda: not processes_with(f"sleep {marker}"), timeout=5, what="the process tree to end")
    with pytest.raises(ConflictResponse):
        hw.cancel_run(run["id"])


def test_list_runs_newest_first_with_filters_and_cursor(hw: Client) -> None:
    hw.register_action(behave())
    hw.register_action(behave(name="other"))
    ids = [hw.start_run("behave", {"who": str(i)})["id"] for i in range(5)]
    other = hw.start_run("other")["id"]
    for run_id in [*ids, other]:
        hw.wait(run_id, timeout=20)
    page = hw.list_runs(action="behave", limit=3)
    assert [r["id"] for r in page["items"]] == ids[::-1][:3]
    rest = hw.list_runs(action="behave", limit=3, cursor=page["next"])
    assert [r["id"] for r in rest["items"]] == ids[::-1][3:] and rest["next"] is None
    assert [r["id"] for r in hw.list_runs(status="SUCCESSFUL", action="other")["items"]] == [other]
    with pytest.raises(ValidationErrorResponse):
        hw.list_runs(action="other", cursor=page["next"])  # a cursor of another list


# ---- actions -------------------------------------------------------------------------------


def test_versions_digests_and_noop_registration(hw: Client) -> None:
    first = hw.register_action(behave())
    again = hw.register_action(behave())
    assert again == first  # identical spec: the same version, nothing new
    second = hw.register_action(behave(description="now documented"))
    assert second["version"] == 2 and second["digest"] != first["digest"]
    assert hw.get_action("behave")["version"] == 2
    assert hw.get_action("behave", version=1)["digest"] == first["digest"]
    assert hw.get_action("behave", digest=first["digest"])["version"] == 1
    assert [v["version"] for v in hw.list_versions("behave")] == [2, 1]
    with pytest.raises(NotFoundResponse):
        hw.get_action("behave", version=9)
    with pytest.raises(NotFoundResponse):
        hw.get_action("behave", digest="sha256:" + "0" * 64)
    run = hw.start_run("behave", version=1)
    assert run["action"] == {"name": "behave", "version": 1, "digest": first["digest"]}


def test_delete_keeps_runs_readable(hw: Client) -> None:
    hw.register_action(behave())
    run = hw.wait(hw.start_run("behave")["id"], timeout=20)
    hw.delete_action("behave")
    with pytest.raises(NotFoundResponse):
        hw.get_action("behave")
    with pytest.raises(NotFoundResponse):
        hw.start_run("behave")
    assert hw.get_run(run["id"])["status"] == "SUCCESSFUL"
    assert hw.register_action(behave())["version"] == 2  # numbering goes on


def test_list_actions_by_tag(hw: Client) -> None:
    hw.register_action(behave(name="a1", tags=["etl"]))
    hw.register_action(behave(name="a2", tags=["ui"]))
    assert [a["name"] for a in hw.list_actions(tag="etl")] == ["a1"]
    assert [a["name"] for a in hw.list_actions()] == ["a1", "a2"]


def test_inherits_takes_the_parents_command_and_parameters(hw: Client) -> None:
    parent = hw.register_action(behave(name="base"))
    hw.register_action(
        {"name": "child", "inherits": {"name": "base", "digest": parent["digest"]}, "sync_actions": ["check"]}
    )
    assert hw.call_sync("child", "check", {"who": "x"})["ret"]["echo"]["who"] == "x"
    with pytest.raises(ValidationErrorResponse):
        hw.register_action({"name": "orphan", "inherits": {"name": "missing"}})


# ---- bad input -----------------------------------------------------------------------------


def test_bad_action_documents_are_422_and_store_nothing(hw: Client) -> None:
    bad = [
        behave(compute_requirements={"vCPU": 256, "memory": 4096}),
        behave(compute_requirements={"storage": 20}),
        behave(compute_requirements={"storage": 201}),
        behave(image_uri="x:1", docker_config={"dockerfile": "Dockerfile"}),
        {"name": "kid", "inherits": {"name": "behave"}, "image_uri": "x:1"},
        behave(unexpected=True),
        behave(name="Bad_Name"),
    ]
    for document in bad:
        with pytest.raises(ValidationErrorResponse) as caught:
            hw.register_action(document)
        assert caught.value.details and caught.value.body["error"] == "Validation error"
    assert hw.list_actions() == []


def test_unknown_field_is_named(hw: Client) -> None:
    with pytest.raises(ValidationErrorResponse) as caught:
        hw.register_action(behave(colour="blue"))
    assert {
        "loc": ["body", "colour"],
        "msg": "unknown field 'colour'",
        "type": "extra_forbidden",
    } in caught.value.details


def test_bad_run_requests(hw: Client) -> None:
    hw.register_action(behave(parameters=[{"name": "need", "required": True}]))
    with pytest.raises(UserErrorResponse) as missing:
        hw.start_run("behave")
    assert "need" in missing.value.message
    with pytest.raises(UserErrorResponse) as unknown:
        hw.start_run("behave", {"need": "x", "extra": "y"})
    assert "extra" in unknown.value.message
    with pytest.raises(ValidationErrorResponse) as nested:
        hw.start_run("behave", {"need": {"a": 1}})
    assert nested.value.details[0]["loc"] == ["body", "parameters", "need"]
    with pytest.raises(NotFoundResponse):
        hw.start_run("no-such-action")
    # a version or digest the action does not have is 404 for runs and sync calls alike
    missing_digest = "sha256:" + "0" * 64
    for call in (
        lambda: hw.start_run("behave", {"need": "x"}, version=9),
        lambda: hw.start_run("behave", {"need": "x"}, digest=missing_digest),
        lambda: hw.call_sync("behave", "check", {"need": "x"}, version=9),
        lambda: hw.call_sync("behave", "check", {"need": "x"}, digest=missing_digest),
    ):
        with pytest.raises(NotFoundResponse):
            call()
    assert hw.list_runs()["items"] == []


def test_a_sync_answer_over_the_limit_is_an_application_error(hw: Client) -> None:
    # Given a sync action that prints about 9 MiB on stdout (the answer limit is 6 MiB)
    hw.register_action(behave())
    # When it is called
    with pytest.raises(ApplicationErrorResponse) as caught:
        hw.call_sync("behave", "check", {"behaviour": "lines", "count": "800000"})
    # Then the caller gets a 500 with an exceptionId, and the run record says why
    assert caught.value.exception_id and caught.value.exception_id in caught.value.message
    run = hw.list_runs()["items"][0]
    assert run["status"] == "FAILED" and run["error"]["kind"] == "application"
    assert run["error"]["message"] == "sync output over 6 MiB"


def test_registration_answers_201_for_a_new_version_and_200_for_the_same_one(hw: Client) -> None:
    path = f"/v1/projects/{hw.project}/actions"
    first = hw._http.post(path, json=behave(name="codes"))
    again = hw._http.post(path, json=behave(name="codes"))
    changed = hw._http.post(path, json=behave(name="codes", description="changed"))
    assert (first.status_code, again.status_code, changed.status_code) == (201, 200, 201)
    assert again.json()["version"] == 1 and changed.json()["version"] == 2


def test_malformed_json_and_oversized_bodies(hw: Client) -> None:
    hw.register_action(behave())
    path = f"/v1/projects/{hw.project}/actions/behave/runs"
    malformed = hw._http.post(path, content=b'{"parameters": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and malformed.json()["details"][0]["type"] == "json_invalid"
    huge = b'{"parameters": {"who": "' + b"x" * (6 * 1024 * 1024 + 10) + b'"}}'
    too_big = hw._http.post(path, content=huge, headers={"content-type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["error"] == "Payload too large"
    with pytest.raises(PayloadTooLargeResponse):
        hw.register_action(behave(description="x" * (7 * 1024 * 1024)))
    assert hw.list_runs()["items"] == []


def test_shell_metacharacters_reach_the_action_literally(hw: Client) -> None:
    hw.register_action(behave())
    nasty = "$(touch /tmp/pwned) `id` ; rm -rf / | cat && echo ${HOME} > x < y 'q' \"d\" \\ \n *?[]"
    assert hw.call_sync("behave", "check", {"who": nasty})["ret"]["echo"]["who"] == nasty


def test_scalars_are_coerced_to_strings(hw: Client) -> None:
    hw.register_action(behave())
    ret = hw.call_sync("behave", "check", {"who": 42, "code": True, "seconds": 1.5})["ret"]
    assert ret["echo"] == {"behaviour": "ok", "who": "42", "code": "true", "seconds": "1.5"}


def test_unknown_route_and_meta_routes(hw: Client) -> None:
    missing = hw._http.get("/v2/nothing")
    assert missing.status_code == 404 and set(missing.json()) >= ERROR_KEYS
    assert hw.health()["status"] == "ok"
    spec = hw._http.get("/openapi.json").json()
    assert "/v1/projects/{project_id}/actions/{name}/runs" in spec["paths"]
    assert hw._http.get("/docs").status_code == 200


def test_an_image_only_action_needs_a_container_executor(hw: Client) -> None:
    hw.register_action({"name": "image-only", "image_uri": "registry.example/x:1"})
    with pytest.raises(ValidationErrorResponse) as caught:
        hw.start_run("image-only")
    assert "container executor" in caught.value.message


def test_idempotency_key_replays_the_first_answer(hw: Client) -> None:
    hw.register_action(behave())
    first = hw.start_run("behave", {"who": "a"}, idempotency_key="order-17")
    again = hw.start_run("behave", {"who": "a"}, idempotency_key="order-17")
    assert again == first
    with pytest.raises(ConflictResponse) as caught:
        hw.start_run("behave", {"who": "b"}, idempotency_key="order-17")
    assert "different request" in caught.value.message
    other = hw.start_run("behave", {"who": "a"}, idempotency_key="order-18")
    assert other["id"] != first["id"]
    assert len(hw.list_runs()["items"]) == 2


def test_answers_are_not_cacheable(hw: Client) -> None:
    answer = hw._http.get(f"/v1/projects/{hw.project}/runs")
    assert answer.headers["cache-control"] == "no-store" and answer.headers["x-content-type-options"] == "nosniff"
