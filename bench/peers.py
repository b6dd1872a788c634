"""Peers: hatchway side by side with the stacks users would build instead, in the same run.

Every figure here samples hatchway and its peers in turn (rotating order, see ``harness.rotate``) and
prints hatchway's ratio to each peer and to the best of them. The peers do the same trivial work at
the same concurrency:

* **bare ASGI** (``bench/stacks/asgi_floor.py``): a minimal ASGI app under the same uvicorn as
  ``hatchway serve``. P1/P2: its POST handler runs the same argv with ``subprocess.run`` in a thread
  and answers the stdout as JSON - the floor of a sync call over HTTP. P4: its POST handler commits
  one row to SQLite (WAL, ``synchronous=NORMAL``, as hatchway's store) before answering 202 - the
  floor of a durable submit.
* **Huey** (``huey.SqliteHuey``'s storage, WAL): P4 enqueues from 4 threads of one process sharing
  Huey's one connection, at ``synchronous=NORMAL`` (hatchway's default durability) and at Huey's
  default (SQLite's compiled-in FULL here: an fsync per commit), the latter compared with a hatchway
  at ``HATCHWAY_DB_SYNCHRONOUS=FULL`` too; P5 runs ``huey_consumer`` with 2 worker
  threads (Huey's default worker type), polling every 10-50 ms when idle (``-d 0.01 -m 0.05``; the
  default backs off to 10 s, which would decide the figure by itself).
* **Celery** on Redis: P4 ``apply_async`` from 4 threads of one process; P5 a prefork worker with
  concurrency 2, late acknowledgement (at least once, as hatchway), no result backend.
* **RQ** on Redis: P4 ``Queue.enqueue`` from 4 threads of one process sharing one client; P5 two
  ``rq worker`` processes (RQ's default worker: a forked work horse per job).

Redis is started by the benchmark on a free loopback port with a directory of its own, keeping
everything in memory (no AOF, no RDB snapshots): a task Celery or RQ accepted is lost if Redis
stops, where hatchway's 202 means committed to SQLite. A peer that is not installed is listed as
skipped with the reason. P5's tasks spawn ``/bin/true`` as the gateway spawns an action and append
one line to a marker file (``bench/stacks/work.py``): completions, their time and any task executed
twice are read from there; hatchway's are read from its store.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    PY,
    REPO,
    Connection,
    Context,
    Missing,
    Row,
    Server,
    Service,
    free_port,
    load,
    median,
    percentile,
    request_bytes,
    rotate,
    sandbox_level,
    spawn,
    timed,
)
from bench.latency import ECHO, PY_NOOP, sync_sampler
from bench.stacks.work import Marks
from bench.throughput import CONNECTIONS, TRUE_ACTION, _count, _expect, _submit_path, run_batch

GROUP = "peers"
THREADS = CONNECTIONS  # a peer's client enqueues from as many threads as hatchway has connections
WORKERS = 2
COMMANDS = {"py": PY_NOOP, "echo": ECHO}
FULL = "hatchway at synchronous=FULL"
HUEY_DEFAULT = "Huey (default durability)"
TWO_PROCESSES = "hatchway, 2 processes"
FAILED = "SELECT count(*) FROM runs WHERE external_user_id = ? AND status IN ('FAILED', 'TERMINATED')"
DOUBLES = "SELECT count(*) FROM runs WHERE external_user_id = ? AND json_extract(data, '$.attempt') > 1"


def _env(**extra: str) -> dict[str, str]:
    """The environment of a peer's process: this checkout importable, nothing of hatchway's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCHWAY_", "BENCH_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# what the peers run on


@dataclass
class Floor:
    """The bare-ASGI app, serving on ``port``."""

    port: int
    db: Path
    service: Service

    def stop(self) -> None:
        self.service.stop()


def _answers(port: int) -> bool:
    conn = Connection(port, timeout=5)
    try:
        return conn.send(request_bytes("GET", "/health"))[0] == 200
    finally:
        conn.close()


