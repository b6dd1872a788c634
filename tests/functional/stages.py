"""The pipeline tests' action and helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchway.client import Client
from tests.helpers import wait_until

STAGE = str(Path(__file__).resolve().parents[1] / "actions" / "stage.py")
FINISHED = {"SUCCESSFUL", "WARNING", "FAILED", "TERMINATED"}


def stage(name: str = "stage", **fields: Any) -> dict[str, Any]:
    """A pipeline stage: ``value`` is echoed and exported; ``mode`` is ok|fail|crash|sleep|crash_until."""
    spec: dict[str, Any] = {
        "name": name,
        "parameters": [
            {"name": "value", "default": ""},
            {"name": "mode", "default": "ok"},
            {"name": "seconds", "default": "1"},
            {"name": "#token"},
        ],
        "sync_actions": ["peek"],
        "container_parameters": {"entry_point": [sys.executable], "command": [STAGE]},
    }
    spec.update(fields)
    return spec


def step(name: str, value: str | None = None, **fields: Any) -> dict[str, Any]:
    """A step running the stage action with ``value`` (default: the step's name)."""
    parameters = {"value": name if value is None else value, **fields.pop("parameters", {})}
    return {"name": name, "action": "stage", "parameters": parameters, **fields}


def base(hw: Client) -> str:
    return f"/v1/projects/{hw.project}/pipelines"


def put(hw: Client, name: str, **definition: Any) -> dict[str, Any]:
    result: dict[str, Any] = hw.request("PUT", f"{base(hw)}/{name}", json=definition)
    return result


def execute(hw: Client, name: str, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = hw.request("POST", f"{base(hw)}/{name}/executions", json={"variables": variables})
    return result


def execution(hw: Client, name: str, execution_id: str) -> dict[str, Any]:
    result: dict[str, Any] = hw.request("GET", f"{base(hw)}/{name}/executions/{execution_id}")
    return result


def finish(hw: Client, name: str, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll an execution until it ends."""

    def ended() -> dict[str, Any] | None:
        body = execution(hw, name, execution_id)
        return body if body["status"] in FINISHED else None

    return wait_until(ended, timeout, 0.05, f"execution {execution_id} to end")


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in body["steps"]}


def explain(body: dict[str, Any]) -> str:
    """Each step's status and reason, for assertion messages."""
    return "; ".join(f"{s['name']}={s['status']} ({s.get('status_reason')})" for s in body["steps"])


def run_of(hw: Client, body: dict[str, Any], step_name: str) -> dict[str, Any]:
    state = next(s for s in body["steps"] if s["name"] == step_name)
    assert state["run_id"], f"step {step_name} has no run"
    return hw.get_run(state["run_id"])
