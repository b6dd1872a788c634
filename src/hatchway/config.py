"""Settings: the one place that knows environment variable names.

The CLI, the local server and the Lambda handlers build a :class:`Settings` at their edge and pass
it down; nothing below reads ``os.environ`` for configuration. Every variable ``template.yaml``
gives a function must be listed in :data:`ENV_VARS` (a test checks it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hatchway import faults
from hatchway.errors import ValidationFailed

SYNC_LIMIT_SECONDS = 30
KIB = 1024
MIB = 1024 * KIB
#: the deepest JSON nesting HATCHWAY_MAX_JSON_DEPTH may allow
MAX_JSON_DEPTH = 200
SANDBOX_LEVELS = ("auto", "bwrap", "landlock", "limits", "none")
#: the executors HATCHWAY_EXECUTOR & co. may name (besides "auto"); hatchway.wiring.EXECUTORS and ENGINES map
#: each to its class, which is imported only when used
EXECUTOR_NAMES = ("process", "http", "docker", "lambda-local", "lambda", "batch", "ecs")
#: far from the ranges distributions, systemd and container user namespaces hand out
DEFAULT_SANDBOX_UIDS = (2_000_000_000, 2_000_000_999)

#: Every environment variable hatchway reads, with what it sets.
ENV_VARS: dict[str, str] = {
    "HATCHWAY_HOME": "state directory of the embedded default (database, key file, token)",
    "HATCHWAY_BACKEND": "embedded (SQLite + local key file) or aws (DynamoDB + KMS)",
    "HATCHWAY_EXECUTOR": "auto (default), process, docker or lambda-local for actions run on this host",
    "DOCKER_HOST": "the Docker engine for container actions (default unix:///var/run/docker.sock)",
    "HATCHWAY_LAMBDA_RIE": "path of the Lambda Runtime Interface Emulator (default: found in aws-sam-cli)",
    "HATCHWAY_LAMBDA_POOL_SIZE": "warm Lambda containers per action version at most (default 4)",
    "HATCHWAY_LAMBDA_IDLE_SECONDS": "a warm Lambda container idle this long is stopped (default 300)",
    "HATCHWAY_WARM_MAX_SERVERS": "warm Python servers kept at once for actions with warm: true (default 8; 0: off)",
    "HATCHWAY_WARM_MAX_CALLS": "calls a warm server answers before a fresh one replaces it (default 1000)",
    "HATCHWAY_WARM_IDLE_SECONDS": "a warm server idle this long is stopped (default 300)",
    "HATCHWAY_WARM_START_SECONDS": "how long a warm server may take to be ready, else the call runs cold (default 10)",
    "HATCHWAY_BOOTSTRAP_TOKEN": "the global admin token; generated into $HATCHWAY_HOME/token if unset",
    "HATCHWAY_SYNC_TIMEOUT_SECONDS": "limit of a sync action call, at most 30",
    "HATCHWAY_SYNC_CONCURRENCY": "sync calls running at once before 429 answers",
    "HATCHWAY_LEASE_SECONDS": "how long a worker owns a claimed run without a heartbeat",
    "HATCHWAY_HEARTBEAT_SECONDS": "how often a worker renews its lease (must be below the lease)",
    "HATCHWAY_WORKERS": "size of the local worker pool",
    "HATCHWAY_MAX_LOST_ATTEMPTS": "extra attempts granted when a worker dies under a run",
    "HATCHWAY_KILL_GRACE_SECONDS": "grace between SIGTERM and SIGKILL of an action at its deadline (default 5)",
    "HATCHWAY_SHUTDOWN_GRACE_SECONDS": "how long a stopping gateway lets running attempts finish",
    "HATCHWAY_DB_SYNCHRONOUS": "SQLite durability: NORMAL (default, crash-safe in WAL) or FULL",
    "HATCHWAY_DB_BUSY_TIMEOUT_SECONDS": "how long a write waits for a locked SQLite file before 503 (default 10)",
    "HATCHWAY_LOG_LEVEL": "log level of the gateway's own JSON logs",
    "HATCHWAY_METRICS": "prometheus (GET /metrics; embedded default), emf (CloudWatch; aws default) or off",
    "HATCHWAY_TRACING": "off (default), otlp (OpenTelemetry, exported over OTLP/HTTP) or xray (powertools Tracer)",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "OTLP/HTTP collector for HATCHWAY_TRACING=otlp (default http://localhost:4318)",
    "HATCHWAY_ACCESS_LOG": "on (default) or off: one JSON line per request at INFO (method, route, status, duration)",
    "HATCHWAY_CORS_ORIGINS": "origins (https://app.example.com, comma-separated) browser pages may call from",
    "HATCHWAY_CONSOLE": "on (default) or off: serve the web console at /ui",
    "HATCHWAY_SANDBOX": "auto, bwrap, landlock, limits or none: how the process executor confines actions",
    "HATCHWAY_SANDBOX_UIDS": "first-last: the uids (and gids) actions run as when the gateway is root, one per attempt",
    "HATCHWAY_WORK_DIR": "where actions' workspaces live (default /var/tmp/hatchway-work-<uid>-<home id>)",
    "HATCHWAY_HTTP_ALLOW": "ranges HTTP actions and callbacks may reach besides public ones (CIDRs, loopback, private)",
    "HATCHWAY_CONNECT_REPLAY_SECONDS": "how long an identical Connect request is answered from the first one's error",
    "HATCHWAY_HTTP_HEADER_TIMEOUT_SECONDS": "a connection must send a request's headers within this long (default 10)",
    "HATCHWAY_HTTP_BODY_TIMEOUT_SECONDS": "a request's body must arrive within this long of its headers (default 60)",
    "HATCHWAY_HTTP_KEEP_ALIVE_SECONDS": "an idle kept-alive connection is closed after this long (default 5)",
    "HATCHWAY_HTTP_MAX_CONNECTIONS": "open connections at once; more are answered 503 and closed (default 512)",
    "HATCHWAY_HTTP_MAX_HEADER_BYTES": "request line and headers larger than this are refused with 431 (default 32768)",
    "HATCHWAY_HTTP_READ_THREADS": "threads of hatchway serve that answer reads, beside 64 for writes (default 16)",
    "HATCHWAY_PROCESSES": "processes of hatchway serve on its one port (SO_REUSEPORT), sharing the workers (default 1)",
    "HATCHWAY_MAX_ANSWER_BYTES": "largest answer: list pages end early (with next) to stay below it (default 6 MiB)",
    "HATCHWAY_AUTH_FAILURE_BUDGET": "failed authentications a client address may make before 429 (default 30)",
    "HATCHWAY_AUTH_FAILURE_WINDOW_SECONDS": "how long a spent failure budget takes to refill completely (default 300)",
    "HATCHWAY_TRUSTED_PROXIES": "proxy addresses or CIDRs whose X-Forwarded-For/-Proto are believed (default none)",
    "HATCHWAY_URL": "gateway URL used by the CLI and the Python client",
    "HATCHWAY_TOKEN": "token used by the CLI and the Python client",
    "HATCHWAY_PROJECT": "project the CLI talks to (--project; default proj_local)",
    "HATCHWAY_ENVIRONMENT": "environment the CLI sends requests in (--env)",
    "HATCHWAY_TABLE_NAME": "DynamoDB table of the aws backend",
    "HATCHWAY_KMS_KEY_ID": "KMS key (id, ARN or alias) of the aws backend",
    "HATCHWAY_BUCKET": "S3 bucket for run outputs on the aws backend",
    "HATCHWAY_OUTPUTS_KMS_KEY_ID": "KMS key S3 encrypts blobs (files, artifacts, stashes) with (default: aws/s3)",
    "HATCHWAY_SYNC_EXECUTOR": "executor for sync actions (default HATCHWAY_EXECUTOR; lambda on AWS)",
    "HATCHWAY_RUN_EXECUTOR": "executor for async runs (default HATCHWAY_EXECUTOR; batch or ecs on AWS)",
    "HATCHWAY_RESOURCE_PREFIX": "name prefix of the AWS resources the gateway creates (functions, definitions, roles)",
    "HATCHWAY_LAMBDA_ROLE_ARN": "execution role of the container Lambdas that answer sync actions",
    "HATCHWAY_BATCH_JOB_QUEUE": "AWS Batch job queue of async runs",
    "HATCHWAY_ECS_CLUSTER": "ECS cluster of async runs on Fargate",
    "HATCHWAY_SUBNETS": "comma-separated subnets of Fargate tasks and jobs",
    "HATCHWAY_SECURITY_GROUPS": "comma-separated security groups of Fargate tasks and jobs",
    "HATCHWAY_EXECUTION_ROLE_ARN": "execution role of Batch jobs and ECS tasks (image pull, logs)",
    "HATCHWAY_TASK_POLICY_ARN": "managed policy (and boundary) of the per-project task roles the gateway creates",
    "HATCHWAY_TASK_ROLE_ARN": "one task role for every project instead of per-project roles (development)",
    "HATCHWAY_LOG_GROUP": "CloudWatch log group of Batch jobs and ECS tasks",
    "HATCHWAY_LEGACY_RUN_KEYS": "on (default): look runs up under keys written before keys carried the project",
    "HATCHWAY_PIPELINE_ENGINE": "local (the worker pool runs pipelines) or stepfunctions (default on aws)",
    "HATCHWAY_STATES_ROLE_ARN": "role the pipelines' Step Functions state machines run as",
    "HATCHWAY_PIPELINE_FUNCTION_ARN": "hatchway's pipeline Lambda, which state machines call to prepare steps",
    "HATCHWAY_IDEMPOTENCY_IN_PROGRESS_SECONDS": "how long an unfinished Idempotency-Key blocks a retry (default 60)",
    "HATCHWAY_IDEMPOTENCY_POLL_MAX_SECONDS": "longest pause between looks at a key still in progress (default 0.25)",
    "HATCHWAY_RETRY_BACKOFF_MAX_SECONDS": "cap of the exponential backoff between attempts of a run (default 300)",
    "HATCHWAY_PLATFORM_RETRY_SECONDS": "first pause before a run's attempt that the platform failed (engine down, "
    "image not pulled, container not started) runs again; doubles each time (default 5)",
    "HATCHWAY_TEST_CRASH_AT": "test hook only: point:n - SIGKILL this process at a crash point (see faults.py)",
    "HATCHWAY_RUNNER_FUNCTION": "the Lambda that executes runs of HTTP actions on AWS (invoked with each run's id)",
    "HATCHWAY_REMOTE_STALE_SECONDS": "a Batch or ECS run unfinished this long is looked up by the sweep (default 900)",
    "HATCHWAY_MAX_PARAMETERS": "parameters a request may name (default 128)",
    "HATCHWAY_MAX_PARAMETER_BYTES": "size of a parameter value, in UTF-8 bytes (default 262144)",
    "HATCHWAY_MAX_SECRET_BYTES": "size of a secret value, in UTF-8 bytes (default 65536)",
    "HATCHWAY_MAX_SECRETS_BYTES": "size of all secret values of one request together (default 262144)",
    "HATCHWAY_MAX_JSON_DEPTH": "nesting depth of a JSON request body (default 64)",
    "HATCHWAY_MAX_PATH_COMPONENT_BYTES": "length of one name in a file or artifact path, in bytes (default 255)",
    "AWS_ENDPOINT_URL": "points boto3 at LocalStack or a moto server",
    "AWS_BATCH_JOB_ID": "set by AWS Batch inside a job: names the container that holds a run",
    "HATCHWAY_RUN_PROJECT": "set on each Batch job and ECS task: the project of the run it holds",
    "AWS_BATCH_JOB_ATTEMPT": "set by AWS Batch inside a job: its attempt number",
    "ECS_CONTAINER_METADATA_URI_V4": "set by ECS inside a task: names the container that holds a run",
    "AWS_REGION": "region of the aws backend",
    "AWS_DEFAULT_REGION": "region of the aws backend (fallback)",
}


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed.at(["env", name], f"{name} must be an integer") from None
    if value < minimum:
        raise ValidationFailed.at(["env", name], f"{name} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValidationFailed.at(["env", name], f"{name} must be a number") from None


def _range(env: Mapping[str, str], name: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    first, _, last = raw.partition("-")
    try:
        found = (int(first), int(last or first))
    except ValueError:
        raise ValidationFailed.at(["env", name], f"{name} is a range of ids: first-last") from None
    return found


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())


@dataclass(frozen=True)
class InputLimits:
    """How large a request may be beyond its byte count: each limit bounds what the gateway does
    with the input (a secret's redaction automaton, a recursion over parameters, a file name)."""

    max_parameters: int = 128
    max_parameter_bytes: int = 256 * KIB
    max_secret_bytes: int = 64 * KIB
    max_secrets_bytes: int = 256 * KIB
    max_json_depth: int = 64
    max_path_component_bytes: int = 255

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InputLimits:
        return cls(
            max_parameters=_int(env, "HATCHWAY_MAX_PARAMETERS", cls.max_parameters, 1),
            max_parameter_bytes=_int(env, "HATCHWAY_MAX_PARAMETER_BYTES", cls.max_parameter_bytes, 1),
            max_secret_bytes=_int(env, "HATCHWAY_MAX_SECRET_BYTES", cls.max_secret_bytes, 1),
            max_secrets_bytes=_int(env, "HATCHWAY_MAX_SECRETS_BYTES", cls.max_secrets_bytes, 1),
            max_json_depth=_int(env, "HATCHWAY_MAX_JSON_DEPTH", cls.max_json_depth, 4),
            max_path_component_bytes=_int(env, "HATCHWAY_MAX_PATH_COMPONENT_BYTES", cls.max_path_component_bytes, 1),
        )

    def check(self) -> None:
        # below 4 levels no run request ({"parameters": {"x": {...}}}) could nest at all; above
        # MAX_JSON_DEPTH, walking a body's parameters would reach Python's recursion limit
        if not 4 <= self.max_json_depth <= MAX_JSON_DEPTH:
            raise ValidationFailed.at(["env", "HATCHWAY_MAX_JSON_DEPTH"], f"must be between 4 and {MAX_JSON_DEPTH}")


def _on(env: Mapping[str, str], name: str) -> bool:
    return (env.get(name) or "on").lower() not in ("off", "0", "false", "no")


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP edge: connections, request and answer sizes, authentication budget, browsers."""

    max_body_bytes: int = 6 * MIB
    max_answer_bytes: int = 6 * MIB
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 60.0
    http_keep_alive_seconds: int = 5
    http_max_connections: int = 512
    http_max_header_bytes: int = 32 * 1024
    http_read_threads: int = 16
    auth_failure_budget: int = 30
    auth_failure_window_seconds: float = 300.0
    trusted_proxies: tuple[str, ...] = ()
    #: exact origins (scheme://host[:port]) allowed to call the API from a browser; empty: CORS off
    cors_origins: tuple[str, ...] = ()
    is_console_enabled: bool = True
    is_access_log_enabled: bool = True
    #: ``hatchway serve`` processes on one port; the worker pool and the sync-call limit are shared
    processes: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        return cls(
            max_answer_bytes=_int(env, "HATCHWAY_MAX_ANSWER_BYTES", 6 * MIB, 64 * 1024),
            http_header_timeout_seconds=_float(env, "HATCHWAY_HTTP_HEADER_TIMEOUT_SECONDS", 10.0),
            http_body_timeout_seconds=_float(env, "HATCHWAY_HTTP_BODY_TIMEOUT_SECONDS", 60.0),
            http_keep_alive_seconds=_int(env, "HATCHWAY_HTTP_KEEP_ALIVE_SECONDS", 5, 1),
            http_max_connections=_int(env, "HATCHWAY_HTTP_MAX_CONNECTIONS", 512, 1),
            http_max_header_bytes=_int(env, "HATCHWAY_HTTP_MAX_HEADER_BYTES", 32 * 1024, 1024),
            http_read_threads=_int(env, "HATCHWAY_HTTP_READ_THREADS", 16, 1),
            auth_failure_budget=_int(env, "HATCHWAY_AUTH_FAILURE_BUDGET", 30, 1),
            auth_failure_window_seconds=_float(env, "HATCHWAY_AUTH_FAILURE_WINDOW_SECONDS", 300.0),
            trusted_proxies=_list(env, "HATCHWAY_TRUSTED_PROXIES"),
            cors_origins=tuple(origin.rstrip("/") for origin in _list(env, "HATCHWAY_CORS_ORIGINS")),
            is_console_enabled=_on(env, "HATCHWAY_CONSOLE"),
            is_access_log_enabled=_on(env, "HATCHWAY_ACCESS_LOG"),
            processes=_int(env, "HATCHWAY_PROCESSES", 1, 1),
        )


@dataclass(frozen=True)
class ClientSettings:
    """Where the CLI and the Python client find a gateway."""

    url: str = "http://127.0.0.1:8080"
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClientSettings:
        return cls(url=(env.get("HATCHWAY_URL") or cls.url).rstrip("/"), token=env.get("HATCHWAY_TOKEN") or None)


@dataclass(frozen=True)
class RunSettings:
    """Runs' lifecycle: leases and heartbeats, the worker pool, retries, graces, the sweep."""

    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    workers: int = 2
    max_lost_attempts: int = 3
    max_backoff_seconds: float = 300.0
    platform_retry_seconds: float = 5.0
    kill_grace_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    remote_stale_seconds: float = 900.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunSettings:
        lease = _float(env, "HATCHWAY_LEASE_SECONDS", 30.0)
        return cls(
            lease_seconds=lease,
            heartbeat_seconds=_float(env, "HATCHWAY_HEARTBEAT_SECONDS", max(lease / 3, 0.05)),
            workers=_int(env, "HATCHWAY_WORKERS", 2, 0),
            max_lost_attempts=_int(env, "HATCHWAY_MAX_LOST_ATTEMPTS", 3, 0),
            max_backoff_seconds=_float(env, "HATCHWAY_RETRY_BACKOFF_MAX_SECONDS", 300.0),
            platform_retry_seconds=_float(env, "HATCHWAY_PLATFORM_RETRY_SECONDS", 5.0),
            kill_grace_seconds=_float(env, "HATCHWAY_KILL_GRACE_SECONDS", 5.0),
            shutdown_grace_seconds=_float(env, "HATCHWAY_SHUTDOWN_GRACE_SECONDS", 10.0),
            remote_stale_seconds=_float(env, "HATCHWAY_REMOTE_STALE_SECONDS", 900.0),
        )


@dataclass(frozen=True)
class SyncSettings:
    """Sync action calls: their time limit and how many run at once."""

    sync_timeout_seconds: int = SYNC_LIMIT_SECONDS
    sync_concurrency: int = 32

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SyncSettings:
        return cls(
            sync_timeout_seconds=_int(env, "HATCHWAY_SYNC_TIMEOUT_SECONDS", SYNC_LIMIT_SECONDS, 1),
            sync_concurrency=_int(env, "HATCHWAY_SYNC_CONCURRENCY", 32, 1),
        )


@dataclass(frozen=True)
class IdempotencySettings:
    """How long keys and replays hold, and how a duplicate waits for a key in progress."""

    idempotency_seconds: int = 24 * 3600
    idempotency_in_progress_seconds: float = 60.0
    idempotency_poll_max_seconds: float = 0.25
    connect_replay_seconds: int = 60

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdempotencySettings:
        return cls(
            idempotency_in_progress_seconds=_float(env, "HATCHWAY_IDEMPOTENCY_IN_PROGRESS_SECONDS", 60.0),
            idempotency_poll_max_seconds=_float(env, "HATCHWAY_IDEMPOTENCY_POLL_MAX_SECONDS", 0.25),
            connect_replay_seconds=_int(env, "HATCHWAY_CONNECT_REPLAY_SECONDS", 60, 0),
        )


@dataclass(frozen=True)
class StoreSettings:
    """The record store: SQLite's durability and lock wait, DynamoDB's table."""

    db_synchronous: str = "NORMAL"
    db_busy_timeout_seconds: float = 10.0
    table_name: str = "hatchway"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StoreSettings:
        return cls(
            db_synchronous=(env.get("HATCHWAY_DB_SYNCHRONOUS") or "NORMAL").upper(),
            db_busy_timeout_seconds=_float(env, "HATCHWAY_DB_BUSY_TIMEOUT_SECONDS", 10.0),
            table_name=env.get("HATCHWAY_TABLE_NAME") or "hatchway",
        )


@dataclass(frozen=True)
class ExecutorSettings:
    """What runs actions on this host, how it confines them, and what they may write and reach."""

    executor: str = "auto"
    sync_executor: str | None = None
    run_executor: str | None = None
    sandbox: str = "auto"
    sandbox_uids: tuple[int, int] = DEFAULT_SANDBOX_UIDS
    work_root: Path | None = None
    max_sync_stdout_bytes: int = 6 * MIB
    max_log_bytes: int = 10 * MIB
    http_allow: tuple[str, ...] = ()
    # containers (docker and lambda-local executors)
    docker_host: str | None = None
    lambda_rie_path: str | None = None
    lambda_pool_size: int = 4
    lambda_idle_seconds: float = 300.0
    # warm Python servers for sync calls of actions that opt in (process executor)
    warm_max_servers: int = 8
    warm_max_calls: int = 1000
    warm_idle_seconds: float = 300.0
    warm_start_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExecutorSettings:
        return cls(
            executor=env.get("HATCHWAY_EXECUTOR") or "auto",
            sync_executor=env.get("HATCHWAY_SYNC_EXECUTOR") or None,
            run_executor=env.get("HATCHWAY_RUN_EXECUTOR") or None,
            sandbox=(env.get("HATCHWAY_SANDBOX") or "auto").lower(),
            sandbox_uids=_range(env, "HATCHWAY_SANDBOX_UIDS", DEFAULT_SANDBOX_UIDS),
            work_root=Path(env["HATCHWAY_WORK_DIR"]).expanduser() if env.get("HATCHWAY_WORK_DIR") else None,
            http_allow=_list(env, "HATCHWAY_HTTP_ALLOW"),
            docker_host=env.get("DOCKER_HOST") or None,
            lambda_rie_path=env.get("HATCHWAY_LAMBDA_RIE") or None,
            lambda_pool_size=_int(env, "HATCHWAY_LAMBDA_POOL_SIZE", 4, 1),
            lambda_idle_seconds=_float(env, "HATCHWAY_LAMBDA_IDLE_SECONDS", 300.0),
            warm_max_servers=_int(env, "HATCHWAY_WARM_MAX_SERVERS", 8, 0),
            warm_max_calls=_int(env, "HATCHWAY_WARM_MAX_CALLS", 1000, 1),
            warm_idle_seconds=_float(env, "HATCHWAY_WARM_IDLE_SECONDS", 300.0),
            warm_start_seconds=_float(env, "HATCHWAY_WARM_START_SECONDS", 10.0),
        )


@dataclass(frozen=True)
class AwsSettings:
    """The aws backend's account side: region and endpoint, keys, bucket, and the resources runs use."""

    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    resource_prefix: str = "hatchway"
    kms_key_id: str | None = None
    bucket: str | None = None
    outputs_kms_key_id: str | None = None
    runner_function: str | None = None
    lambda_role_arn: str | None = None
    batch_job_queue: str | None = None
    ecs_cluster: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    execution_role_arn: str | None = None
    task_policy_arn: str | None = None
    task_role_arn: str | None = None
    log_group: str | None = None
    #: runs not found under their project's key are looked for under the key they had before keys
    #: carried the project (an upgraded deployment's old runs); run containers turn it off
    is_legacy_run_keys_enabled: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AwsSettings:
        return cls(
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            resource_prefix=env.get("HATCHWAY_RESOURCE_PREFIX") or "hatchway",
            kms_key_id=env.get("HATCHWAY_KMS_KEY_ID") or None,
            bucket=env.get("HATCHWAY_BUCKET") or None,
            outputs_kms_key_id=env.get("HATCHWAY_OUTPUTS_KMS_KEY_ID") or None,
            runner_function=env.get("HATCHWAY_RUNNER_FUNCTION") or None,
            lambda_role_arn=env.get("HATCHWAY_LAMBDA_ROLE_ARN") or None,
            batch_job_queue=env.get("HATCHWAY_BATCH_JOB_QUEUE") or None,
            ecs_cluster=env.get("HATCHWAY_ECS_CLUSTER") or None,
            subnets=_list(env, "HATCHWAY_SUBNETS"),
            security_groups=_list(env, "HATCHWAY_SECURITY_GROUPS"),
            execution_role_arn=env.get("HATCHWAY_EXECUTION_ROLE_ARN") or None,
            task_policy_arn=env.get("HATCHWAY_TASK_POLICY_ARN") or None,
            task_role_arn=env.get("HATCHWAY_TASK_ROLE_ARN") or None,
            log_group=env.get("HATCHWAY_LOG_GROUP") or None,
            is_legacy_run_keys_enabled=_on(env, "HATCHWAY_LEGACY_RUN_KEYS"),
        )

    @property
    def kms_key(self) -> str:
        """The KMS key of the aws backend (default: the alias ``hatchway aws bootstrap`` creates)."""
        return self.kms_key_id or f"alias/{self.resource_prefix}"

    @property
    def outputs_bucket(self) -> str:
        """The S3 bucket for run outputs and large records of the aws backend."""
        return self.bucket or f"{self.resource_prefix}-outputs"


@dataclass(frozen=True)
class PipelineSettings:
    """Which engine runs pipelines, and the Step Functions resources it uses on AWS."""

    pipeline_engine: str = "local"
    states_role_arn: str | None = None
    pipeline_function_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PipelineSettings:
        return cls(
            pipeline_engine=env.get("HATCHWAY_PIPELINE_ENGINE")
            or ("stepfunctions" if env.get("HATCHWAY_BACKEND") == "aws" else "local"),
            states_role_arn=env.get("HATCHWAY_STATES_ROLE_ARN") or None,
            pipeline_function_arn=env.get("HATCHWAY_PIPELINE_FUNCTION_ARN") or None,
        )


@dataclass(frozen=True)
class ObservabilitySettings:
    """The gateway's own logs, metrics and traces."""

    log_level: str = "INFO"
    metrics: str = ""
    tracing: str = "off"
    otlp_endpoint: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ObservabilitySettings:
        return cls(
            log_level=(env.get("HATCHWAY_LOG_LEVEL") or "INFO").upper(),
            metrics=(env.get("HATCHWAY_METRICS") or "").lower(),
            tracing=(env.get("HATCHWAY_TRACING") or "off").lower(),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        )


#: each group of :class:`Settings` (its field name) and the class that holds it
GROUPS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "client": ClientSettings,
    "runs": RunSettings,
    "sync": SyncSettings,
    "idempotency": IdempotencySettings,
    "store": StoreSettings,
    "executors": ExecutorSettings,
    "aws": AwsSettings,
    "pipelines": PipelineSettings,
    "observability": ObservabilitySettings,
}


