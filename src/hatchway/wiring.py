"""The composition root: the one module that knows every adapter and plugs them into the use cases.

Adapters are named in registries (``"module:Class"``) and imported only when a process uses them,
so ``import hatchway.wiring`` costs no boto3, docker or uvicorn. The CLI's ``serve`` and ``worker``,
the Lambda handlers and the tests build a process's collaborators here from its
:class:`~hatchway.config.Settings`.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any

from hatchway.config import Settings

if TYPE_CHECKING:
    from hatchway.executors.base import BaseExecutor
    from hatchway.ports import BlobStore
    from hatchway.secrets.box import SecretBox
    from hatchway.service import Gateway
    from hatchway.services.placement import Executor, Placement
    from hatchway.store.base import BaseStore
    from hatchway.store.legacy import SingleObjectRepos

#: store backend (``HATCHWAY_BACKEND``) -> its class
STORES: dict[str, str] = {
    "embedded": "hatchway.store.sqlite:SqliteStore",
    "aws": "hatchway.store.dynamodb:DynamoDbStore",
}
#: executors that run one attempt (``HATCHWAY_EXECUTOR``, ``metadata.executor``) -> their class
EXECUTORS: dict[str, str] = {
    "process": "hatchway.executors.process:ProcessExecutor",
    "http": "hatchway.executors.http:HttpExecutor",
    "docker": "hatchway.executors.containers.docker:DockerExecutor",
    "lambda-local": "hatchway.executors.containers.lambda_local:LocalLambdaExecutor",
    "lambda": "hatchway.aws.aws_lambda:LambdaExecutor",
}
#: engines that run whole runs elsewhere (``HATCHWAY_RUN_EXECUTOR``) -> their class
ENGINES: dict[str, str] = {
    "batch": "hatchway.aws.batch:BatchExecutor",
    "ecs": "hatchway.aws.ecs:EcsExecutor",
}
#: pipeline engines (``HATCHWAY_PIPELINE_ENGINE``) -> their class
PIPELINE_ENGINES: dict[str, str] = {
    "local": "hatchway.services.pipelines.service:PipelineService",
    "stepfunctions": "hatchway.aws.stepfunctions:StepFunctionsEngine",
}
#: what to install when an adapter's module is missing: name -> the package's extra
EXTRAS: dict[str, str] = {
    "aws": "aws",
    "docker": "docker",
    "lambda-local": "docker",
    "lambda": "aws",
    "batch": "aws",
    "ecs": "aws",
    "stepfunctions": "aws",
}
#: executors that run containers on a local engine
CONTAINER_EXECUTORS = ("docker", "lambda-local")


def load(name: str, registry: dict[str, str], what: str) -> Any:
    """The class registered under ``name``; a missing extra says what to install."""
    try:
        target = registry[name]
    except KeyError:
        raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(registry)}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(name)
        hint = f": pip install 'hatchway[{extra}]'" if extra else ""
        raise RuntimeError(f"the {name} {what} is not available{hint} ({exc.name} is missing)") from exc
    return getattr(module, class_name)


# ---- adapters ---------------------------------------------------------------------------------


def build_store(settings: Settings, **clients: Any) -> BaseStore:
    """The store the settings name: SQLite on the embedded default, DynamoDB on AWS."""
    cls = load(settings.backend, STORES, "store backend")
    if settings.backend == "aws":
        store: BaseStore = cls.from_settings(settings, **clients)
        return store
    return cls(  # type: ignore[no-any-return]
        settings.db_path,
        synchronous=settings.db_synchronous,
        busy_timeout_ms=int(settings.db_busy_timeout_seconds * 1000),
    )


def build_repos(settings: Settings, **clients: Any) -> SingleObjectRepos:
    """The repositories of the settings' backend."""
    from hatchway.store.legacy import SingleObjectRepos

    return SingleObjectRepos(build_store(settings, **clients))


def build_secret_box(settings: Settings, **clients: Any) -> SecretBox:
    """A KMS-backed box on the aws backend, the local key file otherwise."""
    if settings.backend == "aws":
        from hatchway.aws.kms import kms_secret_box

        return kms_secret_box(settings, **clients)
    from hatchway.secrets.box import local_secret_box

    return local_secret_box(settings.key_path)


def build_blobs(settings: Settings, **clients: Any) -> BlobStore:
    """Project files, artifacts and stashes: the outputs bucket on AWS, encrypted files otherwise."""
    if settings.backend == "aws":
        from hatchway.aws.s3blobs import S3BlobStore

        return S3BlobStore.from_settings(settings, **clients)
    from hatchway.blobs import LocalBlobStore
    from hatchway.secrets.box import local_blob_cipher

    return LocalBlobStore(settings.blob_dir, lambda: local_blob_cipher(settings.key_path))


