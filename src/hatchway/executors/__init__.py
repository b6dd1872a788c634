"""Where actions run: host processes, Docker, Lambda, Batch, ECS. See ``base.py`` for the contract."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.executors.base import BaseExecutor
    from hatchway.runs import Mode
    from hatchway.spec import ActionSpec

#: executor name -> "module:Class"; modules are imported only when the executor is used
REGISTRY: dict[str, str] = {
    "process": "hatchway.executors.process:ProcessExecutor",
    "http": "hatchway.executors.http:HttpExecutor",
    "docker": "hatchway.executors.docker:DockerExecutor",
    "lambda-local": "hatchway.executors.lambda_local:LocalLambdaExecutor",
    "lambda": "hatchway.executors.aws_lambda:LambdaExecutor",
    "batch": "hatchway.executors.batch:BatchExecutor",
    "ecs": "hatchway.executors.ecs:EcsExecutor",
}

EXTRAS = {"docker": "docker", "lambda-local": "docker", "lambda": "aws", "batch": "aws", "ecs": "aws"}


def executor_class(name: str) -> type[BaseExecutor]:
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
    cls: Any = getattr(module, class_name)
    return cls  # type: ignore[no-any-return]


def make_executor(settings: Settings, name: str | None = None) -> BaseExecutor:
    """The executor ``name`` (default: the settings' choice), configured from the settings."""
    return executor_class(name or settings.executor).from_settings(settings)


class Executors:
    """Which executor runs what: sync calls and async runs may go to different places
    (on AWS a container Lambda answers sync calls while Batch runs the queue)."""

    def __init__(self, sync: BaseExecutor, run: BaseExecutor | None = None, http: BaseExecutor | None = None) -> None:
        self.sync = sync
        self.run = run or sync
        self.http = http

    def pick(self, spec: ActionSpec, mode: Mode) -> BaseExecutor:
        from hatchway.runs import Mode

        if spec.http is not None:
            if self.http is None:
                from hatchway.executors.http import HttpExecutor

                self.http = HttpExecutor()
            return self.http
        return self.sync if mode == Mode.SYNC else self.run

    def describe(self) -> str:
        if self.run is self.sync:
            return self.sync.name
        return f"{self.sync.name} (sync), {self.run.name} (runs)"

    def recover(self) -> int:
        """Clean up after a crashed gateway (each executor once)."""
        cleaned = self.sync.recover()
        if self.run is not self.sync:
            cleaned += self.run.recover()
        return cleaned

    def close(self) -> None:
        self.sync.close()
        if self.run is not self.sync:
            self.run.close()


def make_executors(settings: Settings) -> Executors:
    """The executors the settings name: ``HATCHWAY_SYNC_EXECUTOR`` / ``HATCHWAY_RUN_EXECUTOR`` may
    send sync calls and runs elsewhere than ``HATCHWAY_EXECUTOR`` (on AWS: lambda and batch); HTTP
    actions always go to the gateway's own HTTP executor."""
    sync_name = settings.sync_executor or settings.executor
    run_name = settings.run_executor or settings.executor
    sync = make_executor(settings, sync_name)
    run = sync if run_name == sync_name else make_executor(settings, run_name)
    return Executors(sync, run, http=make_executor(settings, "http"))