def _routes() -> dict[str, str]:
    routes: dict[str, str] = {}
    for group, kind in GROUPS.items():
        for item in fields(kind):
            if item.name in routes:
                raise AssertionError(f"setting {item.name!r} is in both {routes[item.name]} and {group}")
            routes[item.name] = group
    return routes


#: every flat setting name (``lease_seconds``) and the group that holds it (``runs``); the names
#: ``Settings.from_env(**overrides)`` and ``Settings.with_(**changes)`` accept besides the top level
ROUTES: dict[str, str] = _routes()


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one gateway process: four top-level values and one small
    frozen group per concern, so a service can take only its own (``Sweeper(settings.runs)``)."""

    home: Path = field(default_factory=lambda: Path("~/.hatchway").expanduser())
    backend: str = "embedded"
    bootstrap_token: str | None = None
    crash_at: str | None = None
    server: ServerSettings = field(default_factory=ServerSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    runs: RunSettings = field(default_factory=RunSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    idempotency: IdempotencySettings = field(default_factory=IdempotencySettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    executors: ExecutorSettings = field(default_factory=ExecutorSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    pipelines: PipelineSettings = field(default_factory=PipelineSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    limits: InputLimits = field(default_factory=InputLimits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``env`` (default ``os.environ``); keyword overrides win. An override
        names a top-level field, a group, or a flat setting (``lease_seconds``: see :data:`ROUTES`)."""
        env = os.environ if env is None else env
        settings = cls(
            home=Path(env.get("HATCHWAY_HOME") or "~/.hatchway").expanduser(),
            backend=env.get("HATCHWAY_BACKEND") or "embedded",
            bootstrap_token=env.get("HATCHWAY_BOOTSTRAP_TOKEN") or None,
            crash_at=env.get("HATCHWAY_TEST_CRASH_AT") or None,
            limits=InputLimits.from_env(env),
            **{group: kind.from_env(env) for group, kind in GROUPS.items()},
        )
        if overrides:
            if isinstance(overrides.get("log_level"), str):
                overrides["log_level"] = overrides["log_level"].upper()
            settings = settings.with_(**overrides)
        settings.check()
        return settings

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes``: top-level fields, whole groups, or flat settings routed to their
        group by :data:`ROUTES` (unchecked, like :func:`dataclasses.replace`)."""
        top: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            group = ROUTES.get(name)
            if group is not None:
                grouped.setdefault(group, {})[name] = value
            elif name in _TOP_LEVEL:
                top[name] = value
            else:
                raise TypeError(f"Settings has no setting {name!r}")
        for group, values in grouped.items():
            top[group] = replace(top.get(group, getattr(self, group)), **values)
        return replace(self, **top)

    def check(self) -> None:
        """Refuse configurations that cannot work, before anything starts."""
        if self.sync.sync_timeout_seconds > SYNC_LIMIT_SECONDS:
            raise ValidationFailed.at(
                ["env", "HATCHWAY_SYNC_TIMEOUT_SECONDS"],
                f"the sync limit can be lowered, not raised above {SYNC_LIMIT_SECONDS} s",
            )
        if self.runs.heartbeat_seconds >= self.runs.lease_seconds:
            raise ValidationFailed.at(
                ["env", "HATCHWAY_HEARTBEAT_SECONDS"],
                "the heartbeat interval must be shorter than the lease, or runs would be claimed twice",
            )
        if self.executors.sandbox not in SANDBOX_LEVELS:
            raise ValidationFailed.at(["env", "HATCHWAY_SANDBOX"], f"must be {', '.join(SANDBOX_LEVELS)}")
        first, last = self.executors.sandbox_uids
        if not 0 < first <= last < 2**32 - 1:
            raise ValidationFailed.at(
                ["env", "HATCHWAY_SANDBOX_UIDS"], "a range first-last of unprivileged ids (above 0, below 4294967295)"
            )
        if self.store.db_synchronous not in ("NORMAL", "FULL"):
            raise ValidationFailed.at(["env", "HATCHWAY_DB_SYNCHRONOUS"], "must be NORMAL or FULL")
        if self.observability.metrics not in ("", "prometheus", "emf", "off"):
            raise ValidationFailed.at(["env", "HATCHWAY_METRICS"], "must be prometheus, emf or off")
        if self.observability.tracing not in ("off", "otlp", "xray"):
            raise ValidationFailed.at(["env", "HATCHWAY_TRACING"], "must be off, otlp or xray")
        if self.observability.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValidationFailed.at(["env", "HATCHWAY_LOG_LEVEL"], "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        for origin in self.server.cors_origins:
            if origin != "*" and not re.match(r"^https?://[A-Za-z0-9.\[\]:-]+$", origin):
                raise ValidationFailed.at(
                    ["env", "HATCHWAY_CORS_ORIGINS"],
                    f"{origin!r} is not an origin: scheme://host[:port], no path (or * for any origin)",
                )
        if self.server.processes > 64:
            raise ValidationFailed.at(["env", "HATCHWAY_PROCESSES"], "at most 64 processes")
        if self.backend not in ("embedded", "aws"):
            raise ValidationFailed.at(["env", "HATCHWAY_BACKEND"], "must be embedded or aws")
        if not re.match(r"^[A-Za-z][A-Za-z0-9-]{0,23}$", self.aws.resource_prefix):
            raise ValidationFailed.at(
                ["env", "HATCHWAY_RESOURCE_PREFIX"], "a letter, then letters, digits and '-', at most 24 characters"
            )
        for variable, name in (
            ("HATCHWAY_EXECUTOR", self.executors.executor),
            ("HATCHWAY_SYNC_EXECUTOR", self.executors.sync_executor),
            ("HATCHWAY_RUN_EXECUTOR", self.executors.run_executor),
        ):
            if name is not None and name not in EXECUTOR_NAMES and name != "auto":
                raise ValidationFailed.at(
                    ["env", variable], f"unknown executor {name!r}: auto, {', '.join(EXECUTOR_NAMES)}"
                )
        self.limits.check()
        if self.backend == "embedded" and self.limits.max_path_component_bytes > 255:
            raise ValidationFailed.at(
                ["env", "HATCHWAY_MAX_PATH_COMPONENT_BYTES"], "the embedded default keeps files on disk: at most 255"
            )
        if self.pipelines.pipeline_engine not in ("local", "stepfunctions"):
            raise ValidationFailed.at(["env", "HATCHWAY_PIPELINE_ENGINE"], "must be local or stepfunctions")
        for variable, seconds in (
            ("HATCHWAY_HTTP_HEADER_TIMEOUT_SECONDS", self.server.http_header_timeout_seconds),
            ("HATCHWAY_HTTP_BODY_TIMEOUT_SECONDS", self.server.http_body_timeout_seconds),
            ("HATCHWAY_AUTH_FAILURE_WINDOW_SECONDS", self.server.auth_failure_window_seconds),
        ):
            if seconds <= 0:
                raise ValidationFailed.at(["env", variable], f"{variable} must be positive")
        for proxy in self.server.trusted_proxies:
            import ipaddress  # only when proxies are configured: the CLI's start stays lean

            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ValidationFailed.at(
                    ["env", "HATCHWAY_TRUSTED_PROXIES"], f"{proxy!r} is not an IP address or CIDR range"
                ) from None
        if (
            self.idempotency.idempotency_in_progress_seconds <= 0
            or self.idempotency.idempotency_poll_max_seconds <= 0
            or self.runs.max_backoff_seconds < 0
            or self.runs.platform_retry_seconds < 0
        ):
            raise ValidationFailed.at(["env"], "idempotency and backoff limits must be positive")
        try:
            faults.parse(self.crash_at)
        except ValueError as exc:
            raise ValidationFailed.at(["env", "HATCHWAY_TEST_CRASH_AT"], str(exc)) from None

    @property
    def db_path(self) -> Path:
        return self.home / "hatchway.db"

    @property
    def key_path(self) -> Path:
        return self.home / "secret.key"

    @property
    def token_path(self) -> Path:
        return self.home / "token"

    @property
    def work_dir(self) -> Path:
        """Where actions' workspaces live: outside the home, which only the gateway's user may enter.

        Default ``/var/tmp/hatchway-work-<uid>-<id of the home>``: an action running under a uid of
        its own must be able to reach its workspace, never the home.
        """
        if self.executors.work_root is not None:
            return self.executors.work_root
        import hashlib
        import tempfile

        base = "/var/tmp" if Path("/var/tmp").is_dir() else tempfile.gettempdir()  # noqa: S108
        digest = hashlib.sha256(os.path.realpath(self.home).encode()).hexdigest()[:12]
        return Path(base) / f"hatchway-work-{os.geteuid()}-{digest}"

    @property
    def journal_dir(self) -> Path:
        """The process executor's recovery journals (private to the gateway's user)."""
        return self.home / "journal"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"


#: the fields of :class:`Settings` itself (its top-level values and its groups)
_TOP_LEVEL = frozenset(item.name for item in fields(Settings))