def build_executor(settings: Settings, name: str | None = None) -> BaseExecutor:
    """The executor or engine ``name`` (default: the settings' choice), configured from the settings."""
    name = name or settings.executor
    registry = ENGINES if name in ENGINES else EXECUTORS
    executor: BaseExecutor = load(name, registry, "executor").from_settings(settings)
    return executor


def build_placement(settings: Settings, sync: Executor | None = None, run: Executor | None = None) -> Placement:
    """The executors the settings name (or ``sync`` and ``run`` when given, for tests and the
    container side of Batch/ECS); HTTP actions always go to the gateway's own HTTP executor.

    ``auto`` (the default) uses containers when a Docker engine answers, else host processes.
    ``HATCHWAY_SYNC_EXECUTOR`` / ``HATCHWAY_RUN_EXECUTOR`` may send sync calls and runs elsewhere
    than ``HATCHWAY_EXECUTOR`` (on AWS: lambda and batch).
    """
    from hatchway.services.placement import Placement

    http = build_executor(settings, "http")
    engines = {name: functools.partial(build_executor, settings, name) for name in ENGINES}
    if sync is not None:
        return Placement(sync, run, http, engines=engines)
    name = settings.executor
    is_split = bool(settings.sync_executor or settings.run_executor)
    if name in ("auto", *CONTAINER_EXECUTORS) and not is_split and settings.backend == "embedded":
        from hatchway.executors.containers.engine import engine_answers

        if name != "auto" or engine_answers(settings.docker_host):
            return _container_placement(settings, name, http)
        process = build_executor(settings, "process")
        return Placement(process, http=http, mode="auto (no Docker engine answers)", engines=engines)
    base = "process" if name == "auto" else name
    sync_name = settings.sync_executor or base
    run_name = settings.run_executor or base
    sync = build_executor(settings, sync_name)
    run = sync if run_name == sync_name else build_executor(settings, run_name)
    return Placement(sync, run, http, engines=engines)


def _container_placement(settings: Settings, name: str, http: BaseExecutor) -> Placement:
    """The executors for ``name`` (auto, docker or lambda-local) over one Docker engine.

    ``docker`` runs everything with ``docker run``; ``lambda-local`` answers sync calls with warm
    container Lambdas and runs the queue with ``docker run``; ``auto`` does the latter for actions
    that have an image and runs the others as host processes. An action may ask for one of them by
    name in ``metadata.executor``.
    """
    from hatchway.errors import Unavailable
    from hatchway.executors.containers.docker import DockerExecutor
    from hatchway.executors.containers.engine import DockerEngine
    from hatchway.executors.containers.lambda_local import LocalLambdaExecutor, find_rie
    from hatchway.services.placement import Placement

    engine = DockerEngine(settings.docker_host, settings.home)
    engine.ping()
    docker = DockerExecutor(engine, settings.work_dir, settings.kill_grace_seconds)
    named: dict[str, tuple[BaseExecutor, BaseExecutor]] = {"docker": (docker, docker)}
    rie = find_rie(settings.lambda_rie_path)
    if rie is not None:
        warm = LocalLambdaExecutor(engine, docker, rie, settings.lambda_pool_size, settings.lambda_idle_seconds)
        named["lambda-local"] = (warm, docker)
    elif name == "lambda-local":
        raise Unavailable(
            "the lambda-local executor needs the Lambda Runtime Interface Emulator: install aws-sam-cli "
            "(its `sam` on PATH) or set HATCHWAY_LAMBDA_RIE"
        )
    images = named.get("lambda-local") or named["docker"]
    where = f"Docker engine at {engine.host}"
    if name == "auto":
        process = build_executor(settings, "process")
        named["process"] = (process, process)
        return Placement(process, http=http, images=images, named=named, mode=f"auto ({where})")
    return Placement(*named[name], http, named=named, mode=where)


# ---- the gateway ------------------------------------------------------------------------------


def build_gateway(
    settings: Settings, store: BaseStore | None = None, executors: Placement | BaseExecutor | None = None
) -> Gateway:
    """A gateway wired from settings: the named store, executors and secret box."""
    from hatchway.service import Gateway

    return Gateway(
        settings,
        store or build_store(settings),
        executors or build_placement(settings),
        lambda: build_secret_box(settings),
        blobs=build_blobs(settings) if settings.backend == "aws" else None,
    )
