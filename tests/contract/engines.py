"""Harnesses for the executor contract suite: one per engine, each over real services.

A harness builds :class:`~hatchway.services.Services` through :func:`hatchway.wiring.build_services`
on a SQLite home with one engine, registers the behaving action (``tests/actions/behave.py``) and
drives it: :meth:`Harness.sync` through :meth:`RunService.call_sync` (an error becomes the API's
answer through :func:`hatchway.api.errors.error_answer`), :meth:`Harness.run` through
:meth:`RunService.submit` and then the engine's way of executing attempts - this process's
(``process``), or the container side of Batch/ECS (:func:`hatchway.runtime.remote.run_attempt`
over :func:`hatchway.wiring.container_attempts`) followed by the state-change event its exit code
makes. ``lambda`` answers moto's ``Invoke`` by running ``python -I -m hatchway.runtime.adapter`` on
the payload (:func:`tests.awsmock.answer_with_adapter`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatchway.api.errors import error_answer
from hatchway.config import Settings
from hatchway.domain.runs import Run, RunError, RunRequest, StateChange
from hatchway.domain.tenants import Principal
from hatchway.errors import HatchwayError
from hatchway.runtime.remote import PROJECT_VARIABLE, RETRY_EXIT_CODE, run_attempt
from hatchway.wiring import (
    ENGINES,
    bootstrap,
    build_placement,
    build_services,
    container_attempts,
    container_services,
    load,
)
from tests.awsmock import container_environment, container_settings
from tests.conftest import make_settings
from tests.functional.actions import behave

ADMIN = Principal(None, None, frozenset({"admin"}))
P, ENV = "proj_local", "development"
NAME = "behave"
#: a made-up ECR image: Lambda, Batch and ECS refuse actions without one (moto runs none of them)
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/actions/behave:1"


@dataclass
class Outcome:
    """How a sync call or a run ended, as the contract speaks of it."""

    status: str
    ret: Any = None
    exports: dict[str, Any] = field(default_factory=dict)
    #: the run's stored log: (kind, message)
    logs: list[tuple[str, str]] = field(default_factory=list)
    error: RunError | None = None
    #: a failed sync call's HTTP answer (status code and body)
    code: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    run: Run | None = None

    @property
    def attempts(self) -> int:
        return self.run.attempt if self.run is not None else 0

    def text(self) -> str:
        """Everything stored or returned, as one text (for looking for what must not be there)."""
        return repr((self.ret, self.exports, self.logs, self.error, self.body))


class Harness:
    """One engine over real services; subclasses say how attempts execute."""

    name = "process"
    #: settings beside the test's own
    overrides: dict[str, Any] = {"sandbox": "none"}

    def __init__(self, home: Path, limits: dict[str, Any], context: dict[str, Any]) -> None:
        self.context = context
        self.settings = self.make_settings(home, limits)
        self.services = build_services(self.settings, placement=self.placement())
        bootstrap(self.services)

    def make_settings(self, home: Path, limits: dict[str, Any]) -> Settings:
        return make_settings(home, **{**self.overrides, **limits})

    def placement(self) -> Any:
        from hatchway.executors.process import ProcessExecutor

        return build_placement(self.settings, sync=ProcessExecutor.from_settings(self.settings))

    def spec(self, **fields: Any) -> dict[str, Any]:
        return behave(NAME, **fields)

    def register(self, **fields: Any) -> None:
        self.services.actions.register(ADMIN, P, ENV, self.spec(**fields))

    def close(self) -> None:
        self.services.close()

    # ---- driving --------------------------------------------------------------------------

    def sync(self, params: dict[str, Any], **request: Any) -> Outcome:
        try:
            done = self.services.runs.call_sync(ADMIN, P, ENV, NAME, "check", RunRequest(params, **request))
        except HatchwayError as exc:
            code, body, _ = error_answer(exc)
            run = self.services.repos.runs.get_run(body["runId"]) if "runId" in body else None
            status = run.status.value if run is not None else "REFUSED"
            error = run.error if run is not None else None
            return Outcome(status, None, {}, self.logs(run), error, code, body, run)
        run = self.services.repos.runs.get_run(done.run_id)
        return Outcome(done.status, done.ret, done.exports, self.logs(run), None, None, {}, run)

    def run(self, params: dict[str, Any], during: Callable[[str], None] | None = None, **request: Any) -> Outcome:
        """Submit a run, execute its attempts to its end; ``during(run_id)`` runs meanwhile."""
        run = self.services.runs.submit(ADMIN, P, ENV, NAME, RunRequest(params, **request))
        worker = threading.Thread(target=self.execute, args=(run.id,), name="contract-attempts", daemon=True)
        worker.start()
        if during is not None:
            during(run.id)
        worker.join(timeout=120)
        assert not worker.is_alive(), "the run's attempts did not end"
        final = self.services.repos.runs.get_run(run.id)
        assert final is not None
        return Outcome(final.status.value, final.ret, final.exports, self.logs(final), final.error, run=final)

    def execute(self, run_id: str) -> None:
        """This process executes the run's attempts (the worker pool's way, without the pool)."""
        dispatched = self.services.dispatched
        for _ in range(10):
            run = self.services.repos.runs.get_run(run_id)
            if run is None or run.is_terminal:
                return
            claimed = dispatched.claim(run_id, "contract", self.services.attempts.clock.now_ms() + 600_000)
            if claimed is None:
                return
            dispatched.execute_watched(claimed)

    def logs(self, run: Run | None) -> list[tuple[str, str]]:
        if run is None:
            return []
        found: list[tuple[str, str]] = []
        after = 0
        while True:
            page = self.services.repos.runs.read_logs(run.id, after, 1000)
            found += [(entry.k, entry.msg) for entry in page.items]
            if page.next is None:
                return found
            after = int(page.next)


class ConfinedHarness(Harness):
    """Host processes at the machine's default sandbox level (bubblewrap, Landlock, limits)."""

    name = "process-confined"
    overrides = {"sandbox": "auto"}

    def placement(self) -> Any:
        from hatchway.executors.process import ProcessExecutor

        executor = ProcessExecutor.from_settings(self.settings)
        self.sandbox = executor.sandbox
        return build_placement(self.settings, sync=executor)


