"""What every benchmark shares: a real ``hatchway serve``, a lean HTTP client, interleaved sampling.

Each figure is a ratio against a baseline measured in the same run on the same machine, because
absolute times on a shared machine are noise. The measured command and its baseline alternate -
A B, B A, A B, ... - after a warm-up, so drift in the machine's load cancels and neither side
always profits from caches the other warmed. Servers are real ``hatchway serve`` processes on
loopback, each with its own ``HATCHWAY_HOME`` in a temporary directory. Every loop is bounded by a
count and by a time budget, so a benchmark always ends by itself.

The HTTP client here is deliberately minimal (a socket, a prepared request, httptools to parse the
answer): the figures are about the gateway, and a general-purpose client would add more time of
its own than the gateway spends on a health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httptools

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # the benchmarks measure this checkout's code, here and in the servers they start
    sys.path.insert(0, str(SRC))
PY = sys.executable
TOKEN = "bench-admin-token"  # noqa: S105 - the throwaway admin token of benchmark servers
PROJECT = "proj_local"
MIB = 1024 * 1024
T = TypeVar("T")
N = TypeVar("N", int, float)


class Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)


class Skip(Exception):
    """A figure that cannot be measured on this machine; the message says why."""


# ---------------------------------------------------------------------------------------------
# numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0-100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class Row:
    """One line of the results table: a measured value, its baseline, and the target it answers to."""

    figure: str
    metric: str
    setting: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_metric: str = ""
    samples: int = 0
    ratio_max: float | None = None
    ratio_min: float | None = None
    value_max: float | None = None
    value_min: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def target(self) -> str:
        parts = []
        if self.ratio_max is not None:
            parts.append(f"<= {self.ratio_max:g}x")
        if self.ratio_min is not None:
            parts.append(f">= {self.ratio_min:g}x")
        if self.value_max is not None:
            parts.append(f"<= {self.value_max:g} {self.unit}".rstrip())
        if self.value_min is not None:
            parts.append(f">= {self.value_min:g}{self.unit}")
        return ", ".join(parts)

    @property
    def met(self) -> bool | None:
        checks: list[bool] = []
        ratio = self.ratio
        if self.ratio_max is not None and ratio is not None:
            checks.append(ratio <= self.ratio_max)
        if self.ratio_min is not None and ratio is not None:
            checks.append(ratio >= self.ratio_min)
        if self.value_max is not None:
            checks.append(self.value <= self.value_max)
        if self.value_min is not None:
            checks.append(self.value >= self.value_min)
        return all(checks) if checks else None

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "metric": self.metric,
            "setting": self.setting,
            "value": round(self.value, 4),
            "unit": self.unit,
            "baseline": None if self.baseline is None else round(self.baseline, 4),
            "baseline_metric": self.baseline_metric,
            "ratio": None if self.ratio is None else round(self.ratio, 3),
            "target": self.target,
            "met": self.met,
            "samples": self.samples,
            "note": self.note,
            **({"extra": self.extra} if self.extra else {}),
        }


@dataclass
class Missing:
    """A row that cannot be measured on this machine (a peer not installed): listed as skipped, with why."""

    figure: str
    metric: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "skipped": f"{self.metric.strip()}: {self.reason}"}


def rotate(
    samplers: Sequence[Callable[[], T]], rounds: int, warmup: int = 2, budget_seconds: float = 60.0
) -> list[list[T]]:
    """Samples of each sampler, taken in turn with the order rotating every round (A B C, B C A, ...)
    after ``warmup`` rounds, so that drift and order effects fall on every side alike.

    Stops early, with what it has, when ``budget_seconds`` run out (at least one round is taken).
    """
    for _ in range(warmup):
        for sampler in samplers:
            sampler()
    deadline = time.monotonic() + budget_seconds
    got: list[list[T]] = [[] for _ in samplers]
    for index in range(rounds):
        for offset in range(len(samplers)):
            which = (index + offset) % len(samplers)
            got[which].append(samplers[which]())
        if time.monotonic() > deadline:
            break
    return got


def interleave(
    a: Callable[[], T], b: Callable[[], T], pairs: int, warmup: int = 2, budget_seconds: float = 60.0
) -> tuple[list[T], list[T]]:
    """Samples of ``a`` and ``b`` taken alternately (A B, B A, A B, ...); see :func:`rotate`."""
    got_a, got_b = rotate([a, b], pairs, warmup, budget_seconds)
    return got_a, got_b


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` as a sampler of its own wall time in milliseconds."""

    def sample() -> float:
        start = time.perf_counter_ns()
        fn()
        return (time.perf_counter_ns() - start) / 1e6

    return sample


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# ---------------------------------------------------------------------------------------------
# HTTP


