"""P1 and P2: what a sync call adds to the action it runs.

A sync call over HTTP (a real ``hatchway serve``, one keep-alive connection) against a bare
``subprocess.run`` of the very same argv from the benchmark process. The difference is everything
the gateway does: HTTP, the API Gateway event, authentication, resolving the action, recording the
run, the workspace and ``config.json``, the sandbox, reading the output, judging it, answering.

Measured per sandbox level, since the sandbox's own start is part of every call. For each level
with a wrapper, a third series starts the same argv inside that sandbox from the benchmark process
(no gateway): the floor a sync call cannot go below at that level.

S1: what the default confinement costs a sync call: the same call through a gateway at the default
level and through one at ``none``, interleaved in the same run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.harness import (
    PROJECT,
    PY,
    Context,
    Row,
    Server,
    minimal_env,
    percentile,
    request_bytes,
    rotate,
    sandbox_level,
    spawn,
    timed,
)

PY_NOOP = [PY, "-S", "-c", "print('{}')"]
ECHO = ["/bin/echo", "{}"]


@contextlib.contextmanager
def sync_sampler(
    server: Server, name: str, argv: list[str], failed: list[bytes], limit: int, warm: bool = False
) -> Iterator[Callable[[], float]]:
    """Latency (ms) of one sync call of ``argv`` through ``server`` per call, on one keep-alive connection
    (``warm``: the action answers from a warm server)."""
    spec = {"name": name, "sync_actions": ["call"], "container_parameters": {"entry_point": argv}}
    server.register({**spec, "warm": True} if warm else spec)
    raw = request_bytes("POST", f"/v1/projects/{PROJECT}/actions/{name}/sync/call", {"parameters": {}})
    conn = server.connect()

    def call() -> float:
        # On a shared host something outside the gateway may kill an action now and then (the
        # server log says "killed by signal 9"); such a call is counted, reported and taken again.
        while len(failed) <= limit:
            began = time.perf_counter_ns()
            status, body = conn.send(raw)
            if status == 200:
                return (time.perf_counter_ns() - began) / 1e6
            failed.append(body)
        raise RuntimeError(f"{len(failed)} sync calls failed, the last with {failed[-1][:300]!r}")

    try:
        yield call
    finally:
        conn.close()


@contextlib.contextmanager
def sandbox_floor(ctx: Context, level: str, argv: list[str]) -> Iterator[Callable[[], float]]:
    """Latency (ms) of starting ``argv`` inside sandbox ``level`` without a gateway: the same
    prologue, cgroups, uid and Landlock domain the process executor would use, from here."""
    from hatchway.config import Settings
    from hatchway.domain.spec import parse_spec
    from hatchway.executors.sandbox import Sandbox

    home = Path(tempfile.mkdtemp(prefix=f"floor-{level}-", dir=ctx.root))
    workspace = Path(tempfile.mkdtemp(prefix="hatchway-bench-floor-"))  # where an action's uid can reach it
    settings = Settings.from_env({"HATCHWAY_HOME": str(home), "HATCHWAY_SANDBOX": level})
    sandbox = Sandbox.from_settings(settings)
    spec = parse_spec({"name": "floor", "container_parameters": {"entry_point": argv}})
    names = itertools.count()
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "cwd": workspace, "start_new_session": True,
               "close_fds": True}  # fmt: skip

    def start() -> float:
        began = time.perf_counter_ns()
        uid = sandbox.uids.take() if sandbox.uids is not None else None
        if uid is not None:
            os.chown(workspace, uid, uid)
        env = minimal_env()
        program = sandbox.python.argv(argv, env)  # the gateway's Python, or the one the action's uid can run
        confinement = sandbox.confine(program, spec, workspace, workspace, f"floor-{next(names)}", uid)
        proc = confinement.launch(confinement.argv, {**options, "env": env})
        _, err = proc.communicate()
        took = (time.perf_counter_ns() - began) / 1e6
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} in the {level} sandbox exited {proc.returncode}: {err[-300:]!r}")
        is_gone = confinement.release()
        if uid is not None and sandbox.uids is not None:
            sandbox.uids.give(uid, is_clean=is_gone and confinement.has_pids_cgroup)
        return took

    try:
        yield start
    finally:
        cgroups = sandbox.cgroups
        parents = {p for p in (cgroups.pids, cgroups.memory) if p is not None} if cgroups else set()
        for parent in parents:
            with contextlib.suppress(OSError):
                parent.rmdir()
        sandbox.close()
        shutil.rmtree(workspace, ignore_errors=True)


def _rows(ctx: Context, figure: str, argv: list[str], what: str, rounds: int, p50_max: float) -> list[Row]:
    rows: list[Row] = []
    for sandbox in ctx.sandboxes():
        server = ctx.server(sandbox=sandbox)
        level = sandbox_level(sandbox)
        failed: list[bytes] = []
        with contextlib.ExitStack() as stack:
            call = stack.enter_context(
                sync_sampler(server, f"bench-{figure.lower()}", argv, failed, max(3, rounds // 50))
            )
            samplers = [call, timed(lambda: spawn(argv))]
            if level != "none":
                samplers.append(stack.enter_context(sandbox_floor(ctx, level, argv)))
            series = rotate(samplers, rounds, ctx.n(10, 2))
        gateway, bare = series[0], series[1]
        note = f"{len(failed)} calls failed (action killed from outside) and were taken again" if failed else ""
        rows.append(
            Row(
                figure,
                f"sync call {what}, p50",
                server.setting,
                percentile(gateway, 50),
                "ms",
                baseline=percentile(bare, 50),
                baseline_metric="bare spawn p50",
                samples=len(gateway),
                ratio_max=p50_max,
                note=note,
            )  # fmt: skip
        )
        rows.append(
            Row(
                figure,
                f"sync call {what}, p99",
                server.setting,
                percentile(gateway, 99),
                "ms",
                baseline=percentile(bare, 99),
                baseline_metric="bare spawn p99",
                samples=len(gateway),
            )  # fmt: skip
        )
        if level != "none":
            floor = series[2]
            rows.append(
                Row(
                    figure,
                    f"  floor: sandbox start alone, {what}, p50",
                    f"sandbox {level}",
                    percentile(floor, 50),
                    "ms",
                    baseline=percentile(bare, 50),
                    baseline_metric="bare spawn p50",
                    samples=len(floor),
                )  # fmt: skip
            )
    return rows


def p1(ctx: Context) -> list[Row]:
    """Sync call of a Python no-op (``python -S``) vs a bare spawn of it: p50 and p99."""
    return _rows(ctx, "P1", PY_NOOP, "python -S no-op", ctx.n(100, 5), 1.1)


def p2(ctx: Context) -> list[Row]:
    """Sync call of ``/bin/echo '{}'`` vs a bare spawn of it: p50 and p99."""
    return _rows(ctx, "P2", ECHO, "/bin/echo '{}'", ctx.n(150, 5), 2.5)


def s1(ctx: Context) -> list[Row]:
    """What confinement costs: a sync call at the default sandbox level vs the same call at ``none``."""
    confined, bare = ctx.server(sandbox="auto"), ctx.server(sandbox="none")
    rows: list[Row] = []
    for argv, what in ((ECHO, "/bin/echo '{}'"), (PY_NOOP, "python -S no-op")):
        failed: list[bytes] = []
        with contextlib.ExitStack() as stack:
            samplers = [
                stack.enter_context(sync_sampler(server, f"bench-s1-{index}", argv, failed, ctx.n(10, 3)))
                for index, server in enumerate((confined, bare))
            ]
            series = rotate(samplers, ctx.n(150, 5), ctx.n(10, 2))
        for pct in (50, 99):
            rows.append(
                Row(
                    "S1",
                    f"sync call {what}, p{pct}",
                    confined.setting,
                    percentile(series[0], pct),
                    "ms",
                    baseline=percentile(series[1], pct),
                    baseline_metric=f"same call at sandbox none, p{pct}",
                    samples=len(series[0]),
                    note=f"{len(failed)} calls failed and were taken again" if failed else "",
                )  # fmt: skip
            )
    return rows


FIGURES = {"P1": p1, "P2": p2, "S1": s1}
