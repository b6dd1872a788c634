"""P6: cold starts - a fresh interpreter importing the Lambda handler, and ``hatchway --help``.

Each sample is the wall time of a new process. Every command runs with ``python -S`` and the
interpreter's site-packages on ``PYTHONPATH``: ``site`` would also run the machine's ``.pth``
start-up hooks (some environments add their own, which cost more than ``python -c pass`` itself),
and they belong to neither side of the comparison. Skipping them on both sides makes the ratio
stricter, never looser: the baseline gets smaller.
"""

from __future__ import annotations

import os
import site
import subprocess
import tempfile

from bench.harness import PY, REPO, SRC, Context, Row, Skip, interleave, percentile, rotate, timed

HANDLER = "import handlers.api"
BOTO3 = "import boto3"
#: what any Lambda answering HTTP through powertools' resolver with request validation imports
POWERTOOLS = (
    "import aws_lambda_powertools.logging, aws_lambda_powertools.event_handler,"
    " aws_lambda_powertools.event_handler.openapi.params"
)
HELP = "from hatchway.cli import main; main()"  # what the `hatchway` console script runs


def _env(home: str) -> dict[str, str]:
    paths = [str(SRC), str(REPO), *site.getsitepackages()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCHWAY_", "PYTHON"))}
    env.update({"PYTHONPATH": os.pathsep.join(paths), "HATCHWAY_HOME": home})
    return env


#: template.yaml's settings for the API function, with stand-in values (nothing is called at import)
LAMBDA_ENV = {
    "HATCHWAY_BACKEND": "aws",
    "HATCHWAY_TABLE_NAME": "hatchway",
    "HATCHWAY_KMS_KEY_ID": "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000",
    "HATCHWAY_BUCKET": "hatchway-outputs",
    "HATCHWAY_RESOURCE_PREFIX": "hatchway",
    "HATCHWAY_SYNC_EXECUTOR": "lambda",
    "HATCHWAY_RUN_EXECUTOR": "batch",
    "HATCHWAY_LAMBDA_ROLE_ARN": "arn:aws:iam::000000000000:role/actions",
    "HATCHWAY_BATCH_JOB_QUEUE": "hatchway",
    "HATCHWAY_ECS_CLUSTER": "hatchway",
    "HATCHWAY_SUBNETS": "subnet-00000000",
    "HATCHWAY_SECURITY_GROUPS": "sg-00000000",
    "HATCHWAY_EXECUTION_ROLE_ARN": "arn:aws:iam::000000000000:role/execution",
    "HATCHWAY_TASK_POLICY_ARN": "arn:aws:iam::000000000000:policy/tasks",
    "HATCHWAY_LOG_GROUP": "/hatchway/runs",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "stand-in",
    "AWS_SECRET_ACCESS_KEY": "stand-in",  # noqa: S105 - never used: nothing reaches AWS
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}


def _python(code: str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run([PY, "-S", "-c", code, *args], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"python -c {code!r} {' '.join(args)} failed: {done.stderr[-500:]!r}")


def p6(ctx: Context) -> list[Row]:
    """Cold start: import handlers.api vs import boto3; hatchway --help vs python -c pass."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise Skip("boto3 is not installed (pip install 'hatchway[aws]')") from None
    rows = []
    with tempfile.TemporaryDirectory(dir=ctx.root) as home:
        env = _env(home)
        lambda_env = {**env, **LAMBDA_ENV}
        pairs, warmup = ctx.n(10, 2), ctx.n(2, 1)
        embedded, on_lambda, boto, floor = rotate(
            [
                timed(lambda: _python(HANDLER, env=env)),
                timed(lambda: _python(HANDLER, env=lambda_env)),
                timed(lambda: _python(BOTO3, env=env)),
                timed(lambda: _python(POWERTOOLS, env=env)),
            ],
            pairs,
            warmup,
        )
        cli, bare = interleave(
            timed(lambda: _python(HELP, "--help", env=env)), timed(lambda: _python("pass", env=env)), pairs, warmup
        )

    def p50_and_p99(metric: str, setting: str, got: list[float], base: list[float], base_metric: str,
                    target: float, note: str = "") -> list[Row]:  # fmt: skip
        return [
            Row("P6", f"{metric}, p50", setting, percentile(got, 50), "ms", percentile(base, 50),
                f"{base_metric} p50", len(got), ratio_max=target, note=note),
            # with ten samples a p99 is the slowest one
            Row("P6", f"{metric}, p99", setting, percentile(got, 99), "ms", percentile(base, 99),
                f"{base_metric} p99", len(got)),
        ]  # fmt: skip

    handler = "cold start: import handlers.api"
    rows.extend(p50_and_p99(handler, "embedded backend", embedded, boto, "import boto3", 1.5))
    on_aws = "boto3 itself loads with the first request that reaches AWS (clients are built on first use)"
    rows.extend(p50_and_p99(handler, "aws backend (template.yaml)", on_lambda, boto, "import boto3", 1.5, on_aws))
    rows.append(
        Row(
            "P6",
            "  floor: import powertools' resolver and validation (pydantic), p50",
            "-",
            percentile(floor, 50),
            "ms",
            percentile(boto, 50),
            "import boto3 p50",
            len(floor),
        )
    )
    rows.extend(p50_and_p99("cold start: hatchway --help", "-", cli, bare, "python -c pass", 5))
    return rows


FIGURES = {"P6": p6}
