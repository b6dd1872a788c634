"""Settings as groups: every flat name routes to exactly one group, every environment variable
fills the field it names, and overrides and copies keep accepting the flat names."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from hatchway import faults
from hatchway.config import (
    ENV_VARS,
    GROUPS,
    MIB,
    ROUTES,
    InputLimits,
    RunSettings,
    Settings,
)
from hatchway.errors import ValidationFailed

CRASH_POINT = sorted(faults.POINTS)[0]

#: each variable Settings reads -> (a value unlike its default, the field it fills, what the field holds);
#: the field is a flat name (routed to its group), a top-level field, or ``limits.<name>``
FILLS: dict[str, tuple[str, str, Any]] = {
    "HATCHWAY_HOME": ("/srv/hw", "home", Path("/srv/hw")),
    "HATCHWAY_BACKEND": ("aws", "backend", "aws"),
    "HATCHWAY_BOOTSTRAP_TOKEN": ("t" * 32, "bootstrap_token", "t" * 32),
    "HATCHWAY_TEST_CRASH_AT": (f"{CRASH_POINT}:2", "crash_at", f"{CRASH_POINT}:2"),
    "HATCHWAY_EXECUTOR": ("docker", "executor", "docker"),
    "HATCHWAY_SYNC_EXECUTOR": ("lambda", "sync_executor", "lambda"),
    "HATCHWAY_RUN_EXECUTOR": ("batch", "run_executor", "batch"),
    "DOCKER_HOST": ("unix:///d.sock", "docker_host", "unix:///d.sock"),
    "HATCHWAY_LAMBDA_RIE": ("/opt/rie", "lambda_rie_path", "/opt/rie"),
    "HATCHWAY_LAMBDA_POOL_SIZE": ("7", "lambda_pool_size", 7),
    "HATCHWAY_LAMBDA_IDLE_SECONDS": ("12.5", "lambda_idle_seconds", 12.5),
    "HATCHWAY_WARM_MAX_SERVERS": ("3", "warm_max_servers", 3),
    "HATCHWAY_WARM_MAX_CALLS": ("50", "warm_max_calls", 50),
    "HATCHWAY_WARM_IDLE_SECONDS": ("60", "warm_idle_seconds", 60.0),
    "HATCHWAY_WARM_START_SECONDS": ("4.5", "warm_start_seconds", 4.5),
    "HATCHWAY_SYNC_TIMEOUT_SECONDS": ("12", "sync_timeout_seconds", 12),
    "HATCHWAY_SYNC_CONCURRENCY": ("3", "sync_concurrency", 3),
    "HATCHWAY_LEASE_SECONDS": ("60", "lease_seconds", 60.0),
    "HATCHWAY_HEARTBEAT_SECONDS": ("2", "heartbeat_seconds", 2.0),
    "HATCHWAY_WORKERS": ("5", "workers", 5),
    "HATCHWAY_MAX_LOST_ATTEMPTS": ("9", "max_lost_attempts", 9),
    "HATCHWAY_KILL_GRACE_SECONDS": ("1.5", "kill_grace_seconds", 1.5),
    "HATCHWAY_SHUTDOWN_GRACE_SECONDS": ("4", "shutdown_grace_seconds", 4.0),
    "HATCHWAY_DB_SYNCHRONOUS": ("full", "db_synchronous", "FULL"),
    "HATCHWAY_DB_BUSY_TIMEOUT_SECONDS": ("3", "db_busy_timeout_seconds", 3.0),
    "HATCHWAY_LOG_LEVEL": ("debug", "log_level", "DEBUG"),
    "HATCHWAY_METRICS": ("EMF", "metrics", "emf"),
    "HATCHWAY_TRACING": ("otlp", "tracing", "otlp"),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("http://c:4318", "otlp_endpoint", "http://c:4318"),
    "HATCHWAY_ACCESS_LOG": ("off", "is_access_log_enabled", False),
    "HATCHWAY_CORS_ORIGINS": (
        "https://a.example/, https://b.example",
        "cors_origins",
        ("https://a.example", "https://b.example"),
    ),
    "HATCHWAY_CONSOLE": ("no", "is_console_enabled", False),
    "HATCHWAY_SANDBOX": ("Landlock", "sandbox", "landlock"),
    "HATCHWAY_SANDBOX_UIDS": ("5000-5009", "sandbox_uids", (5000, 5009)),
    "HATCHWAY_WORK_DIR": ("/srv/work", "work_root", Path("/srv/work")),
    "HATCHWAY_HTTP_ALLOW": ("loopback, 10.0.0.0/8", "http_allow", ("loopback", "10.0.0.0/8")),
    "HATCHWAY_CONNECT_REPLAY_SECONDS": ("0", "connect_replay_seconds", 0),
    "HATCHWAY_HTTP_HEADER_TIMEOUT_SECONDS": ("2.5", "http_header_timeout_seconds", 2.5),
    "HATCHWAY_HTTP_BODY_TIMEOUT_SECONDS": ("9", "http_body_timeout_seconds", 9.0),
    "HATCHWAY_HTTP_KEEP_ALIVE_SECONDS": ("8", "http_keep_alive_seconds", 8),
    "HATCHWAY_HTTP_MAX_CONNECTIONS": ("64", "http_max_connections", 64),
    "HATCHWAY_HTTP_MAX_HEADER_BYTES": ("4096", "http_max_header_bytes", 4096),
    "HATCHWAY_HTTP_READ_THREADS": ("3", "http_read_threads", 3),
    "HATCHWAY_PROCESSES": ("2", "processes", 2),
    "HATCHWAY_MAX_ANSWER_BYTES": (str(MIB), "max_answer_bytes", MIB),
    "HATCHWAY_AUTH_FAILURE_BUDGET": ("4", "auth_failure_budget", 4),
    "HATCHWAY_AUTH_FAILURE_WINDOW_SECONDS": ("30", "auth_failure_window_seconds", 30.0),
    "HATCHWAY_TRUSTED_PROXIES": ("10.0.0.1, 10.1.0.0/16", "trusted_proxies", ("10.0.0.1", "10.1.0.0/16")),
    "HATCHWAY_URL": ("https://hw.example/", "url", "https://hw.example"),
    "HATCHWAY_TOKEN": ("tok", "token", "tok"),
    "HATCHWAY_TABLE_NAME": ("tbl", "table_name", "tbl"),
    "HATCHWAY_KMS_KEY_ID": ("alias/k", "kms_key_id", "alias/k"),
    "HATCHWAY_BUCKET": ("bkt", "bucket", "bkt"),
    "HATCHWAY_OUTPUTS_KMS_KEY_ID": ("alias/o", "outputs_kms_key_id", "alias/o"),
    "HATCHWAY_RESOURCE_PREFIX": ("hwx", "resource_prefix", "hwx"),
    "HATCHWAY_LAMBDA_ROLE_ARN": ("arn:l", "lambda_role_arn", "arn:l"),
    "HATCHWAY_BATCH_JOB_QUEUE": ("q", "batch_job_queue", "q"),
    "HATCHWAY_ECS_CLUSTER": ("c", "ecs_cluster", "c"),
    "HATCHWAY_SUBNETS": ("s-1,s-2", "subnets", ("s-1", "s-2")),
    "HATCHWAY_SECURITY_GROUPS": ("g-1", "security_groups", ("g-1",)),
    "HATCHWAY_EXECUTION_ROLE_ARN": ("arn:e", "execution_role_arn", "arn:e"),
    "HATCHWAY_TASK_POLICY_ARN": ("arn:p", "task_policy_arn", "arn:p"),
    "HATCHWAY_TASK_ROLE_ARN": ("arn:t", "task_role_arn", "arn:t"),
    "HATCHWAY_LOG_GROUP": ("/lg", "log_group", "/lg"),
    "HATCHWAY_LEGACY_RUN_KEYS": ("off", "is_legacy_run_keys_enabled", False),
    "HATCHWAY_PIPELINE_ENGINE": ("stepfunctions", "pipeline_engine", "stepfunctions"),
    "HATCHWAY_STATES_ROLE_ARN": ("arn:s", "states_role_arn", "arn:s"),
    "HATCHWAY_PIPELINE_FUNCTION_ARN": ("arn:f", "pipeline_function_arn", "arn:f"),
    "HATCHWAY_IDEMPOTENCY_IN_PROGRESS_SECONDS": ("7", "idempotency_in_progress_seconds", 7.0),
    "HATCHWAY_IDEMPOTENCY_POLL_MAX_SECONDS": ("0.5", "idempotency_poll_max_seconds", 0.5),
    "HATCHWAY_RETRY_BACKOFF_MAX_SECONDS": ("30", "max_backoff_seconds", 30.0),
    "HATCHWAY_PLATFORM_RETRY_SECONDS": ("0.5", "platform_retry_seconds", 0.5),
    "HATCHWAY_RUNNER_FUNCTION": ("runner", "runner_function", "runner"),
    "HATCHWAY_REMOTE_STALE_SECONDS": ("60", "remote_stale_seconds", 60.0),
    "HATCHWAY_MAX_PARAMETERS": ("9", "limits.max_parameters", 9),
    "HATCHWAY_MAX_PARAMETER_BYTES": ("99", "limits.max_parameter_bytes", 99),
    "HATCHWAY_MAX_SECRET_BYTES": ("98", "limits.max_secret_bytes", 98),
    "HATCHWAY_MAX_SECRETS_BYTES": ("97", "limits.max_secrets_bytes", 97),
    "HATCHWAY_MAX_JSON_DEPTH": ("10", "limits.max_json_depth", 10),
    "HATCHWAY_MAX_PATH_COMPONENT_BYTES": ("100", "limits.max_path_component_bytes", 100),
    "AWS_ENDPOINT_URL": ("http://moto:5000", "aws_endpoint_url", "http://moto:5000"),
    "AWS_REGION": ("eu-west-1", "aws_region", "eu-west-1"),
    "AWS_DEFAULT_REGION": ("eu-north-1", "aws_region", "eu-north-1"),
}
#: variables others read (the CLI, the Batch/ECS container side), not Settings
NOT_SETTINGS = {
    "HATCHWAY_PROJECT",
    "HATCHWAY_ENVIRONMENT",
    "HATCHWAY_RUN_PROJECT",
    "AWS_BATCH_JOB_ID",
    "AWS_BATCH_JOB_ATTEMPT",
    "ECS_CONTAINER_METADATA_URI_V4",
}
#: settings no variable sets (tests and callers set them; their limits are the platform's)
NO_VARIABLE = {"max_body_bytes", "max_sync_stdout_bytes", "max_log_bytes", "idempotency_seconds"}


def value_of(settings: Settings, name: str) -> Any:
    if name.startswith("limits."):
        return getattr(settings.limits, name.removeprefix("limits."))
    if name in ROUTES:
        return getattr(getattr(settings, ROUTES[name]), name)
    return getattr(settings, name)


def test_every_flat_name_routes_to_exactly_one_group() -> None:
    for group, kind in GROUPS.items():
        assert isinstance(getattr(Settings(), group), kind)
    owners: dict[str, list[str]] = {}
    for group, kind in GROUPS.items():
        for item in fields(kind):
            owners.setdefault(item.name, []).append(group)
    assert {name: groups for name, groups in owners.items() if len(groups) != 1} == {}
    assert {name: groups[0] for name, groups in owners.items()} == ROUTES
    top_level = {item.name for item in fields(Settings)}
    assert top_level == {"home", "backend", "bootstrap_token", "crash_at", "limits", *GROUPS}
    assert not top_level & set(ROUTES), "a flat name would shadow a top-level field"


def test_the_table_names_every_documented_variable_and_every_field() -> None:
    assert set(FILLS) | NOT_SETTINGS == set(ENV_VARS)
    filled = {name for _, name, _ in FILLS.values()}
    assert set(ROUTES) - NO_VARIABLE <= filled
    assert {f"limits.{item.name}" for item in fields(InputLimits)} <= filled


@pytest.mark.parametrize("variable", sorted(FILLS))
def test_each_variable_fills_the_field_it_names(variable: str) -> None:
    raw, name, expected = FILLS[variable]
    default = Settings.from_env({})
    settings = Settings.from_env({variable: raw})
    assert value_of(settings, name) == expected
    assert value_of(default, name) != expected, f"{variable}: choose a value unlike the default"


def test_overrides_take_flat_names_top_level_fields_and_whole_groups(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"HATCHWAY_HOME": str(tmp_path)}, lease_seconds=3.0, heartbeat_seconds=1.0, backend="aws", log_level="debug"
    )
    assert (settings.runs.lease_seconds, settings.runs.heartbeat_seconds) == (3.0, 1.0)
    assert settings.backend == "aws" and settings.observability.log_level == "DEBUG"
    assert settings.runs.workers == RunSettings.workers  # the rest of the group kept
    runs = RunSettings(workers=0)
    assert Settings.from_env({}, runs=runs).runs is runs


def test_an_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="lease_secs"):
        Settings.from_env({}, lease_secs=3)
    with pytest.raises(TypeError, match="kms_key"):  # a derived value, not a setting
        Settings().with_(kms_key="k")


def test_with_copies_and_routes_without_touching_the_original() -> None:
    before = Settings()
    after = before.with_(bucket="b", resource_prefix="p", max_answer_bytes=64 * 1024, crash_at=None)
    assert (after.aws.bucket, after.aws.outputs_bucket, after.aws.kms_key) == ("b", "b", "alias/p")
    assert after.server.max_answer_bytes == 64 * 1024 and after.server.max_body_bytes == 6 * MIB
    assert before.aws.bucket is None and before.server.max_answer_bytes == 6 * MIB
    assert before.with_() == before


def test_overrides_are_checked_like_variables() -> None:
    with pytest.raises(ValidationFailed) as caught:
        Settings.from_env({}, lease_seconds=1.0, heartbeat_seconds=1.0)
    assert caught.value.details[0]["loc"] == ["env", "HATCHWAY_HEARTBEAT_SECONDS"]


def test_the_region_falls_back_to_the_default_region() -> None:
    both = Settings.from_env({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-north-1"})
    assert both.aws.aws_region == "eu-west-1"
