"""Where actions run: host processes, Docker, Lambda, Batch, ECS.

The contract they share (invocation, outcome, verdict) is :mod:`hatchway.domain.attempts`.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.domain.attempts import AttemptResult, Invocation
    from hatchway.domain.runs import Mode, Run
    from hatchway.domain.spec import ActionSpec
    from hatchway.runtime.contract import OutputCollector

#: executor name -> "module:Class"; modules are imported only when the executor is used
REGISTRY: dict[str, str] = {
    "process": "hatchway.executors.process:ProcessExecutor",
    "http": "hatchway.executors.http:HttpExecutor",
    "docker": "hatchway.executors.containers.docker:DockerExecutor",
    "lambda-local": "hatchway.executors.containers.lambda_local:LocalLambdaExecutor",
    "lambda": "hatchway.aws.aws_lambda:LambdaExecutor",
    "batch": "hatchway.aws.batch:BatchEngine",
    "ecs": "hatchway.aws.ecs:EcsEngine",
}

EXTRAS = {"docker": "docker", "lambda-local": "docker", "lambda": "aws", "batch": "aws", "ecs": "aws"}


class Executor(Protocol):
    """What :class:`Executors` hands out until step C2 types them apart: an attempt executor
    (:class:`hatchway.ports.AttemptExecutor`, ``is_remote`` false) or a run engine
    (:class:`hatchway.ports.RunEngine`, ``is_remote`` true), each with the other's hooks as no-ops."""

    name: str
    is_remote: bool
    stages_files: bool

    def check(self, spec: ActionSpec, invoked: str) -> None: ...

    def prepare(self, project_id: str, spec: ActionSpec) -> None: ...

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult: ...

    def submit(self, run: Run, spec: ActionSpec) -> str: ...

    def terminate(self, run: Run, reason: str) -> None: ...

    def recover(self) -> int: ...

    def close(self) -> None: ...


def executor_class(name: str) -> Any:
    """The executor class registered under ``name``; a missing extra says what to install."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(REGISTRY)}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(name)
        hint = f": pip install 'hatchway[{extra}]'" if extra else ""
        raise RuntimeError(f"the {name} executor is not available{hint} ({exc.name} is missing)") from exc
    return getattr(module, class_name)


def make_executor(settings: Settings, name: str | None = None) -> Executor:
    """The executor ``name`` (default: the settings' choice), configured from the settings."""
    executor: Executor = executor_class(name or settings.executor).from_settings(settings)
    return executor


#: executors that run containers on a local engine; the Lambda one answers sync calls only
CONTAINER_EXECUTORS = ("docker", "lambda-local")


def action_executor(spec: ActionSpec) -> str | None:
    """The executor an action asks for in its metadata (``"executor": "docker"``), if any."""
    choice = spec.metadata.get("executor")
    return choice if isinstance(choice, str) else None


def has_image(spec: ActionSpec) -> bool:
    return bool(spec.image_uri or spec.docker_config)


class Executors:
    """Which executor runs what: sync calls and async runs may go to different places
    (on AWS a container Lambda answers sync calls while Batch runs the queue).

    HTTP actions always go to ``http``. ``named`` maps executor names to (sync, run) pairs an
    action may ask for in ``metadata.executor``; ``images`` is the pair for actions that have an
    image when the choice is automatic (``hatchway serve`` with a Docker engine).
    """

    def __init__(
        self,
        sync: Executor,
        run: Executor | None = None,
        http: Executor | None = None,
        *,
        images: tuple[Executor, Executor] | None = None,
        named: dict[str, tuple[Executor, Executor]] | None = None,
        mode: str | None = None,
    ) -> None:
        self.sync = sync
        self.run = run or sync
        self.http = http
        self.images = images
        self.named = named or {}
        self.mode = mode

    def _pair(self, spec: ActionSpec) -> tuple[Executor, Executor]:
        wanted = action_executor(spec)
        if wanted is not None and wanted not in self.named and wanted == self.sync.name:
            return self.sync, self.run
        if wanted is not None:
            if wanted not in self.named:
                from hatchway.errors import ValidationFailed

                offered = ", ".join(self.named) or self.sync.name
                raise ValidationFailed.at(
                    ["body", "metadata", "executor"],
                    f"this gateway cannot run actions with the {wanted} executor (it offers: {offered})",
                    "executor_unavailable",
                )
            return self.named[wanted]
        if self.images is not None and has_image(spec):
            return self.images
        return self.sync, self.run

    def pick(self, spec: ActionSpec, mode: Mode) -> Executor:
        from hatchway.domain.runs import Mode

        if spec.http is not None:
            if self.http is None:
                from hatchway.executors.http import HttpExecutor

                self.http = HttpExecutor()
            return self.http
        sync, run = self._pair(spec)
        return sync if mode == Mode.SYNC else run

    def _all(self) -> list[Executor]:
        found: list[Executor] = []
        pairs = [(self.sync, self.run), *([self.images] if self.images else []), *self.named.values()]
        if self.http is not None:
            pairs.append((self.http, self.http))
        for pair in pairs:
            for executor in pair:
                if all(executor is not seen for seen in found):
                    found.append(executor)
        return found

    def describe(self) -> str:
        def pair(sync: Executor, run: Executor) -> str:
            return sync.name if sync is run else f"{sync.name} (sync), {run.name} (runs)"

        text = pair(self.sync, self.run)
        if self.images is not None:
            text = f"{pair(*self.images)} for actions with an image, {text} for the others"
        if self.mode:
            text = f"{self.mode}: {text}"
        return text

    def sandboxes(self) -> list[Any]:
        """The sandboxes of executors that run host processes (:class:`hatchway.executors.sandbox.Sandbox`)."""
        return [executor.sandbox for executor in self._all() if hasattr(executor, "sandbox")]

    def recover(self) -> int:
        """Clean up after a crashed gateway (each executor once)."""
        return sum(executor.recover() for executor in self._all())

    def close(self) -> None:
        for executor in self._all():
            executor.close()


def make_executors(settings: Settings) -> Executors:
    """The executors the settings name; HTTP actions always go to the gateway's own HTTP executor.

    ``auto`` (the default) uses containers when a Docker engine answers (see
    :mod:`hatchway.executors.containers`), else host processes. ``HATCHWAY_SYNC_EXECUTOR`` /
    ``HATCHWAY_RUN_EXECUTOR`` may send sync calls and runs elsewhere than ``HATCHWAY_EXECUTOR``
    (on AWS: lambda and batch).
    """
    http = make_executor(settings, "http")
    name = settings.executor
    is_split = bool(settings.sync_executor or settings.run_executor)
    if name in ("auto", *CONTAINER_EXECUTORS) and not is_split and settings.backend == "embedded":
        from hatchway.executors.containers.engine import engine_answers

        if name != "auto" or engine_answers(settings.docker_host):
            from hatchway.executors.containers import container_executors

            executors = container_executors(settings, name)
            executors.http = http
            return executors
        return Executors(make_executor(settings, "process"), http=http, mode="auto (no Docker engine answers)")
    base = "process" if name == "auto" else name
    sync_name = settings.sync_executor or base
    run_name = settings.run_executor or base
    sync = make_executor(settings, sync_name)
    run = sync if run_name == sync_name else make_executor(settings, run_name)
    return Executors(sync, run, http=http)
