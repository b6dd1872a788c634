"""EventBridge events of Batch and ECS, read as the state changes of hatchway runs."""

from __future__ import annotations

from typing import Any

from hatchway.domain.runs import StateChange


def parse_event(event: dict[str, Any]) -> StateChange | None:
    """The state change an EventBridge event describes, if it is one hatchway handles."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return None
    kind = (event.get("source"), event.get("detail-type"))
    if kind == ("aws.batch", "Batch Job State Change"):
        from hatchway.aws.batch import state_change as batch_change

        return batch_change(detail)
    if kind == ("aws.ecs", "ECS Task State Change"):
        from hatchway.aws.ecs import state_change as ecs_change

        return ecs_change(detail)
    return None
