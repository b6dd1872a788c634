"""Sync-call latency: warm container Lambda vs a cold ``docker run`` vs a bare host spawn.

One gateway (in-process, SQLite, the real executors) registers the same action three times, each
pinned to an executor with ``metadata.executor``: ``lambda-local`` (warm containers
under the Runtime Interface Emulator), ``docker`` (a fresh container per call) and ``process``
(the same command spawned on the host; bare by default, ``--host-sandbox`` puts it in the process
executor's sandbox). Calls are interleaved round-robin, so all three see the
same machine load, and every number comes from this one run. The latency is that of
``Gateway.call_sync`` (auth, parameters, run record, logs, the executor), without HTTP.

    python bench/docker_sync.py [--calls 40] [--docker-host unix://...] [--host-sandbox none] [--json]
    python bench/run.py C1       the same figure in the benchmark table (bench/results/latest.json)

Needs a Docker engine (``--docker-host``, ``HATCHWAY_TEST_DOCKER_HOST`` or ``DOCKER_HOST``; else a
private daemon is started as the test suite does), the base image (built if missing) and the
emulator from aws-sam-cli (``HATCHWAY_LAMBDA_RIE`` or ``sam`` on PATH). Under ``bench/run.py``
(figure C1) it starts no daemon and builds no base image: without an engine that answers, the
emulator or (in ``--quick`` mode) the base image, the figure is skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from hatchway.config import Settings  # noqa: E402
from hatchway.domain.runs import RunRequest  # noqa: E402
from hatchway.domain.tenants import Principal  # noqa: E402
from hatchway.wiring import bootstrap, build_services  # noqa: E402

ACTION_DIR = REPO / "tests" / "integration" / "docker_action"
VARIANTS = ("lambda-local", "docker", "process")
ADMIN = Principal(None, None, frozenset({"admin"}))


def action(executor: str) -> dict[str, Any]:
    # the host variant runs Debian's python3 when there is one: the interpreter of the base image
    python = (shutil.which("python3", path="/usr/bin:/bin") or "python3") if executor == "process" else "python3"
    return {
        "name": f"bench-{executor}",
        "parameters": [{"name": "mode", "default": "ok"}],
        "sync_actions": ["go"],
        "compute_requirements": {"vCPU": 1024, "memory": 2048},
        "container_parameters": {"entry_point": [python], "command": ["act.py"]},
        "docker_config": {"context": str(ACTION_DIR), "dockerfile": "Dockerfile"},
        "metadata": {"executor": executor},
    }


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(
    docker_host: str, calls: int, rie: str | None = None, host_sandbox: str = "none", budget_seconds: float = 300.0
) -> dict[str, Any]:
    """Latencies (ms) of ``calls`` sync calls per variant, interleaved (fewer if ``budget_seconds``
    run out); p50/p99 and ratios."""
    from hatchway.executors.containers.client import docker_client
    from hatchway.executors.containers.images import ensure_base

    ensure_base(docker_client(docker_host, timeout=600))
    with tempfile.TemporaryDirectory(prefix="hatchway-bench-") as home:
        env = {"HATCHWAY_HOME": home, "HATCHWAY_BOOTSTRAP_TOKEN": "bench", "HATCHWAY_LOG_LEVEL": "WARNING"}
        settings = Settings.from_env(
            env, docker_host=docker_host, lambda_rie_path=rie, workers=0, sandbox=host_sandbox, executor="auto"
        )
        services = build_services(settings, pool=True)
        bootstrap(services)
        if "lambda-local" not in services.placement.named:
            raise SystemExit("no Lambda Runtime Interface Emulator: install aws-sam-cli or set HATCHWAY_LAMBDA_RIE")
        process = services.placement.named["process"][0]
        sandbox = getattr(getattr(process, "sandbox", None), "kind", "none")
        try:
            for executor in VARIANTS:
                services.actions.register(ADMIN, "proj_local", "development", action(executor))
            samples: dict[str, list[float]] = {name: [] for name in VARIANTS}

            def call(executor: str) -> float:
                started = time.perf_counter()
                services.runs.call_sync(ADMIN, "proj_local", "development", f"bench-{executor}", "go", RunRequest())
                return (time.perf_counter() - started) * 1000

            for executor in VARIANTS:  # warm-up: image checks, the first (cold) Lambda container
                call(executor)
            stop_at = time.monotonic() + budget_seconds
            for _ in range(calls):
                for executor in VARIANTS:
                    samples[executor].append(call(executor))
                if time.monotonic() > stop_at:
                    break
        finally:
            services.close()
    result: dict[str, Any] = {"calls": len(samples["process"]), "cpus": os.cpu_count(), "host_sandbox": sandbox}
    for name, values in samples.items():
        result[name] = {
            "p50_ms": round(statistics.median(values), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "mean_ms": round(statistics.fmean(values), 2),
        }
    warm, cold, spawn = (result[name]["p50_ms"] for name in VARIANTS)
    result["ratios"] = {
        "cold_docker_run_over_warm_lambda_p50": round(cold / warm, 2),
        "warm_lambda_over_host_spawn_p50": round(warm / spawn, 2),
    }
    return result


def c1(ctx: Any) -> list[Any]:
    """Sync call: warm container Lambda vs a cold docker run and a bare host spawn (p50, p99)."""
    from bench.harness import Row, Skip

    try:
        import docker  # noqa: F401

        from hatchway.executors.containers.client import docker_client
        from hatchway.executors.containers.engine import engine_answers
        from hatchway.executors.containers.images import base_tag
        from hatchway.executors.containers.lambda_local import find_rie
    except ImportError:
        raise Skip("the docker package is not installed (pip install 'hatchway[docker]')") from None
    host = os.environ.get("HATCHWAY_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if not engine_answers(host):
        raise Skip("no Docker engine answers (set DOCKER_HOST or HATCHWAY_TEST_DOCKER_HOST)")
    rie = find_rie(os.environ.get("HATCHWAY_LAMBDA_RIE"))
    if rie is None:
        raise Skip("no Lambda Runtime Interface Emulator (install aws-sam-cli or set HATCHWAY_LAMBDA_RIE)")
    if ctx.quick:
        import docker.errors

        try:
            docker_client(host).images.get(base_tag("3.11"))
        except docker.errors.ImageNotFound:
            raise Skip("the base image is not built (infra/images/build)") from None
    result = measure(host or "unix:///var/run/docker.sock", ctx.n(40, 3), str(rie), "none", ctx.n(300.0, 60.0))
    warm, cold, spawn = (result[name] for name in VARIANTS)
    n = result["calls"]
    metric = "sync call, warm container Lambda ({})"
    return [
        Row("C1", metric.format("p50"), "lambda-local vs docker", warm["p50_ms"], "ms",
            cold["p50_ms"], "cold docker run p50", n, ratio_max=1.0),
        Row("C1", metric.format("p99"), "lambda-local vs docker", warm["p99_ms"], "ms",
            cold["p99_ms"], "cold docker run p99", n),
        Row("C1", metric.format("p50"), "lambda-local vs process (no sandbox)", warm["p50_ms"], "ms",
            spawn["p50_ms"], "bare host spawn p50", n),
        Row("C1", metric.format("p99"), "lambda-local vs process (no sandbox)", warm["p99_ms"], "ms",
            spawn["p99_ms"], "bare host spawn p99", n),
    ]  # fmt: skip


FIGURES = {"C1": c1}


def default_docker_host() -> tuple[str, Any]:
    """An engine to measure on, and a daemon to stop afterwards (or None)."""
    given = os.environ.get("HATCHWAY_TEST_DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    if given:
        return given, None
    from tests import dockerd

    why = dockerd.ensure_installed()
    if why:
        raise SystemExit(f"no Docker engine: {why}")
    daemon = dockerd.start()
    return daemon.host, daemon


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--docker-host")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--host-sandbox", default="none", help="sandbox of the host spawn: none (bare, default), limits, bwrap, auto"
    )
    args = parser.parse_args(argv)
    daemon = None
    host = args.docker_host
    if host is None:
        host, daemon = default_docker_host()
    try:
        result = measure(host, args.calls, os.environ.get("HATCHWAY_LAMBDA_RIE"), args.host_sandbox)
    finally:
        if daemon is not None:
            daemon.stop()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"sync call latency, {args.calls} calls each, interleaved ({result['cpus']} CPUs; "
        f"host spawns in the {result['host_sandbox']} sandbox)"
    )
    print(f"{'executor':<28}{'p50 ms':>10}{'p99 ms':>10}")
    labels = {"lambda-local": "warm container Lambda", "docker": "cold docker run", "process": "bare host spawn"}
    for name in VARIANTS:
        print(f"{labels[name]:<28}{result[name]['p50_ms']:>10.1f}{result[name]['p99_ms']:>10.1f}")
    ratios = result["ratios"]
    print(f"cold docker run / warm Lambda (p50): {ratios['cold_docker_run_over_warm_lambda_p50']:.1f}x")
    print(f"warm Lambda / host spawn (p50):      {ratios['warm_lambda_over_host_spawn_p50']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
