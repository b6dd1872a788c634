"""Pipelines against a real `hatchway serve`: a SIGKILL mid-pipeline, and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hatchway.client import Client
from tests.conftest import FAST
from tests.functional.stages import explain, stage, statuses, step
from tests.helpers import REPO, LiveServer, wait_until
from tests.integration.test_cli import cli

pytestmark = pytest.mark.integration


def restarted(server: LiveServer) -> LiveServer:
    """The same gateway (home, port) started again."""
    again = LiveServer(server.home, **server.env)
    again.port, again.url = server.port, server.url
    return again.start()


def runs_with_value(hw: Client, value: str) -> list[dict[str, Any]]:
    items = hw.list_runs(action="stage", limit=500)["items"]
    return [run for run in items if run["parameters"].get("value") == value]


def test_a_pipeline_survives_a_sigkilled_server_without_rerunning_finished_steps(tmp_path: Path) -> None:
    # Given a pipeline whose first step has finished and whose parallel pair is running
    server = LiveServer(tmp_path / "home", **FAST).start()
    with server.client() as hw:
        hw.register_action(stage())
        hw.put_pipeline(
            "nightly",
            {
                "steps": [
                    step("first"),
                    step("left", parameters={"mode": "sleep", "seconds": "4"}, run_next="IN_HARD_PARALLEL"),
                    step("right", parameters={"mode": "sleep", "seconds": "4"}),
                    step("last", "${steps.left.exports.value}+${steps.first.ret.upper}"),
                ]
            },
        )
        started = hw.start_execution("nightly")

        def mid_pipeline() -> dict[str, Any] | None:
            body = hw.get_execution("nightly", started["id"])
            states = statuses(body)
            running = states["left"] == states["right"] == "INPROGRESS"
            return body if states["first"] == "SUCCESSFUL" and running else None

        before = wait_until(mid_pipeline, 30, what="the parallel steps to run")
    # When the server is killed with SIGKILL and started again
    server.kill()
    again = restarted(server)
    try:
        with again.client() as hw:
            final = hw.wait_execution("nightly", started["id"], timeout=90)
            # Then the execution finished, and the step that had finished was not run again
            assert final["status"] == "SUCCESSFUL", explain(final)
            first_runs = runs_with_value(hw, "first")
            assert [r["id"] for r in first_runs] == [before["steps"][0]["run_id"]]
            assert first_runs[0]["attempt"] == 1
            # the interrupted steps kept their runs, which were taken up again (the lost attempt counted)
            for index, name in ((1, "left"), (2, "right")):
                assert final["steps"][index]["run_id"] == before["steps"][index]["run_id"]
                run = hw.get_run(final["steps"][index]["run_id"])
                assert run["status"] == "SUCCESSFUL" and run["attempt"] == 2, name
                assert len(runs_with_value(hw, name)) == 1
            last = runs_with_value(hw, "left!+FIRST")
            assert len(last) == 1 and last[0]["status"] == "SUCCESSFUL"
    finally:
        again.kill()


def test_a_sync_step_cut_off_by_a_sigkill_is_called_again_after_the_restart(tmp_path: Path) -> None:
    # Given a pipeline whose sync step (no retry_count) is in the middle of its call
    server = LiveServer(tmp_path / "home", **FAST).start()
    with server.client() as hw:
        hw.register_action(stage())
        # (its run's lease is its timeout + kill grace + lease: the sweeper fails it ~7 s after the call began)
        probe = step("probe", sync_action="peek", timeout=3, parameters={"mode": "sleep", "seconds": "2"})
        hw.put_pipeline("checked", {"steps": [step("first"), probe, step("after", "${steps.first.exports.value}")]})
        started = hw.start_execution("checked")

        def calling() -> str | None:
            state = hw.get_execution("checked", started["id"])["steps"][1]
            if state["status"] != "INPROGRESS" or not state["run_id"]:
                return None
            run_id: str = state["run_id"]
            return run_id if hw.get_run(run_id)["status"] == "INPROGRESS" else None

        cut_off = wait_until(calling, 30, what="the sync step's call to be under way")
    # When the server is killed with SIGKILL mid-call and started again
    server.kill()
    again = restarted(server)
    try:
        with again.client() as hw:
            final = hw.wait_execution("checked", started["id"], timeout=90)
            # Then the lost call was failed by the sweeper, and the step was called again with a new run
            assert final["status"] == "SUCCESSFUL", explain(final)
            lost = hw.get_run(cut_off)
            assert lost["status"] == "FAILED" and lost["error"]["kind"] == "platform", lost
            probe_state = final["steps"][1]
            assert probe_state["run_id"] != cut_off and probe_state["attempt"] == 2
            assert hw.get_run(probe_state["run_id"])["status"] == "SUCCESSFUL"
            # the finished first step ran once
            assert len(runs_with_value(hw, "first")) == 1
            # (over real HTTP, the step's links carry the server's scheme and host)
            view = hw.request("GET", f"/v1/projects/{hw.project}/pipelines/checked/steps/probe")
            assert view["url"] == f"{again.url}/v1/projects/{hw.project}/pipelines/checked/steps/probe"
            assert view["html_url"] == f"{again.url}/ui/#/pipelines/checked/steps/probe"
    finally:
        again.kill()


def test_an_approval_survives_a_restart(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", **FAST).start()
    with server.client() as hw:
        hw.register_action(stage())
        hw.put_pipeline("gated", {"steps": [step("build"), {"name": "gate", "type": "WAIT_FOR_APPROVE"}, step("ship")]})
        started = hw.start_execution("gated")
        wait_until(lambda: hw.get_execution("gated", started["id"])["status"] == "WAITING_FOR_APPROVE", 30)
    server.kill()
    again = restarted(server)
    try:
        with again.client() as hw:
            assert hw.get_execution("gated", started["id"])["status"] == "WAITING_FOR_APPROVE"
            hw.approve_execution("gated", started["id"])
            final = hw.wait_execution("gated", started["id"], timeout=60)
            assert final["status"] == "SUCCESSFUL", explain(final)
            assert len(runs_with_value(hw, "build")) == 1
    finally:
        again.kill()


PIPELINE = {
    "name": "etl",
    "description": "extract, transform, notify",
    "variables": [{"key": "SOURCE", "value": "orders", "settable": True}, {"key": "MODE", "value": "ok"}],
    "steps": [
        {"name": "extract", "action": "stage", "parameters": {"value": "$SOURCE"}},
        {"name": "transform", "action": "stage", "parameters": {"value": "${steps.extract.exports.value}"}},
        {"name": "approve", "type": "WAIT_FOR_APPROVE"},
        {"name": "notify", "action": "stage", "parameters": {"value": "done", "mode": "sleep", "seconds": "30"}},
        {"name": "on-stop", "action": "stage", "trigger_time": "ON_TERMINATE"},
    ],
}


def test_pipelines_through_the_cli(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", **FAST).start()
    try:
        with server.client() as hw:
            hw.register_action(stage())
        # YAML and JSON files both apply
        as_yaml = tmp_path / "pipeline.yaml"
        as_yaml.write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
        assert "etl version 1 (5 steps)" in cli(server, "pipelines", "apply", "-f", str(as_yaml)).stdout
        as_json = tmp_path / "pipeline.json"
        as_json.write_text(json.dumps({**PIPELINE, "description": "changed"}))
        assert "etl version 2" in cli(server, "pipelines", "apply", "-f", str(as_json)).stdout
        listed = json.loads(cli(server, "pipelines", "list", "--json").stdout)
        assert [p["name"] for p in listed] == ["etl"]
        broken = tmp_path / "broken.yaml"
        broken.write_text("name: etl\nsteps:\n  - name: x\n    action: nope\n")
        refused = cli(server, "pipelines", "apply", "-f", str(broken), check=False)
        assert refused.returncode == 1 and "422" in refused.stderr and "steps" in refused.stderr

        # an execution stops at the gate; the CLI approves it, then terminates it
        execution_id = cli(server, "pipelines", "run", "etl", "--var", "SOURCE=invoices").stdout.strip()
        with server.client() as hw:
            wait_until(lambda: hw.get_execution("etl", execution_id)["status"] == "WAITING_FOR_APPROVE", 30)
            shown = json.loads(cli(server, "executions", "get", "etl", execution_id, "--json").stdout)
            assert shown["variables"]["SOURCE"] == "invoices"
            assert "WAITING_FOR_APPROVE" in cli(server, "executions", "get", "etl", execution_id).stdout
            assert "approved" in cli(server, "executions", "approve", "etl", execution_id).stdout
            wait_until(lambda: statuses(hw.get_execution("etl", execution_id))["notify"] == "INPROGRESS", 30)
            assert "TERMINATING" in cli(server, "executions", "terminate", "etl", execution_id).stdout
            final = hw.wait_execution("etl", execution_id, timeout=60)
        assert final["status"] == "TERMINATED"
        assert statuses(final)["on-stop"] == "SUCCESSFUL"
        assert execution_id in cli(server, "executions", "list", "etl").stdout
        # a settable variable only; the refusal names it
        bad = cli(server, "pipelines", "run", "etl", "--var", "MODE=fail", check=False)
        assert bad.returncode == 1 and "MODE" in bad.stderr and "not settable" in bad.stderr

        # --wait follows the steps live and exits by the outcome
        cli(server, "pipelines", "apply", "-f", str(as_yaml))
        quick = tmp_path / "quick.yaml"
        quick.write_text(yaml.safe_dump({"name": "quick", "steps": [{"name": "one", "action": "stage"}]}))
        cli(server, "pipelines", "apply", "-f", str(quick))
        waited = cli(server, "pipelines", "run", "quick", "--wait", "--json")
        assert json.loads(waited.stdout)["status"] == "SUCCESSFUL"
        failing = tmp_path / "failing.yaml"
        failing.write_text(
            yaml.safe_dump(
                {"name": "failing", "steps": [{"name": "one", "action": "stage", "parameters": {"mode": "fail"}}]}
            )  # fmt: skip
        )
        cli(server, "pipelines", "apply", "-f", str(failing))
        failed = cli(server, "pipelines", "run", "failing", "--wait", check=False)
        assert failed.returncode == 1 and "FAILED" in failed.stderr
        step_view = json.loads(cli(server, "pipelines", "step", "failing", "one").stdout)
        assert step_view["last_execution_status"] == "FAILED"
    finally:
        server.kill()


def test_the_example_pipeline_runs_on_the_examples(live_server: LiveServer) -> None:
    # Given the README's example pipeline over the example actions, applied from YAML and from JSON
    examples = REPO / "examples" / "pipelines"
    assert "nightly version 1" in cli(live_server, "pipelines", "apply", "-f", str(examples / "nightly.yaml")).stdout
    assert "nightly version 1" in cli(live_server, "pipelines", "apply", "-f", str(examples / "nightly.json")).stdout
    # When it runs, it waits for approval; approved, it publishes
    execution_id = cli(live_server, "pipelines", "run", "nightly").stdout.strip()
    with live_server.client() as hw:
        waiting = wait_until(
            lambda: (e := hw.get_execution("nightly", execution_id))["status"] == "WAITING_FOR_APPROVE" and e, 60
        )
        assert statuses(waiting)["extract"] == "SUCCESSFUL", explain(waiting)
        cli(live_server, "executions", "approve", "nightly", execution_id)
        final = hw.wait_execution("nightly", execution_id, timeout=60)
        assert final["status"] in ("SUCCESSFUL", "WARNING"), explain(final)
        assert statuses(final)["publish"] == "SUCCESSFUL" and statuses(final)["when-it-breaks"] == "NOT_EXECUTED"
        extract = hw.get_run(final["steps"][1]["run_id"])
        assert extract["exports"]["tables_extracted"] == 2 and extract["parameters"]["#password"] == "[hidden]"
