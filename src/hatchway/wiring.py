"""The composition root: the one module that knows every adapter and plugs them into the use cases.

Adapters are named in registries (``"module:Class"``) and imported only when a process uses them,
so ``import hatchway.wiring`` costs no boto3, docker or uvicorn. The CLI's ``serve`` and ``worker``,
the Lambda handlers and the tests build a process's collaborators here from its
:class:`~hatchway.config.Settings`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hatchway.config import Settings

log = logging.getLogger("hatchway")

if TYPE_CHECKING:
    from pathlib import Path

    from hatchway.aws.clients import AwsClients
    from hatchway.aws.setup import Bootstrapped
    from hatchway.aws.stepfunctions import Bindings
    from hatchway.aws.teardown import Teardown
    from hatchway.domain.pipelines.records import Execution, PipelineRecord
    from hatchway.domain.pipelines.spec import PipelineSpec
    from hatchway.domain.runs import StateChange
    from hatchway.ports import (
        AttemptExecutor,
        BlobStore,
        PipelineEngine,
        PipelineRepo,
        Repos,
        RunDispatcher,
        RunEngine,
        SecretBox,
    )
    from hatchway.services import Services
    from hatchway.services.actions import ActionService
    from hatchway.services.container import ContainerAttempts
    from hatchway.services.placement import Placement
    from hatchway.store.dynamodb import Backfilled

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
    "batch": "hatchway.aws.batch:BatchEngine",
    "ecs": "hatchway.aws.ecs:EcsEngine",
}
#: pipeline engines beside the worker pool's own ("local"; ``HATCHWAY_PIPELINE_ENGINE``) -> their class
PIPELINE_ENGINES: dict[str, str] = {
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


def build_repos(settings: Settings, **clients: Any) -> Repos:
    """The repositories the settings name: SQLite on the embedded default, DynamoDB on AWS
    (``clients``: an ``aws=AwsClients`` or a boto3 ``session=`` and client overrides)."""
    repos: Repos = load(settings.backend, STORES, "store backend").from_settings(settings, **clients)
    return repos


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


def build_executor(settings: Settings, name: str | None = None) -> AttemptExecutor:
    """The attempt executor ``name`` (default: the settings' choice), configured from the settings."""
    executor: AttemptExecutor = load(name or settings.executors.executor, EXECUTORS, "executor").from_settings(settings)
    return executor


def build_engine(settings: Settings, name: str) -> RunEngine:
    """The run engine ``name`` (batch, ecs), configured from the settings."""
    engine: RunEngine = load(name, ENGINES, "executor").from_settings(settings)
    return engine


def build_placement(
    settings: Settings,
    sync: AttemptExecutor | None = None,
    run: AttemptExecutor | None = None,
    engine: RunEngine | None = None,
) -> Placement:
    """The executors the settings name (or ``sync``, ``run`` and ``engine`` when given, for tests and
    the container side of Batch/ECS); HTTP actions always go to the gateway's own HTTP executor.

    ``auto`` (the default) uses containers when a Docker engine answers, else host processes.
    ``HATCHWAY_SYNC_EXECUTOR`` / ``HATCHWAY_RUN_EXECUTOR`` may send sync calls and runs elsewhere
    than ``HATCHWAY_EXECUTOR`` (on AWS: lambda and batch).
    """
    from hatchway.services.placement import Placement

    http = build_executor(settings, "http")
    engines = {name: functools.partial(build_engine, settings, name) for name in ENGINES}
    if sync is not None:
        return Placement(sync, run, http, engine=engine, engines=engines)
    name = settings.executors.executor
    is_split = bool(settings.executors.sync_executor or settings.executors.run_executor)
    if name in ("auto", *CONTAINER_EXECUTORS) and not is_split and settings.backend == "embedded":
        from hatchway.executors.containers.engine import engine_answers

        if name != "auto":
            return _container_placement(settings, name, http)
        why = "no Docker engine answers"
        if engine_answers(settings.executors.docker_host):
            if has_docker_sdk():
                return _container_placement(settings, name, http)
            # the engine is there but not the SDK (a plain `pip install hatchway`): host processes, said once
            why = "a Docker engine answers but the docker package is missing"
            log.warning(
                f"{why}: actions run as host processes; pip install 'hatchway[docker]' to run them in containers"
            )
        process = build_executor(settings, "process")
        return Placement(process, http=http, mode=f"auto ({why})", engines=engines)
    base = "process" if name == "auto" else name
    sync_name = settings.executors.sync_executor or base
    run_name = settings.executors.run_executor or base
    sync = None if sync_name in ENGINES else build_executor(settings, sync_name)
    if run_name in ENGINES:
        return Placement(sync, http=http, engine=build_engine(settings, run_name), engines=engines)
    run = sync if run_name == sync_name else build_executor(settings, run_name)
    return Placement(sync, run, http, engines=engines)


def has_docker_sdk() -> bool:
    """Whether the ``docker`` package (the ``docker`` extra) can be imported here."""
    try:
        import docker  # noqa: F401
    except ImportError:
        return False
    return True


def _container_placement(settings: Settings, name: str, http: AttemptExecutor) -> Placement:
    """The executors for ``name`` (auto, docker or lambda-local) over one Docker engine.

    ``docker`` runs everything with ``docker run``; ``lambda-local`` answers sync calls with warm
    container Lambdas and runs the queue with ``docker run``; ``auto`` does the latter for actions
    that have an image and runs the others as host processes. An action may ask for one of them by
    name in ``metadata.executor``.
    """
    from hatchway.errors import Unavailable, ValidationFailed
    from hatchway.executors.containers.client import DEFAULT_HOST
    from hatchway.executors.containers.docker import DockerExecutor
    from hatchway.executors.containers.engine import DockerEngine
    from hatchway.executors.containers.lambda_local import LocalLambdaExecutor, find_rie
    from hatchway.services.placement import Placement

    def refuse(why: str) -> ValidationFailed:
        # a configuration this host cannot serve: `hatchway serve` says it in one line and exits
        return ValidationFailed.at(["env", "HATCHWAY_EXECUTOR"], f"HATCHWAY_EXECUTOR={name}, but {why}")

    if not has_docker_sdk():
        raise refuse("the docker package is missing: pip install docker (the docker extra)")
    engine = DockerEngine(settings.executors.docker_host, settings.home)
    try:
        engine.ping()
    except Unavailable:
        where = settings.executors.docker_host or DEFAULT_HOST
        raise refuse(f"no Docker engine answers at {where} (start one, or set DOCKER_HOST)") from None
    docker = DockerExecutor(engine, settings.work_dir, settings.runs.kill_grace_seconds)
    named: dict[str, tuple[AttemptExecutor, AttemptExecutor]] = {"docker": (docker, docker)}
    rie = find_rie(settings.executors.lambda_rie_path)
    if rie is not None:
        warm = LocalLambdaExecutor(
            engine, docker, rie, settings.executors.lambda_pool_size, settings.executors.lambda_idle_seconds
        )
        named["lambda-local"] = (warm, docker)
    elif name == "lambda-local":
        raise refuse(
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


# ---- the services -----------------------------------------------------------------------------


def build_services(
    settings: Settings,
    *,
    pool: bool = False,
    repos: Repos | None = None,
    placement: Placement | None = None,
    box: SecretBox | None = None,
    blobs: BlobStore | None = None,
    dispatcher: RunDispatcher | None = None,
    pipeline_engine: Callable[[Bindings], PipelineEngine] | None = None,
    metrics_group: tuple[Path, int] | None = None,
    **clients: Any,
) -> Services:
    """Every use case of one process over the adapters the settings name, built once (a DAG: nothing
    is set on a service afterwards).

    ``pool``: a worker pool will serve this process (``hatchway serve``, ``hatchway worker``), so
    its local queue is the run dispatcher. Otherwise runs the gateway executes itself go to the
    runner function when ``HATCHWAY_RUNNER_FUNCTION`` names one (or to ``dispatcher``). The other
    keywords replace an adapter (tests, the Batch/ECS container); ``clients`` (``aws=AwsClients``)
    reach the AWS adapters. ``pipeline_engine`` makes the Step Functions engine (tests: on moto)
    from what it needs of the gateway; by default the settings choose (``HATCHWAY_PIPELINE_ENGINE``).
    ``metrics_group`` (the group's directory, this process's index): a serve process of a group,
    which shares its metrics with the others (``hatchway serve --processes N``).
    """
    from hatchway.domain.clock import SystemClock
    from hatchway.domain.pipelines.inline import PREFIX
    from hatchway.executors.journal import start_time
    from hatchway.faults import CrashPoints
    from hatchway.net import HttpCallbackSender, allowed_networks
    from hatchway.observability import TracingTelemetry
    from hatchway.observability.logs import log_run_change
    from hatchway.observability.metrics import make_recorder
    from hatchway.observability.tracing import instrument
    from hatchway.secrets import LazySecretBox
    from hatchway.secrets.redact import ActiveRedaction
    from hatchway.services import Services
    from hatchway.services.actions import ActionService
    from hatchway.services.attempts import AttemptService
    from hatchway.services.auth import Auth, Tenants
    from hatchway.services.dispatched import DispatchedRuns
    from hatchway.services.extras import CacheTags, Callbacks, SessionTypes
    from hatchway.services.files import FileService
    from hatchway.services.idempotency import Idempotency
    from hatchway.services.pipelines import PipelineServices
    from hatchway.services.pipelines.definitions import PipelineDefinitions
    from hatchway.services.pipelines.executions import PipelineExecutions
    from hatchway.services.pipelines.function import PipelineFunction
    from hatchway.services.pipelines.local import LocalPipelineEngine
    from hatchway.services.pipelines.steps import InlineActions, StepRuns
    from hatchway.services.queue import LocalQueue, NoDispatcher
    from hatchway.services.remote import RemoteRuns
    from hatchway.services.runs import RunIntake, RunService
    from hatchway.services.stats import StatsService
    from hatchway.services.sweeps import Sweeper

    # adapters
    clock = SystemClock()
    repos = repos or build_repos(settings, **clients)
    instrument(repos)
    telemetry = TracingTelemetry()
    box = box or LazySecretBox(functools.partial(build_secret_box, settings, **clients))
    blobs = blobs or build_blobs(settings, **clients)
    sender = HttpCallbackSender(allowed_networks(settings.executors.http_allow))
    # processes on one SQLite file wake each other's idle workers when they queue a run (imported
    # here: the SQLite package costs the aws backend's cold start ~20 ms)
    doorbell = None
    if settings.backend == "embedded":
        from hatchway.store.sqlite.doorbell import Doorbell

        doorbell = Doorbell(settings.db_path.with_name(settings.db_path.name + ".wake"))
    queue = LocalQueue(doorbell) if pool else None
    metrics = make_recorder(settings, metrics_group, queue.capacity if queue else _no_pool)
    repos.runs.observe(metrics.observe)
    repos.runs.observe(log_run_change)
    runner = dispatcher or _runner_dispatcher(settings, **clients)
    placement = placement or build_placement(settings)
    crash_points = CrashPoints(settings.crash_at)  # a test hook; unarmed unless configured
    pid = os.getpid()
    node_id = f"node-{pid}-{secrets.token_hex(3)}"

    # use cases
    auth = Auth(repos.tenants, clock)
    tenants = Tenants(repos.tenants, auth, box, clock, settings.limits)
    actions = ActionService(repos.actions, auth, tenants, placement, {PREFIX: InlineActions(repos.pipelines)})
    idempotency = Idempotency(repos.idempotency, clock, settings.idempotency, crash_points)
    files = FileService(blobs, repos.documents, repos.runs, auth, tenants, clock, settings.limits)
    caches = CacheTags(repos.documents, box, auth, tenants, clock)
    sessions = SessionTypes(repos.documents, box, auth, tenants)
    callbacks = Callbacks(repos.documents, box, auth, tenants, sender)
    stats = StatsService(repos.runs, metrics, auth, tenants, queue.capacity if queue else _no_pool, clock)
    run_dispatcher = queue or runner or NoDispatcher(doorbell)
    attempts = AttemptService(
        repos.runs, actions, placement, box, ActiveRedaction(), files, callbacks, run_dispatcher, telemetry,
        clock, crash_points, settings, f"{pid}-{start_time(pid)}",
    )  # fmt: skip
    intake = RunIntake(box, files, caches, sessions, settings.limits)
    runs = RunService(
        repos.runs, actions, attempts, idempotency, placement, intake, callbacks, run_dispatcher, auth, telemetry,
        clock, settings, node_id,
    )  # fmt: skip
    dispatched = DispatchedRuns(repos.runs, actions, attempts, clock)
    remote = RemoteRuns(repos.runs, actions, placement, clock, _parse_engine_event, settings.runs.max_lost_attempts)
    sweeper = Sweeper(repos.runs, dispatched, runner, remote, callbacks, settings.runs, clock)
    steps = StepRuns(repos.runs, runs, box)
    local: LocalPipelineEngine | None = None
    engine: PipelineEngine
    if pipeline_engine is None and settings.pipelines.pipeline_engine == "local":
        engine = local = LocalPipelineEngine(repos.pipelines, repos.runs, steps, runs, settings.runs, settings.work_dir)
    else:
        engine = _step_functions(settings, repos.pipelines, actions, placement, pipeline_engine)
    pipelines = PipelineServices(
        PipelineDefinitions(repos.pipelines, actions, placement, box, engine, auth, tenants),
        PipelineExecutions(repos.pipelines, engine, box, idempotency, auth, settings.idempotency),
        steps,
        engine,
        local,
        PipelineFunction(repos.pipelines, repos.runs, steps, engine),
    )
    return Services(
        settings, repos, auth, tenants, actions, idempotency, runs, attempts, files, caches, sessions, callbacks,
        stats, placement, queue, dispatched, sweeper, remote, pipelines, node_id, crash_points, telemetry,
    )  # fmt: skip


def _no_pool() -> None:
    """The capacity of a process no worker pool serves."""
    return None


def _runner_dispatcher(settings: Settings, **clients: Any) -> RunDispatcher | None:
    """The runner function's dispatcher, when the settings name one (``HATCHWAY_RUNNER_FUNCTION``)."""
    if not settings.aws.runner_function:
        return None
    from hatchway.aws.clients import AwsClients
    from hatchway.aws.dispatch import LambdaDispatcher

    aws = clients.get("aws") or AwsClients.from_settings(settings)
    return LambdaDispatcher(settings.aws.runner_function, aws)


def _parse_engine_event(event: dict[str, Any]) -> StateChange | None:
    from hatchway.aws.events import parse_event

    return parse_event(event)


def _step_functions(
    settings: Settings,
    repo: PipelineRepo,
    actions: ActionService,
    placement: Placement,
    make: Callable[[Bindings], PipelineEngine] | None,
) -> PipelineEngine:
    """The Step Functions pipeline engine, made on first use: a process that never touches a
    pipeline never imports boto3 for it, nor needs its settings."""
    from hatchway.aws.stepfunctions import Bindings

    bindings = Bindings(repo, actions.resolve, placement.engine_for, settings.aws.resource_prefix)

    def made() -> PipelineEngine:
        if make is not None:
            return make(bindings)
        engine: PipelineEngine = load("stepfunctions", PIPELINE_ENGINES, "pipeline engine").from_settings(
            settings, bindings
        )
        return engine

    return OnFirstUse(made)


class OnFirstUse:
    """A pipeline engine made when first used."""

    name = "stepfunctions"

    def __init__(self, make: Callable[[], PipelineEngine]) -> None:
        self._make = make
        self._engine: PipelineEngine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> PipelineEngine:
        with self._lock:
            if self._engine is None:
                self._engine = self._make()
            return self._engine

    def deploy(self, project_id: str, environment: str, spec: PipelineSpec) -> str | None:
        return self.engine.deploy(project_id, environment, spec)

    def retire(self, engine_ref: str) -> None:
        self.engine.retire(engine_ref)

    def start(
        self, execution: Execution, record: PipelineRecord, previous_status: Callable[[], str | None]
    ) -> str | None:
        return self.engine.start(execution, record, previous_status)

    def approve(self, execution: Execution, gate: str) -> None:
        self.engine.approve(execution, gate)

    def terminate(self, execution: Execution) -> Execution:
        return self.engine.terminate(execution)

    def refresh(self, execution: Execution) -> Execution:
        return self.engine.refresh(execution)

    def step_runs(self, execution: Execution) -> dict[str, str]:
        return self.engine.step_runs(execution)

    def wake(self, execution_id: str | None = None) -> None:
        return None  # nothing to wake before the engine exists


# ---- the container side of Batch/ECS runs ----------------------------------------------------


def container_services(settings: Settings, **clients: Any) -> Services:
    """The services a container attempt uses: the aws backend's store and key, a process executor."""
    process = build_executor(settings, "process")
    return build_services(settings, placement=build_placement(settings, sync=process), **clients)


def container_attempts(
    services: Services, on_close: Callable[[], None] | None = None, **clients: Any
) -> ContainerAttempts:
    """The host of one container attempt over ``services`` (:class:`~hatchway.runtime.remote.AttemptHost`);
    on the aws backend it leaves copies of the run and its log under ``runs/`` in the outputs bucket.
    ``on_close``: what closing the host releases (the services it was built on, in a container)."""
    from hatchway.domain.clock import SystemClock
    from hatchway.services.container import ContainerAttempts

    copies = None
    if services.settings.backend == "aws":
        from hatchway.aws.s3blobs import S3BlobStore

        copies = S3BlobStore.from_settings(services.settings, prefix="", **clients)
    return ContainerAttempts(services.repos.runs, services.dispatched, SystemClock(), copies, on_close)


def container_host() -> ContainerAttempts:
    """``python -m hatchway.runtime.adapter --run RUN_ID``'s host (``HATCHWAY_ATTEMPT_HOST``'s default):
    settings from the job's or task's environment, observability configured."""
    settings = Settings.from_env(executor="process")
    configure_observability(settings)
    services = container_services(settings)
    return container_attempts(services, services.close)


def bootstrap(services: Services) -> str:
    """Create the default project and settle the global admin token (``HATCHWAY_BOOTSTRAP_TOKEN``, else
    the token file of the home, made on first start); returns the token."""
    from hatchway.secrets.box import load_or_create_key, read_or_create_token_file

    settings = services.settings
    if settings.backend == "embedded" and not settings.key_path.exists():
        # the master key exists from the first start (so it can be backed up with the home), not from
        # the first secret; a damaged one is answered 503 where it is used
        load_or_create_key(settings.key_path)
    token = settings.bootstrap_token or read_or_create_token_file(settings.token_path)
    services.auth.bootstrap(token)
    return token


def tidy_at_rest(services: Services) -> int:
    """At the start of a process that runs attempts: stop what a crashed predecessor left running,
    remove what it left staged in the clear, and encrypt blobs kept in the clear before blobs were
    encrypted (README, "Secrets at rest"). How many leftover actions were stopped."""
    from hatchway.blobs import LocalBlobStore
    from hatchway.executors.journal import owner_alive

    recovered = services.placement.recover()
    with contextlib.suppress(FileNotFoundError):
        for leftover in services.attempts.staging.iterdir():
            if not owner_alive("-".join(leftover.name.split("-")[:2])):
                shutil.rmtree(leftover, ignore_errors=True)
    blobs = services.files.blobs
    if isinstance(blobs, LocalBlobStore):
        encrypted = blobs.encrypt_legacy()
        if encrypted:
            log.warning("encrypted files kept in the clear by an earlier version", extra={"count": encrypted})
    return recovered


def configure_observability(settings: Settings) -> None:
    """Set up this process's logs and tracing as the settings say (idempotent)."""
    from hatchway import observability

    observability.configure_observability(settings)


def metrics_group_directory(settings: Settings) -> Path | None:
    """For the parent of a serve group: a new private directory where its processes share their
    metrics (None when ``/metrics`` is not the prometheus page)."""
    from hatchway.observability.metrics import chosen, group_directory

    return group_directory(settings.home) if chosen(settings) == "prometheus" else None


def remove_metrics_group_directory(directory: Path) -> None:
    """The group ended: its metrics files go."""
    from hatchway.observability.metrics import remove_group_directory

    remove_group_directory(directory)


def close_metrics(services: Services) -> None:
    """At shutdown, once the workers stopped: a serve group's process writes its last numbers."""
    from hatchway.observability.metrics import MetricsRecorder

    if isinstance(services.stats.metrics, MetricsRecorder):
        services.stats.metrics.close()


def aws_bootstrap(settings: Settings, aws: AwsClients | None = None) -> Bootstrapped:
    """``hatchway aws bootstrap``: the table (the store's schema), key and bucket the aws backend needs."""
    from hatchway.aws.setup import bootstrap
    from hatchway.store.dynamodb import DynamoDbStore

    return bootstrap(settings, lambda clients: DynamoDbStore.from_settings(settings, aws=clients).create_table(), aws)


def aws_teardown(settings: Settings, aws: AwsClients | None = None) -> Teardown:
    """``hatchway aws teardown``: what the gateway made at run time under the deployment's prefix."""
    from hatchway.aws.clients import AwsClients
    from hatchway.aws.teardown import Teardown

    return Teardown(aws or AwsClients.from_settings(settings), settings.aws.resource_prefix)


def aws_migrate(settings: Settings, aws: AwsClients | None = None) -> Backfilled:
    """``hatchway aws migrate``: bring the table's items written by earlier versions up to date."""
    from hatchway.store.dynamodb import DynamoDbStore

    return DynamoDbStore.from_settings(settings, aws=aws).migrate()


# ---- Lambda functions -------------------------------------------------------------------------


@functools.cache
def lambda_services() -> Services:
    """The services of a Lambda function's process: settings from its environment, observability
    configured, built once per container (warm invocations reuse them)."""
    settings = Settings.from_env()
    configure_observability(settings)
    return build_services(settings)


def lambda_entry(handle: Callable[[Any, Any], Any], correlation_id_path: str | None = None) -> Any:
    """``handle`` as a Lambda entry point: the Lambda context in every log line, an X-Ray segment
    when tracing is xray."""
    from hatchway.observability import lambda_handler

    return lambda_handler(handle, correlation_id_path)


def api_handler() -> Any:
    """The HTTP API function's handler (API Gateway HTTP API, payload v2)."""
    from aws_lambda_powertools.logging import correlation_paths

    from hatchway.api import create_app
    from hatchway.compat import Compat

    services = lambda_services()
    if services.settings.bootstrap_token:
        services.auth.set_bootstrap_token(services.settings.bootstrap_token)
    # the rarely used routes are included on first use: a cold start answers sooner (hatchway.api.groups)
    app = create_app(services, Compat.of(services), services.telemetry, services.settings, lazy=True)
    return lambda_entry(app.resolve, correlation_paths.API_GATEWAY_HTTP)


def pipelines_handler() -> Any:
    """The pipeline function's handler: the state machines' steps and their status changes."""
    function = lambda_services().pipelines.function
    return lambda_entry(lambda event, context: function.handle(event))