def request_bytes(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 request with the bench token, ready to send again and again."""
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {TOKEN}"]
    if body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Content-Length: {len(payload)}")
    lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class _Answer:
    """httptools callbacks collecting one response at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.done = False

    def on_message_begin(self) -> None:
        self.chunks = []
        self.done = False

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    def result(self) -> tuple[int, bytes]:
        return self.parser.get_status_code(), b"".join(self.chunks)


class Connection:
    """One keep-alive connection to the gateway; sends prepared requests one at a time."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.answer = _Answer()

    def send(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        answer = self.answer
        answer.done = False
        while not answer.done:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            answer.parser.feed_data(data)
        return answer.result()

    def expect(self, raw: bytes, status: int) -> bytes:
        """Send ``raw``; its answer's body, or an error naming the unexpected status."""
        got, body = self.send(raw)
        if got != status:
            raise RuntimeError(f"expected {status}, got {got}: {body[:300]!r}")
        return body

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        status, data = self.send(request_bytes(method, path, body))
        if expect is not None and status != expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _LoadProtocol(asyncio.Protocol):
    """One connection of the load generator: a request, its answer, the next request."""

    def __init__(self) -> None:
        self.answer = _Answer()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answer.parser.feed_data(data)
        if self.answer.done and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.answer.result())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the gateway closed the connection"))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.answer.done = False
        self.transport.write(raw)
        return await self.waiter


@dataclass
class Load:
    """What a load round saw: latencies (ms) of each request, statuses, and how long it ran."""

    latencies: list[float]
    statuses: Counter[int]
    seconds: float
    bodies: list[bytes] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def load(
    port: int,
    make: Callable[[int], bytes],
    connections: int,
    seconds: float | None = None,
    count: int | None = None,
    keep_bodies: bool = False,
) -> Load:
    """Closed-loop load: ``connections`` keep-alive connections, each sending its next request as
    soon as the previous answer arrived, for ``seconds`` or until ``count`` requests were sent."""

    async def main() -> Load:
        loop = asyncio.get_running_loop()
        conns = []
        for _ in range(connections):
            _, proto = await loop.create_connection(_LoadProtocol, "127.0.0.1", port)
            conns.append(proto)
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        bodies: list[bytes] = []
        issued = 0
        start = time.perf_counter()
        stop_at = start + seconds if seconds is not None else float("inf")

        async def drive(proto: _LoadProtocol) -> None:
            nonlocal issued
            while time.perf_counter() < stop_at and (count is None or issued < count):
                raw = make(issued)
                issued += 1
                began = time.perf_counter_ns()
                status, body = await proto.send(raw)
                latencies.append((time.perf_counter_ns() - began) / 1e6)
                statuses[status] += 1
                if keep_bodies:
                    bodies.append(body)

        try:
            await asyncio.gather(*(drive(p) for p in conns))
        finally:
            for proto in conns:
                if proto.transport is not None:
                    proto.transport.close()
        return Load(latencies, statuses, time.perf_counter() - start, bodies)

    return _run_async(main())


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    except ImportError:  # pragma: no cover - uvloop is installed with the server
        return asyncio.run(coro)


