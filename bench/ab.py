"""A/B of the run path against another version of the code: ``python bench/ab.py REF [P4] [P5]``.

Starts the same gateway twice - one on REF's ``src/`` (``git archive``, nothing in the checkout
changes), one on this checkout's - and samples them in turn (A B, B A, ...; see
:func:`~bench.harness.rotate`), so load on the shared machine falls on both alike:

* P4: submits answered per second over 4 keep-alive connections to a gateway without workers, and
  the gateway's CPU per submit;
* SPLIT: ``hatchway serve`` without workers beside a ``hatchway worker`` process (2 threads, sandbox
  ``none``) on one home, one run at a time: milliseconds from the submit to the run's end (how fast
  the worker process hears of a run queued by the other), and the median of each side's rounds;
* P5: trivial runs (``/bin/true``, or ``--argv``) completed end to end per second with 2 workers at sandbox
  ``none`` (``--sandbox`` to change), and the gateway's CPU per run (its submit included), then
  each gateway's RSS after all its runs;
* P1, P2: sync calls of a ``python -S`` no-op and of ``/bin/echo '{}'`` (at ``--sandbox``) on one
  keep-alive connection: p50 and p99 in ms per round of ``--calls`` calls;
* P6: cold ``import handlers.api`` with template.yaml's environment for the API function (tracing as
  the template says; ``--env HATCHWAY_TRACING=off`` to compare without): each round takes
  ``--imports`` fresh interpreters of that side and as many of ``import boto3`` in turn, and gives
  the side's p50 as a percentage of boto3's in the same round (load falls on both), and its CPU.

Prints each round and the medians, B against A. Not a figure of ``run.py`` (it writes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import site
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python bench/ab.py`: make `bench` importable
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.harness import PY, REPO, Server, gateway_env, load, median, percentile, request_bytes, stop_group
from bench.latency import ECHO, PY_NOOP, sync_sampler
from bench.throughput import CONNECTIONS, TRUE_ACTION, _expect, _submit_path, run_batch


def checkout(ref: str, into: Path) -> Path:
    """``src/`` (and ``handlers/``, for P6) of ``ref`` unpacked under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref, "src", "handlers"], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def submits(server: Server, seconds: float) -> Callable[[], tuple[float, float]]:
    raw = request_bytes("POST", _submit_path(), {"parameters": {}})

    def sample() -> tuple[float, float]:
        before = server.cpu_seconds()
        got = _expect(load(server.port, lambda _: raw, CONNECTIONS, seconds=seconds), 202, "submit")
        return got.rate, (server.cpu_seconds() - before) * 1000 / max(1, len(got.latencies))

    return sample


def runs(server: Server, count: int) -> Callable[[], tuple[float, float]]:
    def sample() -> tuple[float, float]:
        before = server.cpu_seconds()
        rate = run_batch(server, count)
        return rate, (server.cpu_seconds() - before) * 1000 / count

    return sample


def syncs(call: Callable[[], float], count: int) -> Callable[[], tuple[float, float]]:
    def sample() -> tuple[float, float]:
        took = [call() for _ in range(count)]
        return median(took), percentile(took, 99)

    return sample


def one_at_a_time(server: Server, count: int) -> Callable[[], tuple[float, float]]:
    """Latency (ms, p50) of single runs from the submit to their end, with a pause between runs
    (the worker is idle when each is queued); the second value is the p90."""
    raw = request_bytes("POST", _submit_path(), {"parameters": {}})

    def sample() -> tuple[float, float]:
        conn = server.connect()
        db = sqlite3.connect(f"file:{server.db_path}?mode=ro", uri=True, timeout=30)
        took = []
        try:
            for _ in range(count):
                began = time.perf_counter()
                run_id = json.loads(conn.expect(raw, 202))["id"]
                deadline = time.monotonic() + 30
                while db.execute(
                    "SELECT json_extract(data, '$.finished_at') IS NULL FROM runs WHERE id = ?", (run_id,)
                ).fetchone()[0]:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"run {run_id} did not end within 30 s")
                    time.sleep(0.001)
                took.append((time.perf_counter() - began) * 1000)
                time.sleep(0.05)
        finally:
            conn.close()
            db.close()
        return median(took), percentile(took, 90)

    return sample