class WarmHarness(ConfinedHarness):
    """Sync calls as forks of a warm server of behave.py written with ``hatchway.runtime``
    (``"warm": true``), at the machine's default sandbox level."""

    name = "process-warm"

    def placement(self) -> Any:
        placement = super().placement()
        self.executor = placement.sync
        return placement

    def spec(self, **fields: Any) -> dict[str, Any]:
        import sys

        from tests.functional.actions import BEHAVE_HW

        command = {"container_parameters": {"entry_point": [sys.executable], "command": [BEHAVE_HW]}}
        return behave(NAME, **{"warm": True, **command, **fields})

    @property
    def warm_calls(self) -> int:
        """Calls the warm servers took so far (a call that fell back to a cold start is not one)."""
        return int(self.executor.warm.served)


class UnconfinedWarmHarness(WarmHarness):
    """Warm sync calls of unconfined host processes (``HATCHWAY_SANDBOX=none``: no prologue, no cgroups)."""

    name = "process-warm-none"
    overrides = {"sandbox": "none"}


class AwsHarness(Harness):
    """Engines on moto: clients of one session, the infrastructure template.yaml would make."""

    def make_settings(self, home: Path, limits: dict[str, Any]) -> Settings:
        import uuid

        from tests.awsmock import REGION

        infrastructure = self.context["infrastructure"]
        return make_settings(
            home, sandbox="none", aws_region=REGION, resource_prefix=f"hw{uuid.uuid4().hex[:8]}",
            **{**infrastructure, **limits},
        )  # fmt: skip

    @property
    def aws(self) -> Any:
        return self.context["aws"]

    def spec(self, **fields: Any) -> dict[str, Any]:
        return behave(NAME, **{"image_uri": IMAGE, **fields})