def asgi_floor(ctx: Context) -> Floor:
    """The run's bare-ASGI app (started on first use)."""

    def start() -> Floor:
        port, db = free_port(), ctx.root / "asgi-floor.db"
        argv = [PY, "-m", "bench.stacks.asgi_floor", "--port", str(port), "--db", str(db)]
        service = ctx.service("asgi-floor", [*argv, "--commands", json.dumps(COMMANDS)], lambda: _answers(port), _env())
        return Floor(port, db, service)

    return ctx.resource("asgi-floor", start)


@dataclass
class Redis:
    """The run's own Redis: loopback, a free port, a directory of its own, nothing persisted."""

    port: int
    service: Service

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flush(self) -> None:
        from redis import Redis as Client

        with Client.from_url(self.url(0)) as client:
            client.flushall()

    def stop(self) -> None:
        self.service.stop()


def redis(ctx: Context) -> Redis | str:
    """The run's Redis (started on first use), or why there is none."""
    server = shutil.which("redis-server")
    if server is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        from redis import Redis as Client
    except ImportError:
        return "the redis client is not installed (pip install redis)"

    def ping(port: int) -> bool:
        with Client(host="127.0.0.1", port=port, socket_timeout=5) as client:
            return bool(client.ping())

    def start() -> Redis:
        port, directory = free_port(), ctx.root / "redis"
        directory.mkdir()
        # in memory only: no AOF, no RDB snapshots (which would also fork mid-figure)
        argv = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--logfile", "", "--protected-mode", "yes"]  # fmt: skip
        return Redis(port, ctx.service("redis", argv, lambda: ping(port)))

    return ctx.resource("redis", start)


@dataclass
class Peer:
    """A task queue seen from the benchmark: how to enqueue the trivial task, how many messages wait
    in its queue, and the command of its workers (started ``processes`` times)."""

    name: str
    enqueuer: str  # what enqueues, for the table
    worker: str  # what runs the tasks, for the table
    enqueue: Callable[[str, int], object]  # (marker file, task index)
    pending: Callable[[], int]
    worker_argv: list[str]
    worker_env: dict[str, str]
    processes: int = 1
    services: list[Service] = field(default_factory=list)

    def start_workers(self, ctx: Context) -> None:
        # readiness is the warm-up batch of P5: a worker that does not take tasks fails it
        self.services = [
            ctx.service(f"{self.name.lower()}-worker-{n}", self.worker_argv, lambda: True, self.worker_env)
            for n in range(self.processes)
        ]


def huey_peer(path: Path, synchronous: str | None = "NORMAL") -> Peer | str:
    try:
        from bench.stacks import huey_app
    except ImportError:
        return "huey is not installed (pip install huey)"
    huey, task = huey_app.make(str(path), synchronous)
    durability = f"synchronous={synchronous}" if synchronous else "Huey's default: SQLite's synchronous=FULL"
    consumer = [PY, "-m", "huey.bin.huey_consumer", "bench.stacks.huey_app.huey", "-w", str(WORKERS),
                "-k", "thread", "-d", "0.01", "-m", "0.05", "-q"]  # fmt: skip
    return Peer(
        "Huey" if synchronous else HUEY_DEFAULT,
        f"Huey enqueue rate, {THREADS} threads (SQLite WAL, {durability})",
        f"Huey: huey_consumer, {WORKERS} worker threads, SQLite WAL {durability}",
        task,
        huey.pending_count,
        consumer,
        _env(BENCH_HUEY_DB=str(path)),
    )


def celery_peer(store: Redis) -> Peer | str:
    try:
        from redis import Redis as Client

        from bench.stacks import celery_app
    except ImportError:
        return "celery is not installed (pip install celery)"
    url = store.url(0)
    celery_app.app.conf.broker_url = url
    client = Client.from_url(url)
    worker = [PY, "-m", "celery", "-A", "bench.stacks.celery_app", "worker", "--pool", "prefork",
              "--concurrency", str(WORKERS), "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
              "--without-heartbeat", "--queues", "celery", "--hostname", f"bench-{store.port}@localhost"]  # fmt: skip
    return Peer(
        "Celery",
        f"Celery apply_async rate, {THREADS} threads (Redis, in memory)",
        f"Celery: prefork worker, concurrency {WORKERS}, acks late, Redis",
        lambda marker, index: celery_app.true_and_mark.apply_async((marker, index)),
        lambda: int(client.llen("celery")),
        worker,
        _env(BENCH_REDIS_URL=url),
    )


