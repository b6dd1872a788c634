"""What every executor has in common: :class:`BaseExecutor`, its hooks and their defaults.

The contract itself (the invocation, the attempt's result, the verdict) is the domain's:
:mod:`hatchway.domain.attempts`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from hatchway.config import Settings
from hatchway.domain.attempts import AttemptResult, Invocation
from hatchway.domain.runs import Run
from hatchway.domain.spec import ActionSpec
from hatchway.runtime.contract import OutputCollector


class BaseExecutor(ABC):
    """Starts an attempt somewhere and reports how it ended.

    Local executors run an attempt inside :meth:`execute`. A *remote* executor (``is_remote``:
    AWS Batch, ECS) hands a whole run to an engine with :meth:`submit`; the engine's container
    runs the attempts itself and its state-change events settle the run. :meth:`prepare` runs when
    an action version is registered, to create what invocations will need (a Lambda function, a
    job or task definition); every hook but :meth:`execute` defaults to doing nothing.
    """

    name: str = "base"
    #: runs go to :meth:`submit` instead of a local worker
    is_remote: bool = False
    #: hands a file stash and input files to the action (``tmp_source``, ``input_files``,
    #: ``before_cleanup``); a call that needs them elsewhere is refused before anything is made
    stages_files: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseExecutor:
        """An executor configured from the gateway's settings."""
        raise NotImplementedError

    def check(self, spec: ActionSpec, invoked: str) -> None:
        """Raise :class:`~hatchway.errors.ValidationFailed` if this executor cannot run ``spec``."""

    @abstractmethod
    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult:
        """Run one attempt to its end (success, failure, deadline or ``cancel``)."""

    def recover(self) -> int:
        """At start-up: clean up what a crashed gateway left behind (processes, containers)."""
        return 0

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        """Get ready to run ``spec`` (the effective spec of a version being registered) in a project.

        Idempotent: called on every registration, also of an unchanged spec, so a failure is
        repaired by registering again. Raise :class:`~hatchway.errors.ValidationFailed` for a spec
        this executor can never run, :class:`~hatchway.errors.Unavailable` when its engine is down.
        """

    def submit(self, run: Run, spec: ActionSpec) -> str:
        """Hand an async run to the remote engine; the job or task id (remote executors only)."""
        raise NotImplementedError(f"the {self.name} executor runs attempts locally")

    def terminate(self, run: Run, reason: str) -> None:
        """Stop the remote job or task of ``run`` (remote executors only); a finished one is fine."""

    def close(self) -> None:
        """Stop background work and release resources."""


if TYPE_CHECKING:  # mypy checks that every executor answers the port
    from hatchway import ports

    def _implements(executor: BaseExecutor) -> ports.AttemptExecutor:
        return executor
