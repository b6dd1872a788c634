"""P4 and P5: how fast the gateway accepts runs, and how fast it finishes them.

P4 drives a gateway without workers (the API alone) with four keep-alive connections in a closed
loop and compares ``POST .../runs`` (each answer a 202 for a run committed to SQLite) with
``GET /health`` on the same server: the rate sustained and the latency of each request.

P5 submits trivial runs (``/bin/true``) to a gateway with its default two workers and counts them
SUCCESSFUL end to end - from the first submit to the last run's ``finished_at`` - against the raw
rate of the same spawns from two threads. Completion is observed by reading the gateway's SQLite
file (read-only), so watching costs the gateway nothing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.harness import (
    PROJECT,
    Context,
    Load,
    Row,
    Server,
    interleave,
    load,
    median,
    percentile,
    request_bytes,
    spawn,
)

TRUE = ["/bin/true"]
TRUE_ACTION = {"name": "bench-true", "container_parameters": {"entry_point": TRUE}, "timeout": 1}
CONNECTIONS = 4


def _submit_path(name: str = "bench-true") -> str:
    return f"/v1/projects/{PROJECT}/actions/{name}/runs"


def _expect(result: Load, status: int, what: str) -> Load:
    wrong = {code: n for code, n in result.statuses.items() if code != status}
    if wrong:
        raise RuntimeError(f"{what}: unexpected answers {wrong} (wanted {status})")
    return result


def p4(ctx: Context) -> list[Row]:
    """Async submit (202, stored) vs GET /health on the same server, 4 connections: rate and p50."""
    server = ctx.server(workers=0)
    server.register(TRUE_ACTION)
    submit = request_bytes("POST", _submit_path(), {"parameters": {}})
    health = request_bytes("GET", "/health")
    seconds = ctx.n(2.0, 0.2)

    cpu: dict[int, list[float]] = {202: [], 200: []}

    def rounds(raw: bytes, status: int) -> Callable[[], Load]:
        def sample() -> Load:
            before = server.cpu_seconds()
            result = _expect(load(server.port, lambda _: raw, CONNECTIONS, seconds=seconds), status, "answer")
            cpu[status].append((server.cpu_seconds() - before) / max(1, len(result.latencies)))
            return result

        return sample

    got, base = interleave(rounds(submit, 202), rounds(health, 200), ctx.n(4, 1), warmup=1)
    group = ctx.server(workers=0, HATCHWAY_PROCESSES="2")  # the same, two serve processes on the port
    group.register(TRUE_ACTION)
    two, one = interleave(submits_to(group, seconds), submits_to(server, seconds), ctx.n(4, 1), warmup=1)
    insert = store_floor(ctx, ctx.n(300, 20))
    stored = _count(server.db_path, "SELECT count(*) FROM runs WHERE mode = 'async'")
    accepted = sum(r.statuses[202] for r in got)
    if stored < accepted:
        raise RuntimeError(f"{accepted} submits answered 202 but only {stored} runs are stored")
    latencies = [x for r in got for x in r.latencies]
    base_latencies = [x for r in base for x in r.latencies]
    rate, base_rate = median([r.rate for r in got]), median([r.rate for r in base])
    return [
        Row(
            "P4",
            "async submit rate, 4 connections",
            "API only",
            rate,
            "/s",
            base_rate,
            "GET /health rate",
            len(got),
            value_min=5000,
            note=f"{accepted} runs accepted and stored; gateway CPU per request: submit "
            f"{median(cpu[202]) * 1000:.2f} ms, health {median(cpu[200]) * 1000:.2f} ms",
            extra={
                "gateway_cpu_ms_per_submit": round(median(cpu[202]) * 1000, 3),
                "gateway_cpu_ms_per_health": round(median(cpu[200]) * 1000, 3),
            },
        ),
        Row(
            "P4",
            "async submit rate, 4 connections",
            f"API only{group.processes_note}",
            median([r.rate for r in two]),
            "/s",
            median([r.rate for r in one]),
            "submit rate, one process",
            len(two),
            note=f"rounds {_rates(two)} against {_rates(one)}",
        ),
        Row(
            "P4",
            "async submit p50",
            "API only",
            percentile(latencies, 50),
            "ms",
            percentile(base_latencies, 50),
            "GET /health p50",
            len(latencies),
            ratio_max=1.5,
        ),
        Row(
            "P4",
            "async submit p99",
            "API only",
            percentile(latencies, 99),
            "ms",
            percentile(base_latencies, 99),
            "GET /health p99",
            len(latencies),
        ),
        Row(
            "P4",
            "  floor: store one run (SQLite insert + commit), p50",
            "same disk",
            percentile(insert, 50),
            "ms",
            percentile(base_latencies, 50),
            "GET /health p50",
            len(insert),
        ),
    ]


def _rates(loads: list[Load]) -> str:
    return ", ".join(f"{r.rate:,.0f}" for r in loads)


def submits_to(server: Server, seconds: float = 2.0) -> Callable[[], Load]:
    """A round of submits to ``server`` over 4 connections (every one answered 202)."""
    raw = request_bytes("POST", _submit_path(), {"parameters": {}})
    return lambda: _expect(load(server.port, lambda _: raw, CONNECTIONS, seconds=seconds), 202, "submit")


def store_floor(ctx: Context, count: int) -> list[float]:
    """Latencies (ms) of storing a run the way a submit does (one autocommit INSERT of the same
    record) in a fresh store on the same file system, from this process: a submit's durable part."""
    from hatchway.domain.runs import Mode, Run, RunStatus, new_run_id, now_ms
    from hatchway.store.sqlite import SqliteStore

    store = SqliteStore(Path(tempfile.mkdtemp(prefix="floor-store-", dir=ctx.root)) / "hatchway.db")
    digest = "sha256:" + "0" * 64
    samples = []
    try:
        for _ in range(count):
            now = now_ms()
            run = Run(id=new_run_id(now), project_id=PROJECT, environment="development", action_name="bench-true",
                      action_version=1, action_digest=digest, invoked="run", mode=Mode.ASYNC,
                      status=RunStatus.ENQUEUED, max_attempts=1, parameters={}, created_at=now,
                      available_at=now, timeout_seconds=60)  # fmt: skip
            began = time.perf_counter_ns()
            store.runs.create_run(run)
            samples.append((time.perf_counter_ns() - began) / 1e6)
    finally:
        store.close()
    return samples


