"""Where actions run: host processes, Docker, Lambda, Batch, ECS. See ``base.py`` for the contract."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.executors.base import BaseExecutor

#: executor name -> "module:Class"; modules are imported only when the executor is used
REGISTRY: dict[str, str] = {
    "process": "hatchway.executors.process:ProcessExecutor",
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
