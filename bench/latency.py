"""P1 and P2: what a sync call adds to the action it runs.

A sync call over HTTP (a real ``hatchway serve``, one keep-alive connection) against a bare
``subprocess.run`` of the very same argv from the benchmark process. The difference is everything
the gateway does: HTTP, the API Gateway event, authentication, resolving the action, recording the
run, the workspace and ``config.json``, the sandbox, reading the output, judging it, answering.
Measured per sandbox level, since the sandbox's own start-up is part of every call.
"""

from __future__ import annotations

import time

from bench.harness import PROJECT, PY, Context, Row, Server, interleave, percentile, request_bytes, spawn, timed

PY_NOOP = [PY, "-S", "-c", "print('{}')"]
ECHO = ["/bin/echo", "{}"]


def sync_samples(
    ctx: Context, server: Server, name: str, argv: list[str], pairs: int
) -> tuple[list[float], list[float], int]:
    """Latencies (ms) of sync calls of ``argv`` through ``server`` and of bare spawns of it, interleaved,
    and how many calls failed and were taken again."""
    server.register({"name": name, "sync_actions": ["call"], "container_parameters": {"entry_point": argv}})
    raw = request_bytes("POST", f"/v1/projects/{PROJECT}/actions/{name}/sync/call", {"parameters": {}})
    conn = server.connect()
    failed: list[bytes] = []

    def call() -> float:
        # On a shared host something outside the gateway may kill an action now and then (the
        # server log says "killed by signal 9"); such a call is counted, reported and taken again.
        while len(failed) <= max(3, pairs // 50):
            began = time.perf_counter_ns()
            status, body = conn.send(raw)
            if status == 200:
                return (time.perf_counter_ns() - began) / 1e6
            failed.append(body)
        raise RuntimeError(f"{len(failed)} sync calls failed, the last with {failed[-1][:300]!r}")

    try:
        gateway, bare = interleave(call, timed(lambda: spawn(argv)), pairs, ctx.n(10, 2))
    finally:
        conn.close()
    return gateway, bare, len(failed)


def _rows(ctx: Context, figure: str, argv: list[str], what: str, pairs: int, p50_max: float, p99: bool) -> list[Row]:
    rows: list[Row] = []
    for sandbox in ctx.sandboxes():
        server = ctx.server(sandbox=sandbox)
        gateway, bare, failed = sync_samples(ctx, server, f"bench-{figure.lower()}", argv, pairs)
        note = f"{failed} calls failed (action killed from outside) and were taken again" if failed else ""
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
            )
        )
        if p99:
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
                )
            )
    return rows


def p1(ctx: Context) -> list[Row]:
    """Sync call of a Python no-op (``python -S``) vs a bare spawn of it: p50 and p99."""
    return _rows(ctx, "P1", PY_NOOP, "python -S no-op", ctx.n(200, 5), 1.1, p99=True)


def p2(ctx: Context) -> list[Row]:
    """Sync call of ``/bin/echo '{}'`` vs a bare spawn of it: p50."""
    return _rows(ctx, "P2", ECHO, "/bin/echo '{}'", ctx.n(300, 5), 2.5, p99=False)


FIGURES = {"P1": p1, "P2": p2}
