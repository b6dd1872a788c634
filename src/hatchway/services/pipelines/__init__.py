"""Pipelines: Buddy-style compositions of actions, run by the worker pool or AWS Step Functions.

``definitions`` (define, read, delete; secrets sealed), ``executions`` (start, read, approve,
terminate), ``steps`` (a step's run through the run use cases; inline steps as actions),
``local`` (the worker pool's engine and its advancer thread) and ``function`` (the pipeline Lambda
the Step Functions engine's state machines call). Definitions, execution records, the local
engine's pure rules and inline steps are in :mod:`hatchway.domain.pipelines`; the Step Functions
engine in :mod:`hatchway.aws.stepfunctions` and :mod:`hatchway.aws.asl`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hatchway.ports import PipelineEngine
    from hatchway.services.pipelines.definitions import PipelineDefinitions
    from hatchway.services.pipelines.executions import PipelineExecutions
    from hatchway.services.pipelines.function import PipelineFunction
    from hatchway.services.pipelines.local import LocalPipelineEngine
    from hatchway.services.pipelines.steps import StepRuns


@dataclass(frozen=True)
class PipelineServices:
    """The pipeline use cases of one process. ``local`` is the worker pool's engine when it is the
    engine (the pool starts its advancer and tells it of ended runs), else None."""

    definitions: PipelineDefinitions
    executions: PipelineExecutions
    steps: StepRuns
    engine: PipelineEngine
    local: LocalPipelineEngine | None
    function: PipelineFunction

    def close(self) -> None:
        if self.local is not None:
            self.local.stop_advancer()