def cold_imports(src: Path, extra: dict[str, str], count: int) -> Callable[[], tuple[float, float]]:
    """P6: ``count`` cold imports of the Lambda handler on ``src`` (and its ``handlers/`` beside it) with
    template.yaml's environment, each followed by one of ``import boto3``: the handler's p50 as a
    percentage of boto3's, and the handler's p50 CPU (user + system) in ms."""
    from bench.coldstart import template_environment

    home = tempfile.mkdtemp(prefix="hatchway-ab-p6-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCHWAY_", "PYTHON"))}
    paths = [str(src), str(src.parent), *site.getsitepackages()]
    env.update({"PYTHONPATH": os.pathsep.join(paths), "HATCHWAY_HOME": home, **template_environment(), **extra})

    def one(code: str) -> tuple[float, float]:
        began = time.perf_counter()
        proc = subprocess.Popen([PY, "-S", "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        took = (time.perf_counter() - began) * 1000
        error = proc.stderr.read() if proc.stderr else b""
        if proc.stderr:
            proc.stderr.close()
        if status != 0:
            raise RuntimeError(f"python -c {code!r} failed: {error[-500:]!r}")
        return took, (usage.ru_utime + usage.ru_stime) * 1000

    def sample() -> tuple[float, float]:
        handler, boto = [], []
        for _ in range(count):
            handler.append(one("import handlers.api"))
            boto.append(one("import boto3"))
        return median([w for w, _ in handler]) * 100 / median([w for w, _ in boto]), median([c for _, c in handler])

    return sample


def compare(name: str, unit: str, a: Callable[[], tuple[float, float]], b: Callable[[], tuple[float, float]],
            rounds: int, second: str = "gateway CPU ms each") -> None:  # fmt: skip
    """Rounds of ``a`` and ``b`` in turn; each sample is (the figure in ``unit``, ``second``)."""
    a(), b()  # warm-up
    got: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for index in range(rounds):
        order = [("A", a), ("B", b)] if index % 2 == 0 else [("B", b), ("A", a)]
        for label, sample in order:
            got[label].append(sample())
    for label in ("A", "B"):
        firsts = " / ".join(f"{r:,.1f}" for r, _ in got[label])
        seconds = " / ".join(f"{c:.2f}" for _, c in got[label])
        print(f"{name} {label}: {firsts} {unit} (median {median([r for r, _ in got[label]]):,.1f}); "
              f"{second} {seconds} (median {median([c for _, c in got[label]]):.2f})")  # fmt: skip
    first_a, first_b = (median([r for r, _ in got[k]]) for k in ("A", "B"))
    second_a, second_b = (median([c for _, c in got[k]]) for k in ("A", "B"))
    print(f"{name} B/A: {first_b / first_a:.2f}x, {second} {second_b / second_a:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the A side: a git ref of this repository")
    parser.add_argument("figures", nargs="*", default=["P4", "P5"], help="P1, P2, P4, P5, P6, SPLIT (default P4 P5)")
    parser.add_argument("--rounds", type=int, default=6, help="samples of each side (default 6)")
    parser.add_argument("--count", type=int, default=400, help="runs per P5 round (default 400)")
    parser.add_argument("--runs", type=int, default=30, help="runs per SPLIT round (default 30)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of a P4 round (default 2 s)")
    parser.add_argument("--sandbox", default="none", help="P1, P2 and P5's sandbox level (default none)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for both gateways (repeatable)")  # fmt: skip
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the A gateway only (repeatable)")  # fmt: skip
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the B gateway only: HATCHWAY_PROCESSES=2 against A's 1, say")  # fmt: skip
    parser.add_argument("--imports", type=int, default=5, help="cold imports of each kind per P6 round (default 5)")
    parser.add_argument("--calls", type=int, default=100, help="sync calls per P1/P2 round (default 100)")
    parser.add_argument("--argv", default="/bin/true", help="P5's action, a command line (default /bin/true)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hatchway-ab-") as tmp:
        root = Path(tmp)
        src = {"A": checkout(args.ref, root / "a"), "B": REPO / "src"}
        print(f"A = {args.ref}, B = this checkout", flush=True)
        servers: list[Server] = []
        workers_of: list[subprocess.Popen[bytes]] = []
        try:
            for figure in (f.upper() for f in args.figures):
                if figure == "P6":  # no gateway: fresh interpreters importing the Lambda handler
                    both = dict(item.split("=", 1) for item in args.env)
                    sides = [
                        cold_imports(src[label], {**both, **dict(item.split("=", 1) for item in own)}, args.imports)
                        for label, own in (("A", args.a_env), ("B", args.b_env))
                    ]
                    compare("P6 import handlers.api (template.yaml)", "% of import boto3", *sides, args.rounds,
                            "CPU ms")  # fmt: skip
                    continue
                workers, sandbox = (0, "none") if figure in ("P4", "SPLIT") else (2, args.sandbox)
                if figure in ("P1", "P2"):
                    workers = 0
                pair = {}
                for label in ("A", "B"):
                    own = args.a_env if label == "A" else args.b_env
                    extra = dict(item.split("=", 1) for item in [*args.env, *own])
                    server = Server(root / f"{figure}-{label}", workers, sandbox, src=src[label], **extra)
                    servers.append(server.start())
                    if figure == "SPLIT":  # stopped with the run (ctx-less: by its pid, below)
                        env = gateway_env(server.home, src[label], HATCHWAY_WORKERS="2", HATCHWAY_SANDBOX="none")
                        workers_of.append(subprocess.Popen([PY, "-m", "hatchway", "worker"], env=env,
                                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                           start_new_session=True))  # fmt: skip
                    entry_point = (
                        shlex.split(args.argv) if figure == "P5" else TRUE_ACTION["container_parameters"]["entry_point"]
                    )
                    server.register({**TRUE_ACTION, "container_parameters": {"entry_point": entry_point}})
                    pair[label] = server
                if figure in ("P1", "P2"):
                    argv = PY_NOOP if figure == "P1" else ECHO
                    failed: list[bytes] = []
                    with (
                        sync_sampler(pair["A"], "ab-sync", argv, failed, args.calls) as call_a,
                        sync_sampler(pair["B"], "ab-sync", argv, failed, args.calls) as call_b,
                    ):
                        compare(f"{figure} sync call ({sandbox}), p50", "ms", syncs(call_a, args.calls),
                                syncs(call_b, args.calls), args.rounds, "p99 ms")  # fmt: skip
                elif figure == "SPLIT":
                    compare("SPLIT one run, submit to end, p50", "ms", one_at_a_time(pair["A"], args.runs),
                            one_at_a_time(pair["B"], args.runs), args.rounds, "p90 ms")  # fmt: skip
                elif figure == "P4":
                    compare("P4 submits", "/s", submits(pair["A"], args.seconds), submits(pair["B"], args.seconds),
                            args.rounds)  # fmt: skip
                else:
                    name = f"P5 runs ({sandbox}, {args.argv})"
                    compare(name, "/s", runs(pair["A"], args.count), runs(pair["B"], args.count), args.rounds)
                    rss = {label: pair[label].rss_mib() for label in ("A", "B")}
                    print(f"P9 RSS after {(args.rounds + 1) * args.count:,} runs: A {rss['A']:.1f} MiB, "
                          f"B {rss['B']:.1f} MiB, B/A {rss['B'] / rss['A']:.2f}x", flush=True)  # fmt: skip
        finally:
            for proc in workers_of:
                stop_group(proc)
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