def rq_peer(store: Redis) -> Peer | str:
    try:
        import rq
        from redis import Redis as Client
    except ImportError:
        return "rq is not installed (pip install rq)"
    from bench.stacks.work import true_and_mark

    url = store.url(1)
    queue = rq.Queue("bench", connection=Client.from_url(url))
    worker = [PY, "-c", "import sys; from rq.cli import main; sys.exit(main())", "worker", "--url", url,
              "--logging_level", "WARNING", "--disable-job-desc-logging", "bench"]  # fmt: skip
    return Peer(
        "RQ",
        f"RQ enqueue rate, {THREADS} threads (Redis, in memory)",
        f"RQ: {WORKERS} rq worker processes (a fork per job), Redis",
        lambda marker, index: queue.enqueue(true_and_mark, marker, index),
        lambda: int(queue.count),
        worker,
        _env(),
        processes=WORKERS,
    )


def peers(ctx: Context, huey_path: Path, huey_default: bool = False) -> tuple[list[Peer], list[str]]:
    """The peers that can run here, and for the others why not."""
    found: list[Peer | str] = [huey_peer(huey_path)]
    if huey_default:
        found.append(huey_peer(huey_path.with_name(huey_path.stem + "-default.db"), None))
    store = redis(ctx)
    if isinstance(store, Redis):
        store.flush()  # nothing left from an earlier figure for the workers to find
        found += [celery_peer(store), rq_peer(store)]
    else:
        found += [f"Celery: {store}", f"RQ: {store}"]
    available = [p for p in found if isinstance(p, Peer)]
    missing = [p if p.startswith(("Celery", "RQ")) else f"Huey: {p}" for p in found if isinstance(p, str)]
    return available, missing


def from_threads(
    call: Callable[[int], object], threads: int, seconds: float | None = None, count: int | None = None
) -> tuple[int, float]:
    """``call(i)`` for i = 0, 1, ... from ``threads`` threads, each in a closed loop, for ``seconds``
    or until ``count`` calls: the calls made and the seconds they took."""
    indexes = itertools.count()
    made = [0] * threads
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop_at = float("inf")

    def loop(slot: int) -> None:
        start.wait()
        try:
            while time.perf_counter() < stop_at:
                index = next(indexes)  # one at a time under the GIL
                if count is not None and index >= count:
                    return
                call(index)
                made[slot] += 1
        except BaseException as exc:  # reported below, in the benchmark's thread
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=(slot,), daemon=True) for slot in range(threads)]
    for thread in workers:
        thread.start()
    began = time.perf_counter()
    if seconds is not None:
        stop_at = began + seconds
    start.wait()
    for thread in workers:
        thread.join()
    if errors:
        raise RuntimeError(f"enqueueing failed: {errors[0]!r}") from errors[0]
    return sum(made), time.perf_counter() - began


# ---------------------------------------------------------------------------------------------
# P1, P2: a sync call against the bare-ASGI floor


def _levels(ctx: Context) -> tuple[str, ...]:
    """Sandbox levels of the sync figures: the default, Landlock when the default is another level
    (the issue's targets mean it), and none."""
    if ctx.quick:
        return ("auto",)
    from hatchway.runtime.confine import abi

    default = sandbox_level("auto")
    return ("auto", *(("landlock",) if default != "landlock" and abi() >= 1 else ()), "none")


