"""The defaults every attempt executor shares: :class:`BaseAttemptExecutor`.

An attempt executor (:class:`hatchway.ports.AttemptExecutor`: process, http, docker, lambda-local)
runs one attempt here and reports how it ended. The contract itself (the invocation, the attempt's
result, the verdict) is the domain's: :mod:`hatchway.domain.attempts`. Run engines (Batch, ECS)
are not attempt executors: see :mod:`hatchway.aws.engines`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from hatchway.config import Settings
from hatchway.domain.attempts import AttemptResult, Invocation
from hatchway.domain.spec import ActionSpec
from hatchway.runtime.contract import OutputCollector


class BaseAttemptExecutor(ABC):
    """Runs an attempt inside :meth:`execute`; every other hook defaults to doing nothing.

    :meth:`prepare` runs when an action version is registered, to create what invocations will
    need (an image, a warm container's key).
    """

    name: str = "base"
    #: hands a file stash and input files to the action (``tmp_source``, ``input_files``,
    #: ``before_cleanup``); a call that needs them elsewhere is refused before anything is made
    stages_files: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseAttemptExecutor:
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

    def release(self, project_id: str, spec: ActionSpec) -> None:
        """Remove what :meth:`prepare` made for a version that was deleted (nothing by default).
        Idempotent; runs of the version may come again (retries), so ``prepare`` must still work after."""

    def close(self) -> None:
        """Stop background work and release resources."""


if TYPE_CHECKING:  # mypy checks that every executor answers the port
    from hatchway import ports

    def _implements(executor: BaseAttemptExecutor) -> ports.AttemptExecutor:
        return executor
