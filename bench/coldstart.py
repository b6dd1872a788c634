"""P6: cold starts - a fresh interpreter importing the Lambda handler, and ``hatchway --help``.

Each sample is the wall time of a new process. Every command runs with ``python -S`` and the
interpreter's site-packages on ``PYTHONPATH``: ``site`` would also run the machine's ``.pth``
start-up hooks (some environments add their own, which cost more than ``python -c pass`` itself),
and they belong to neither side of the comparison. Skipping them on both sides makes the ratio
stricter, never looser: the baseline gets smaller.

The deployed row imports the handler with the environment template.yaml gives the API function
(read from the template at each run, so it follows the deployment: ``HATCHWAY_TRACING=xray`` and the
aws backend) plus the variables the Lambda runtime sets in every function; a second row is the same
with tracing off, which shows what tracing adds. Wall times on a shared machine move by tens of
percent between runs, so the deployed import and ``import boto3`` are also counted in instructions
(valgrind, where installed: the same count on a busy machine as on a calm one).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import tempfile
from typing import Any

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


TEMPLATE = REPO / "template.yaml"
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "000000000000", "AWS::Partition": "aws"}
#: what the Lambda runtime itself sets in every function (not the template's): with LAMBDA_TASK_ROOT
#: powertools' Tracer is live (it patches the AWS SDK and HTTP libraries); outside Lambda it is not
LAMBDA_RUNTIME = {
    "LAMBDA_TASK_ROOT": str(REPO),
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "stand-in",
    "AWS_SECRET_ACCESS_KEY": "stand-in",  # noqa: S105 - never used: nothing reaches AWS
    "AWS_SESSION_TOKEN": "stand-in",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}
#: resource types whose ``!Ref`` is their ARN (for the others it is their name)
REF_IS_ARN = {"AWS::IAM::ManagedPolicy", "AWS::Batch::JobQueue", "AWS::Batch::JobDefinition"}


def template_environment(function: str = "ApiFunction") -> dict[str, str]:
    """The environment template.yaml gives ``function`` on Lambda (Globals, then the function's own
    variables), intrinsics replaced by stand-ins, plus what the Lambda runtime sets: read from the
    template each time, so the row measures what is deployed and cannot drift from it."""
    import yaml

    class Loader(yaml.SafeLoader):
        """CloudFormation's short forms (``!Ref``, ``!GetAtt``, ...) as their long forms."""

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    template = yaml.load(TEMPLATE.read_text(), Loader=Loader)  # noqa: S506 - SafeLoader plus the intrinsics
    parameters = template.get("Parameters", {})
    resources = template["Resources"]

    def arn(name: str) -> str:
        kind = resources.get(name, {}).get("Type", "AWS::Unknown::Thing").split("::")
        service = kind[1].lower()
        if service == "kms":
            return "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000"
        region = "" if service == "iam" else "us-east-1"
        return f"arn:aws:{service}:{region}:000000000000:{kind[2].lower()}/{name.lower()}"

    def resolve(value: Any) -> str:
        if isinstance(value, str | int | float):
            return str(value)
        if "Ref" in value:
            name = value["Ref"]
            if name in PSEUDO:
                return PSEUDO[name]
            if name in parameters:
                parameter = parameters[name]
                if "Default" in parameter:
                    return str(parameter["Default"])
                if "Subnet" in parameter.get("Type", ""):
                    return "subnet-00000000,subnet-11111111"
                return f"stand-in-{name.lower()}".ljust(int(parameter.get("MinLength", 0)), "x")
            if resources.get(name, {}).get("Type") in REF_IS_ARN:
                return arn(name)
            return f"hatchway-{name.lower()}"
        if "Fn::GetAtt" in value:
            name, attribute = value["Fn::GetAtt"]
            return "sg-00000000" if attribute == "GroupId" else arn(name)
        if "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            return separator.join(resolve(item) for item in items) if isinstance(items, list) else resolve(items)
        if "Fn::Sub" in value:
            return re.sub(r"\$\{([^}]+)\}", lambda m: resolve({"Ref": m.group(1)}), value["Fn::Sub"])
        raise ValueError(f"template.yaml: no stand-in for {value!r} (bench/coldstart.py)")

    properties = resources[function]["Properties"]
    variables = {
        **template["Globals"]["Function"].get("Environment", {}).get("Variables", {}),
        **properties.get("Environment", {}).get("Variables", {}),
    }
    env = {key: resolve(value) for key, value in variables.items()}
    env["AWS_LAMBDA_FUNCTION_NAME"] = resolve(properties.get("FunctionName", function))
    env["_HANDLER"] = properties.get("Handler", "")
    # empty on AWS; pointed at a closed loopback port so that nothing could reach AWS from the bench
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    return {**LAMBDA_RUNTIME, **env}