def _sync(ctx: Context, figure: str, argv: list[str], command: str, what: str, targets: dict[str, float]) -> list[Row]:
    floor = asgi_floor(ctx)
    floor_call = request_bytes("POST", f"/call/{command}", {"parameters": {}})
    rounds, warmup = ctx.n(100, 5), ctx.n(10, 2)
    rows: list[Row] = []
    floors: list[float] = []
    spawns: list[float] = []
    for sandbox in _levels(ctx):
        server = ctx.server(sandbox=sandbox)
        level = sandbox_level(sandbox)
        failed: list[bytes] = []
        with contextlib.ExitStack() as stack:
            call = stack.enter_context(
                sync_sampler(server, f"bench-peers-{figure[:2].lower()}", argv, failed, max(3, rounds // 50))
            )
            conn = Connection(floor.port)
            stack.callback(conn.close)
            asgi = timed(functools.partial(conn.expect, floor_call, 200))
            gateway, bare_asgi, bare = rotate([call, asgi, timed(lambda: spawn(argv))], rounds, warmup)
        floors += bare_asgi
        spawns += bare
        note = f"{len(failed)} calls failed (action killed from outside) and were taken again" if failed else ""
        target = targets.get("auto" if sandbox == "auto" else level)
        for pct in (50, 99):
            rows.append(
                Row(
                    figure,
                    f"sync call {what} vs bare ASGI, p{pct}",
                    server.setting,
                    percentile(gateway, pct),
                    "ms",
                    percentile(bare_asgi, pct),
                    f"bare ASGI app + subprocess.run, p{pct}",
                    len(gateway),
                    ratio_max=target if pct == 50 else None,
                    note=note if pct == 50 else "",
                )
            )
    rows.append(
        Row(
            figure,
            f"  floor: bare ASGI app + subprocess.run of {what}, p50",
            "no sandbox",
            percentile(floors, 50),
            "ms",
            percentile(spawns, 50),
            "bare spawn p50",
            len(floors),
        )
    )
    return rows


def p1_peers(ctx: Context) -> list[Row]:
    """Sync call of a Python no-op vs a bare ASGI app running it with subprocess.run: p50 and p99."""
    return _sync(ctx, "P1-PEERS", PY_NOOP, "py", "python -S no-op", {"auto": 1.05, "landlock": 1.05})


def p2_peers(ctx: Context) -> list[Row]:
    """Sync call of /bin/echo '{}' vs a bare ASGI app running it with subprocess.run: p50 and p99."""
    return _sync(ctx, "P2-PEERS", ECHO, "echo", "/bin/echo '{}'", {"auto": 1.3, "landlock": 1.3, "none": 1.15})


# ---------------------------------------------------------------------------------------------
# P4: submits against enqueues


def p4_peers(ctx: Context) -> list[Row | Missing]:
    """Async submit rate (4 connections) vs the bare-ASGI durable submit and Huey/Celery/RQ enqueue (4 threads)."""
    # hatchway as by default (synchronous=NORMAL) and at FULL, the durability of Huey's default
    servers = {"hatchway": ctx.server(workers=0), FULL: ctx.server(workers=0, HATCHWAY_DB_SYNCHRONOUS="FULL"),
               TWO_PROCESSES: ctx.server(workers=0, HATCHWAY_PROCESSES="2")}  # fmt: skip
    for server in servers.values():
        server.register(TRUE_ACTION)
    floor = asgi_floor(ctx)
    available, missing = peers(ctx, ctx.root / "huey-p4.db", huey_default=True)
    seconds = ctx.n(2.0, 0.2)
    never = str(ctx.root / "p4-never-run")  # P4's tasks are only enqueued: no worker runs them
    made: Counter[str] = Counter()

    def over_http(name: str, port: int, raw: bytes) -> Callable[[], float]:
        def sample() -> float:
            result = _expect(load(port, lambda _: raw, CONNECTIONS, seconds=seconds), 202, name)
            made[name] += len(result.latencies)
            return result.rate

        return sample

    def enqueued(peer: Peer) -> Callable[[], float]:
        def sample() -> float:
            calls, took = from_threads(lambda index: peer.enqueue(never, index), THREADS, seconds=seconds)
            made[peer.name] += calls
            return calls / took

        return sample

    runs = "SELECT count(*) FROM runs WHERE mode = 'async'"
    count_kept: dict[str, Callable[[], int]] = {
        name: functools.partial(_count, server.db_path, runs) for name, server in servers.items()
    }
    count_kept["bare ASGI"] = functools.partial(_count, floor.db, "SELECT count(*) FROM runs")
    count_kept |= {peer.name: peer.pending for peer in available}
    before = {name: count() for name, count in count_kept.items()}
    submit = request_bytes("POST", _submit_path(), {"parameters": {}})
    samplers = {name: over_http(name, server.port, submit) for name, server in servers.items()}
    samplers["bare ASGI"] = over_http("bare ASGI", floor.port, request_bytes("POST", "/runs", {"parameters": {}}))
    samplers |= {peer.name: enqueued(peer) for peer in available}
    series = dict(zip(samplers, rotate(list(samplers.values()), ctx.n(4, 1), warmup=1), strict=True))
    # every answer was kept: a submit answered 202 is a stored run, an enqueue a message in the queue
    for name, count in count_kept.items():
        if count() - before[name] < made[name]:
            raise RuntimeError(f"{name}: {made[name]} accepted but only {count() - before[name]} kept")
    rates = {name: median(got) for name, got in series.items()}
    baselines = {"bare ASGI": f"bare ASGI submit rate, {CONNECTIONS} connections (SQLite WAL, synchronous=NORMAL)"}
    baselines |= {peer.name: peer.enqueuer for peer in available}
    # (hatchway as, compared with, row label, target)
    compared: list[tuple[str, str, str, float | None]] = []
    if available:
        best = max(available, key=lambda peer: rates[peer.name]).name
        compared.append(("hatchway", best, "the best peer", None))
    compared += [("hatchway", name, name, {"Huey": 1.0, "Celery": 1.5}.get(name)) for name in baselines]
    if available:
        compared.append((TWO_PROCESSES, best, "the best peer", None))
    compared += [(TWO_PROCESSES, name, name, {"Huey": 1.0, "Celery": 1.5}.get(name)) for name in baselines]
    compared.append((TWO_PROCESSES, "hatchway", "hatchway in one process", None))
    baselines["hatchway"] = f"hatchway submit rate, one process, {CONNECTIONS} connections"
    if HUEY_DEFAULT in baselines:
        compared.append((FULL, HUEY_DEFAULT, f"{HUEY_DEFAULT}, both at synchronous=FULL", None))
    rows: list[Row | Missing] = []
    for side, name, label, target in compared:
        extra = {FULL: ", HATCHWAY_DB_SYNCHRONOUS=FULL", TWO_PROCESSES: servers[TWO_PROCESSES].processes_note}
        setting = "API only" + extra.get(side, "")
        note = "" if rows else "; ".join(f"{who} {rate:,.0f}/s" for who, rate in rates.items())
        rows.append(
            Row(
                "P4-PEERS",
                f"submit rate vs {label}",
                setting,
                rates[side],
                "/s",
                rates[name],
                baselines[name],
                len(series[side]),
                ratio_min=target,
                note=note,
            )
        )
    rows += [Missing("P4-PEERS", "submit rate vs a peer", reason) for reason in missing]
    return rows


# ---------------------------------------------------------------------------------------------
# P5: trivial runs end to end


class Batches:
    """One system's rounds of P5: ``run(count)`` completes a round and answers its rate; ``doubles()``
    counts the executions beyond the first of every task it ran so far."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0  # tasks per measured round
        self.ran = 0  # tasks run so far, warm-up included

    def run(self, count: int) -> float:
        raise NotImplementedError

    def doubles(self) -> int:
        raise NotImplementedError

    def failed(self) -> int:
        """Tasks that failed (a peer's failures stop the figure; hatchway's are counted)."""
        return 0


class HatchwayBatches(Batches):
    def __init__(self, server: Server) -> None:
        super().__init__(f"hatchway, {server.setting}")
        self.server = server
        self.tags: list[str] = []

    def run(self, count: int) -> float:
        self.tags.append("bench-" + uuid.uuid4().hex[:12])
        self.ran += count
        # as P1's sync calls: an action killed from outside now and then is counted, not fatal
        return run_batch(self.server, count, tag=self.tags[-1], failed_ok=max(1, count // 100))

    def doubles(self) -> int:
        return sum(_count(self.server.db_path, DOUBLES, tag) for tag in self.tags)

    def failed(self) -> int:
        return sum(_count(self.server.db_path, FAILED, tag) for tag in self.tags)


class PeerBatches(Batches):
    def __init__(self, ctx: Context, peer: Peer, timeout: float = 300.0) -> None:
        super().__init__(peer.name)
        self.ctx, self.peer, self.timeout = ctx, peer, timeout
        self.markers: list[Path] = []

    def run(self, count: int) -> float:
        peer, timeout = self.peer, self.timeout
        marker = self.ctx.root / f"p5-{peer.name.lower()}-{len(self.markers)}.marks"
        self.markers.append(marker)
        self.ran += count
        started = time.time()
        from_threads(lambda index: peer.enqueue(str(marker), index), THREADS, count=count)
        deadline = time.monotonic() + timeout
        while (marks := Marks(marker)).done < count:
            for service in peer.services:
                service.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{peer.name}: only {marks.done} of {count} tasks ran within {timeout:g} s")
            time.sleep(0.02)
        if marks.failed:
            raise RuntimeError(f"{peer.name}: {marks.failed} spawns of /bin/true failed")
        return count / max(marks.last - started, 1e-6)

    def doubles(self) -> int:
        return sum(Marks(marker).doubles for marker in self.markers)


def p5_peers(ctx: Context) -> list[Row | Missing]:
    """Trivial runs (/bin/true) completed end to end with 2 workers vs Huey, Celery prefork and RQ."""
    levels = ("none",) if ctx.quick else ("none", "auto")
    # hatchway at each level, then at none with two serve processes on its port (a worker each)
    servers = [ctx.server(sandbox=level) for level in levels] + [ctx.server(sandbox="none", HATCHWAY_PROCESSES="2")]
    for server in servers:
        server.register(TRUE_ACTION)
    available, missing = peers(ctx, ctx.root / "huey-p5.db")
    for peer in available:
        peer.start_workers(ctx)
    systems = [HatchwayBatches(server) for server in servers] + [PeerBatches(ctx, p) for p in available]
    try:
        # a first batch warms each system up (and proves its workers answer); the rounds are sized
        # to about two seconds at its pace
        for system in systems:
            pace = system.run(ctx.n(40, 4))
            system.count = ctx.n(max(50, min(1000, int(pace * 2))), 6)
        rounds: list[Callable[[], float]] = [functools.partial(s.run, s.count) for s in systems]
        series = rotate(rounds, ctx.n(3, 1), warmup=0)
    finally:
        for peer in available:
            for service in peer.services:
                service.stop()
    doubles = {system.name: system.doubles() for system in systems}
    rates = {system.name: median(got) for system, got in zip(systems, series, strict=True)}
    targets = {"Huey": 1.2, "Celery": 1.5}
    rows: list[Row | Missing] = []
    summary = "; ".join(f"{s.name} {rates[s.name]:,.0f}/s (rounds of {s.count})" for s in systems)
    failed = {system.name: n for system in systems if (n := system.failed())}
    if failed:
        summary += "; killed from outside and counted as finished: " + ", ".join(f"{k} {n}" for k, n in failed.items())
    metric = f"runs completed end to end, {WORKERS} workers"
    for system, server, got in zip(systems, servers, series, strict=False):  # hatchway's, one per level
        if not available:
            break
        best = max(available, key=lambda p: rates[p.name])
        compared: list[tuple[str, Peer, float | None]] = [("the best peer", best, None)]
        if server.sandbox == "none":  # the peers confine nothing: hatchway at none is the like-for-like row
            compared += [(peer.name, peer, targets.get(peer.name)) for peer in available]
        for label, peer, target in compared:
            rows.append(
                Row(
                    "P5-PEERS",
                    f"{metric}, vs {label}",
                    server.setting,
                    rates[system.name],
                    "/s",
                    rates[peer.name],
                    peer.worker,
                    len(got),
                    ratio_min=target,
                    note="" if rows else summary,
                )
            )
    rows.append(
        Row(
            "P5-PEERS",
            "double executions, hatchway and every peer",
            "-",
            sum(doubles.values()),
            "",
            samples=sum(system.ran for system in systems),
            value_max=0,
            note=", ".join(f"{name}: {n}" for name, n in doubles.items()),
            extra={"rates": {k: round(v, 1) for k, v in rates.items()}},
        )
    )
    rows += [Missing("P5-PEERS", "runs completed end to end vs a peer", reason) for reason in missing]
    return rows


FIGURES = {"P1-PEERS": p1_peers, "P2-PEERS": p2_peers, "P4-PEERS": p4_peers, "P5-PEERS": p5_peers}