def _count(db: Path, sql: str, *args: object) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


def run_batch(
    server: Server,
    count: int,
    action: str = "bench-true",
    timeout: float = 300.0,
    tag: str | None = None,
    failed_ok: int = 0,
) -> float:
    """Submit ``count`` runs and wait until all are SUCCESSFUL; runs completed per second, end to end.
    The runs carry ``tag`` as their ``external_user_id`` (a fresh one by default). Up to ``failed_ok``
    of them may fail instead (on a shared host something outside may kill an action) and count as
    completed; the caller reports them."""
    tag = tag or "bench-" + uuid.uuid4().hex[:12]
    body = request_bytes("POST", _submit_path(action), {"parameters": {}, "external_user_id": tag})
    started = time.time()
    _expect(load(server.port, lambda _: body, CONNECTIONS, count=count), 202, "submit")
    deadline = time.monotonic() + timeout
    with contextlib.closing(sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=30)) as conn:
        while True:
            done, failed, last = conn.execute(
                "SELECT sum(status = 'SUCCESSFUL'), sum(status IN ('FAILED', 'TERMINATED')), "
                "max(json_extract(data, '$.finished_at')) FROM runs WHERE external_user_id = ?",
                (tag,),
            ).fetchone()
            if (failed or 0) > failed_ok:
                raise RuntimeError(f"{failed} benchmark runs failed; see {server.log_path}")
            if (done or 0) + (failed or 0) == count:
                return float(count / max(last / 1000 - started, 1e-6))
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done or 0} of {count} runs finished within {timeout:g} s")
            time.sleep(0.02)


def spawn_rate(argv: list[str], count: int, threads: int = 2) -> float:
    """Bare spawns of ``argv`` per second from ``threads`` threads."""
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def work(n: int) -> None:
        for _ in range(n):
            spawn(argv)

    workers = [threading.Thread(target=work, args=(n,)) for n in share]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return count / (time.perf_counter() - started)


def end_to_end(ctx: Context, server: Server) -> tuple[int, list[float], list[float], float]:
    """Rounds of trivial runs through ``server`` and of raw spawns, interleaved: the runs per round,
    both series of rates, and the gateway's CPU time per run (submit included)."""
    server.register(TRUE_ACTION)
    # size the rounds to about two seconds at this server's pace
    pace = run_batch(server, ctx.n(40, 4))
    count = ctx.n(max(50, min(1000, int(pace * 2))), 6)
    cpu: list[float] = []

    def gateway() -> float:
        before = server.cpu_seconds()
        rate = run_batch(server, count)
        cpu.append((server.cpu_seconds() - before) / count)
        return rate

    got, base = interleave(gateway, lambda: spawn_rate(TRUE, count), ctx.n(3, 1), 0)
    return count, got, base, median(cpu)


def p5(ctx: Context) -> list[Row]:
    """Trivial runs completed end to end per second with 2 workers vs raw spawns from 2 threads."""
    rows = []
    servers = [ctx.server(sandbox=sandbox) for sandbox in ctx.sandboxes()]
    servers.append(ctx.server(sandbox="none", HATCHWAY_PROCESSES="2"))  # two serve processes, a worker each
    for server in servers:
        count, got, base, cpu = end_to_end(ctx, server)
        rows.append(
            Row(
                "P5",
                "runs completed end to end, 2 workers",
                server.setting,
                median(got),
                "/s",
                median(base),
                "raw spawn rate, 2 threads",
                len(got),
                ratio_min=0.8,
                value_min=1000,
                note=f"rounds of {count} runs; gateway CPU {cpu * 1000:.2f} ms per run (one core: <= {1 / cpu:,.0f}/s)",
                extra={
                    "rounds": [round(x, 1) for x in got],
                    "baseline_rounds": [round(x, 1) for x in base],
                    "gateway_cpu_ms_per_run": round(cpu * 1000, 3),
                },
            )
        )
    return rows


FIGURES = {"P4": p4, "P5": p5}