def _python(code: str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run([PY, "-S", "-c", code, *args], env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"python -c {code!r} {' '.join(args)} failed: {done.stderr[-500:]!r}")


def instructions(code: str, env: dict[str, str]) -> float:
    """Millions of instructions a fresh ``python -S -c code`` executes, counted by valgrind (hash
    seed fixed: the count repeats within a fraction of a percent)."""
    valgrind = [shutil.which("valgrind") or "valgrind", "--tool=cachegrind", "--cache-sim=no"]
    command = [*valgrind, "--cachegrind-out-file=/dev/null", PY, "-S", "-c", code]
    done = subprocess.run(command, env={**env, "PYTHONHASHSEED": "0"}, capture_output=True, text=True, check=False)
    counted = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or counted is None:
        raise RuntimeError(f"valgrind python -c {code!r} failed: {done.stderr[-500:]!r}")
    return int(counted.group(1).replace(",", "")) / 1e6


def p6(ctx: Context) -> list[Row]:
    """Cold start: import handlers.api (as deployed) vs import boto3; hatchway --help vs python -c pass."""
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise Skip("boto3 is not installed (pip install 'hatchway[aws]')") from None
    rows = []
    with tempfile.TemporaryDirectory(dir=ctx.root) as home:
        env = _env(home)
        lambda_env = {**env, **template_environment()}
        # the same without X-Ray: what tracing costs a cold start, and the row this figure had before
        untraced_env = {**lambda_env, "HATCHWAY_TRACING": "off"}
        pairs, warmup = ctx.n(10, 2), ctx.n(2, 1)
        embedded, on_lambda, untraced, boto, floor = rotate(
            [
                timed(lambda: _python(HANDLER, env=env)),
                timed(lambda: _python(HANDLER, env=lambda_env)),
                timed(lambda: _python(HANDLER, env=untraced_env)),
                timed(lambda: _python(BOTO3, env=env)),
                timed(lambda: _python(POWERTOOLS, env=env)),
            ],
            pairs,
            warmup,
        )
        counted = None
        if shutil.which("valgrind") and not ctx.quick:
            counted = instructions(HANDLER, lambda_env), instructions(BOTO3, env), instructions(POWERTOOLS, env)
        cli, bare = interleave(
            timed(lambda: _python(HELP, "--help", env=env)), timed(lambda: _python("pass", env=env)), pairs, warmup
        )

    def p50_and_p99(metric: str, setting: str, got: list[float], base: list[float], base_metric: str,
                    target: float | None, note: str = "") -> list[Row]:  # fmt: skip
        return [
            Row("P6", f"{metric}, p50", setting, percentile(got, 50), "ms", percentile(base, 50),
                f"{base_metric} p50", len(got), ratio_max=target, note=note),
            # with ten samples a p99 is the slowest one
            Row("P6", f"{metric}, p99", setting, percentile(got, 99), "ms", percentile(base, 99),
                f"{base_metric} p99", len(got)),
        ]  # fmt: skip

    handler = "cold start: import handlers.api"
    rows.extend(p50_and_p99(handler, "embedded backend", embedded, boto, "import boto3", 1.5))
    deployed = (
        f"template.yaml's environment for the API function ({lambda_env['HATCHWAY_TRACING']} tracing) and "
        "the Lambda runtime's own variables (LAMBDA_TASK_ROOT: powertools' Tracer is live and patches)"
    )
    rows.extend(p50_and_p99(handler, "as deployed (template.yaml)", on_lambda, boto, "import boto3", 1.5, deployed))
    on_aws = "boto3 itself loads with the first request that reaches AWS (clients are built on first use)"
    rows.extend(p50_and_p99(handler, "template.yaml, tracing off", untraced, boto, "import boto3", None, on_aws))
    if counted is not None:
        handler_count, boto_count, floor_count = counted
        rows.append(
            Row("P6", "cold start: import handlers.api, instructions (valgrind)", "as deployed (template.yaml)",
                handler_count, "M instr", boto_count, "import boto3 instructions", 1,
                note="CPU work, counted: the same on a busy machine as on a calm one")
        )  # fmt: skip
        rows.append(
            Row("P6", "  floor: import powertools' resolver and validation, instructions (valgrind)", "-",
                floor_count, "M instr", boto_count, "import boto3 instructions", 1)
        )  # fmt: skip
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