class LambdaHarness(AwsHarness):
    """Sync calls as Invokes of the action's container Lambda, answered by the real runtime adapter."""

    name = "lambda"

    def placement(self) -> Any:
        from hatchway.aws.aws_lambda import LambdaExecutor

        return build_placement(self.settings, sync=LambdaExecutor.from_settings(self.settings, self.aws))


class EngineHarness(AwsHarness):
    """Runs submitted to Batch or ECS on moto; each attempt through the engine's container side."""

    engine: str = "batch"

    def placement(self) -> Any:
        from hatchway.executors.process import ProcessExecutor

        engine = load(self.engine, ENGINES, "engine").from_settings(self.settings, self.aws)
        return build_placement(self.settings, sync=ProcessExecutor.from_settings(self.settings), engine=engine)

    def execute(self, run_id: str) -> None:
        """Play the engine: run the container side for each attempt, then the event its exit says."""
        run = self.services.repos.runs.get_run(run_id)
        if run is None or run.external_id is None:
            return
        environment = container_environment(self.aws, run.external_id)  # what the engine gave the job or task
        inside = container_services(container_settings(self.settings, environment))
        host = container_attempts(inside)
        try:
            for number in range(1, 11):
                run = self.services.repos.runs.get_run(run_id)
                if run is None or run.is_terminal or run.external_id is None:
                    return
                code = run_attempt(
                    host, run_id, f"{self.engine}/{run.external_id}/{number}", project_id=environment[PROJECT_VARIABLE]
                )
                if self.engine == "batch":
                    if code == RETRY_EXIT_CODE and number < run.max_attempts:
                        continue  # Batch starts the job's next attempt itself
                    phase = "succeeded" if code == 0 else "failed"
                else:
                    phase = "stopped"  # one task per attempt: the gateway starts the next one
                change = StateChange(
                    run_id, run.external_id, phase, code, f"exit {code}", number, self.engine,
                    project_id=environment[PROJECT_VARIABLE],
                )  # fmt: skip
                self.services.remote.apply_state_change(change)
        finally:
            inside.close()


class BatchHarness(EngineHarness):
    name = engine = "batch"


class EcsHarness(EngineHarness):
    name = engine = "ecs"


class DockerHarness(Harness):
    """``docker run`` per attempt on ``HATCHWAY_TEST_DOCKER_HOST``, the action built FROM the base image."""

    name = "docker"

    def make_settings(self, home: Path, limits: dict[str, Any]) -> Settings:
        context = self.context
        return make_settings(
            home, executor=self.name, docker_host=context["docker_host"], lambda_rie_path=context.get("rie"),
            **{"sandbox": "none", **limits},
        )  # fmt: skip

    def placement(self) -> Any:
        return None  # the settings' own: containers on that engine

    def spec(self, **fields: Any) -> dict[str, Any]:
        image = {
            "docker_config": {"context": str(self.context["action_dir"]), "dockerfile": "Dockerfile"},
            "container_parameters": {"entry_point": ["python3"], "command": ["/action/behave.py"]},
        }
        return behave(NAME, **{**image, **fields})


class LocalLambdaHarness(DockerHarness):
    """Sync calls answered by warm container Lambdas under the Runtime Interface Emulator."""

    name = "lambda-local"


HARNESSES: dict[str, type[Harness]] = {
    "process": Harness,
    "process-confined": ConfinedHarness,
    "process-warm": WarmHarness,
    "process-warm-none": UnconfinedWarmHarness,
    "lambda": LambdaHarness,
    "batch": BatchHarness,
    "ecs": EcsHarness,
    "docker": DockerHarness,
    "lambda-local": LocalLambdaHarness,
}
