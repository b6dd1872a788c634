"""Keboola's sync action call: ``POST .../actions/{name}/action/{sync_action}`` with ``{"configData": ...}``.

``configData.parameters`` become the action's parameters and its other keys (``runtime``,
``image_parameters``, anything else Keboola sends) the top-level keys of config.json; the answer is
the action's own JSON, unwrapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hatchway.domain.runs import RunRequest, SyncOutcome


def run_request(config_data: Mapping[str, Any], parameters: dict[str, Any]) -> RunRequest:
    """The call ``configData`` asks for (``config_data`` without its None values)."""
    extra = {k: v for k, v in config_data.items() if k != "parameters"}
    return RunRequest(parameters=parameters, config=extra)


def answer(outcome: SyncOutcome) -> Any:
    """Keboola's answer: the action's JSON as it returned it."""
    return outcome.ret
