"""Lambda entry point of hatchway's pipeline function.

The pipelines' state machines call it for their steps (``{"op": "start_step" | "sync_step" |
"await_approval", ...}``) and EventBridge sends it their status changes (``aws.states``). The
gateway and the pipeline service are built once per container and reused by warm invocations.
"""

from __future__ import annotations

from typing import Any

from hatchway.aws.stepfunctions import PipelineFunction
from hatchway.config import Settings
from hatchway.services.pipelines.service import PipelineService
from hatchway.wiring import build_gateway

settings = Settings.from_env()
gateway = build_gateway(settings)
function = PipelineFunction(PipelineService.of(gateway))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return function.handle(event)
