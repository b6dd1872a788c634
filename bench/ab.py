"""A/B of the run path against another version of the code: ``python bench/ab.py REF [P4] [P5]``.

Starts the same gateway twice - one on REF's ``src/`` (``git archive``, nothing in the checkout
changes), one on this checkout's - and samples them in turn (A B, B A, ...; see
:func:`~bench.harness.rotate`), so load on the shared machine falls on both alike:

* P4: submits answered per second over 4 keep-alive connections to a gateway without workers, and
  the gateway's CPU per submit;
* P5: trivial runs (``/bin/true``, or ``--argv``) completed end to end per second with 2 workers at sandbox
  ``none`` (``--sandbox`` to change), and the gateway's CPU per run (its submit included).

Prints each round and the medians, B against A. Not a figure of ``run.py`` (it writes nothing).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # `python bench/ab.py`: make `bench` importable
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.harness import REPO, Server, load, median, request_bytes
from bench.throughput import CONNECTIONS, TRUE_ACTION, _expect, _submit_path, run_batch


def checkout(ref: str, into: Path) -> Path:
    """``src/`` of ``ref`` unpacked under ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    subprocess.run(["git", "archive", "-o", str(archive), ref, "src"], cwd=REPO, check=True)
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


def compare(name: str, unit: str, a: Callable[[], tuple[float, float]], b: Callable[[], tuple[float, float]],
            rounds: int) -> None:  # fmt: skip
    a(), b()  # warm-up
    got: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for index in range(rounds):
        order = [("A", a), ("B", b)] if index % 2 == 0 else [("B", b), ("A", a)]
        for label, sample in order:
            got[label].append(sample())
    for label in ("A", "B"):
        rates = " / ".join(f"{r:,.0f}" for r, _ in got[label])
        cpus = " / ".join(f"{c:.2f}" for _, c in got[label])
        print(f"{name} {label}: {rates} {unit} (median {median([r for r, _ in got[label]]):,.0f}); "
              f"gateway CPU ms each {cpus} (median {median([c for _, c in got[label]]):.2f})")  # fmt: skip
    rate_a, rate_b = (median([r for r, _ in got[k]]) for k in ("A", "B"))
    cpu_a, cpu_b = (median([c for _, c in got[k]]) for k in ("A", "B"))
    print(f"{name} B/A: rate {rate_b / rate_a:.2f}x, CPU {cpu_b / cpu_a:.2f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the A side: a git ref of this repository")
    parser.add_argument("figures", nargs="*", default=["P4", "P5"], help="P4 and/or P5 (default both)")
    parser.add_argument("--rounds", type=int, default=6, help="samples of each side (default 6)")
    parser.add_argument("--count", type=int, default=400, help="runs per P5 round (default 400)")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of a P4 round (default 2 s)")
    parser.add_argument("--sandbox", default="none", help="P5's sandbox level (default none)")
    parser.add_argument("--argv", default="/bin/true", help="P5's action, a command line (default /bin/true)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hatchway-ab-") as tmp:
        root = Path(tmp)
        src = {"A": checkout(args.ref, root / "a"), "B": REPO / "src"}
        print(f"A = {args.ref}, B = this checkout", flush=True)
        servers: list[Server] = []
        try:
            for figure in (f.upper() for f in args.figures):
                workers, sandbox = (0, "none") if figure == "P4" else (2, args.sandbox)
                pair = {}
                for label in ("A", "B"):
                    server = Server(root / f"{figure}-{label}", workers, sandbox, src=src[label])
                    servers.append(server.start())
                    entry_point = (
                        shlex.split(args.argv) if figure == "P5" else TRUE_ACTION["container_parameters"]["entry_point"]
                    )
                    server.register({**TRUE_ACTION, "container_parameters": {"entry_point": entry_point}})
                    pair[label] = server
                if figure == "P4":
                    compare("P4 submits", "/s", submits(pair["A"], args.seconds), submits(pair["B"], args.seconds),
                            args.rounds)  # fmt: skip
                else:
                    name = f"P5 runs ({sandbox}, {args.argv})"
                    compare(name, "/s", runs(pair["A"], args.count), runs(pair["B"], args.count), args.rounds)
        finally:
            for server in servers:
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