# ---------------------------------------------------------------------------------------------
# the gateway under test


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_env(home: Path, src: Path = SRC, **extra: str) -> dict[str, str]:
    """The environment of a benchmarked gateway: this checkout's code (or ``src``, another version's
    for an A/B), nothing of the caller's HATCHWAY_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCHWAY_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    env["HATCHWAY_HOME"] = str(home)
    env["HATCHWAY_BOOTSTRAP_TOKEN"] = TOKEN
    env.update(extra)
    return env


def sandbox_level(setting: str) -> str:
    """What ``HATCHWAY_SANDBOX=setting`` resolves to on this machine."""
    if setting != "auto":
        return setting
    from hatchway.executors.sandbox import bwrap_works
    from hatchway.runtime.confine import abi

    return "bwrap" if bwrap_works() else "landlock" if abi() >= 1 else "limits"


class Server:
    """A real ``hatchway serve`` on a free loopback port, with a home of its own."""

    def __init__(self, home: Path, workers: int = 2, sandbox: str = "auto", src: Path = SRC, **env: str) -> None:
        self.home = home
        self.src = src
        self.workers = workers
        self.sandbox = sandbox
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home.parent / f"{home.name}.log"

    @property
    def setting(self) -> str:
        level = sandbox_level(self.sandbox)
        return f"sandbox {level}" + (" (default)" if self.sandbox == "auto" else "") + self.processes_note

    @property
    def processes_note(self) -> str:
        """``, --processes N`` for a gateway of several serve processes (``HATCHWAY_PROCESSES``)."""
        processes = int(self.env.get("HATCHWAY_PROCESSES") or 1)
        return f", --processes {processes}" if processes > 1 else ""

    @property
    def db_path(self) -> Path:
        return self.home / "hatchway.db"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        extra = {"HATCHWAY_WORKERS": str(self.workers), **self.env}
        if self.sandbox != "auto":
            extra["HATCHWAY_SANDBOX"] = self.sandbox
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "hatchway", "serve", "--port", str(self.port)],
                env=gateway_env(self.home, self.src, **extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hatchway serve exited early:\n{self.log()}")
            with contextlib.suppress(OSError):
                conn = Connection(self.port, timeout=5)
                try:
                    if conn.send(request_bytes("GET", "/health"))[0] == 200:
                        return self
                finally:
                    conn.close()
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hatchway serve did not answer /health within {timeout:g} s:\n{self.log()}")
            time.sleep(0.05)

    def connect(self) -> Connection:
        return Connection(self.port)

    def register(self, spec: dict[str, Any]) -> dict[str, Any]:
        conn = self.connect()
        try:
            record: dict[str, Any] = conn.call("POST", f"/v1/projects/{PROJECT}/actions", spec)
            return record
        finally:
            conn.close()

    def pids(self) -> list[int]:
        """The gateway's processes: ``hatchway serve``, and under ``HATCHWAY_PROCESSES`` its serve
        processes (its children that are not actions: those are their children)."""
        found = [self.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == self.pid:
                        found.append(int(entry.name))
        return found

    def cpu_seconds(self) -> float:
        """CPU time the gateway's processes have used so far (all their threads; not their actions)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        """Resident memory of the gateway's processes together."""
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        if not total:
            raise RuntimeError("no VmRSS in /proc status")
        return total

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        stop_group(self.proc, timeout)


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    """Stop the process ``proc`` and its session (it was started with ``start_new_session``): SIGTERM,
    then SIGKILL after ``timeout`` seconds. Only ever the processes the benchmark started, by id."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Service:
    """A helper process of a benchmark (a Redis, a peer's server or workers): a session of its own,
    its output in a log file next to the servers', stopped when the run ends."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 60.0) -> Service:
        """Start it and wait until ``ready()`` answers true (polled); an error with its log otherwise."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(Exception):
                if ready():
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} was not ready within {timeout:g} s:\n{self.log()}")
            time.sleep(0.05)

    def check(self) -> None:
        """An error with its log if it has died (a worker that exits would stall a figure)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        stop_group(self.proc, timeout)


class Context:
    """One benchmark run: its scale (full or quick), its servers, its scratch directory."""

    def __init__(self, root: Path, quick: bool = False) -> None:
        self.root = root
        self.quick = quick
        self._servers: dict[str, Server] = {}
        self._fresh: list[Server] = []
        self._resources: dict[str, Stoppable] = {}
        self.services: list[Service] = []

    def n(self, full: N, quick: N) -> N:
        """A count or duration: ``full`` normally, ``quick`` in the smoke-test mode."""
        return quick if self.quick else full

    def sandboxes(self) -> tuple[str, ...]:
        """The sandbox levels a figure is measured at: the default, and each level it may be set to."""
        return ("auto",) if self.quick else ("auto", "limits", "none")

    def server(self, workers: int = 2, sandbox: str = "auto", **env: str) -> Server:
        """A started gateway with these options, shared by the figures that ask for the same."""
        key = json.dumps([workers, sandbox, env], sort_keys=True)
        if key not in self._servers:
            self._servers[key] = self.fresh_server(workers, sandbox, **env)
        return self._servers[key]

    def fresh_server(self, workers: int = 2, sandbox: str = "auto", **env: str) -> Server:
        """A new gateway nobody else used (stopped when the run ends)."""
        server = Server(self.root / f"home-{len(self._fresh)}", workers, sandbox, **env)
        self._fresh.append(server)
        return server.start()

    def resource(self, key: str, start: Callable[[], S]) -> S:
        """Something started once per run and shared by the figures that ask for ``key`` (a Redis, a
        peer's server); ``stop()`` is called on it when the run ends."""
        if key not in self._resources:
            self._resources[key] = start()
        return self._resources[key]  # type: ignore[return-value]

    def service(self, name: str, argv: list[str], ready: Callable[[], bool], env: dict[str, str] | None = None,
                timeout: float = 60.0) -> Service:  # fmt: skip
        """A started :class:`Service` (stopped when the run ends, or earlier by its figure)."""
        service = Service(name, argv, self.root, env)
        self.services.append(service)
        return service.start(ready, timeout)

    def server_logs(self) -> str:
        """The end of every server's and service's log, for a figure that failed."""
        logs = [(s.log_path.name, s.log()) for s in self._fresh] + [(s.log_path.name, s.log()) for s in self.services]
        return "\n".join(f"--- {name}\n{text}" for name, text in logs)

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        for resource in reversed(list(self._resources.values())):
            resource.stop()
        self._resources.clear()
        for server in self._fresh:
            server.stop()
        self._fresh.clear()
        self._servers.clear()


@contextlib.contextmanager
def context(quick: bool = False) -> Iterator[Context]:
    """A :class:`Context` in a temporary directory, every server stopped and the directory removed after."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="hatchway-bench-"))
    ctx = Context(root, quick)
    try:
        yield ctx
    finally:
        ctx.close()
        shutil.rmtree(root, ignore_errors=True)


def cpu_pressure() -> float | None:
    """The share of the last minute in which some task waited for a CPU (Linux PSI), in percent."""
    try:
        with open("/proc/pressure/cpu") as handle:
            return float(handle.readline().split()[2].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def minimal_env() -> dict[str, str]:
    """The environment baselines run with: about what the gateway gives an action."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")}


def spawn(
    argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A bare spawn, the baseline of every action figure: ``subprocess.run`` capturing the output."""
    done = subprocess.run(argv, capture_output=True, env=env or minimal_env(), cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr[-300:]!r}")
    return done
