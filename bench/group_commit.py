"""Group commit in-process: ``python bench/group_commit.py REF [--threads 4] [--writes 400] [--rounds 3]``.

Threads of one process each writing rows (a run-sized JSON body) through the SQLite store's
``Database`` - REF's ``_db.py`` (``git show``, nothing in the checkout changes) against this
checkout's, in turn, at ``synchronous=NORMAL`` and ``FULL``: writes per second, and COMMITs per
write (counted by SQLite's trace callback: explicit COMMITs and writes in autocommit). Without HTTP
or the gateway around it, this is what group commit changes by itself. Not a figure of ``run.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/group_commit.py`: make `bench` importable
    sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.harness import REPO, SRC

DB_PY = "src/hatchway/store/sqlite/_db.py"
BODY = "x" * 600


def database_class(source: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Database


def sample(database: Any, synchronous: str, threads: int, writes: int) -> tuple[float, float]:
    """Writes per second and COMMITs per write of ``threads`` threads writing ``writes`` rows each."""
    home = Path(tempfile.mkdtemp(prefix="hatchway-gc-"))
    db = database(home / "hatchway.db", synchronous=synchronous)
    commits = 0
    counting = threading.Lock()

    def writer(n: int) -> None:
        nonlocal commits
        conn = db.conn()

        def trace(statement: str) -> None:
            nonlocal commits
            verb = statement.split(None, 1)[0].upper()
            if verb == "COMMIT" or (verb == "INSERT" and not conn.in_transaction):
                with counting:
                    commits += 1

        conn.set_trace_callback(trace)
        for i in range(writes):
            db.write(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)", ("p", "e", "bench", f"{n}-{i}", BODY, 1, None)
            )

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    took = time.perf_counter() - started
    db.close()
    shutil.rmtree(home, ignore_errors=True)
    return threads * writes / took, commits / (threads * writes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the A side: a git ref of this repository")
    parser.add_argument("--threads", type=int, default=4, help="writing threads (default 4)")
    parser.add_argument("--writes", type=int, default=400, help="rows per thread and sample (default 400)")
    parser.add_argument("--rounds", type=int, default=3, help="samples of each side per setting (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "ref_db.py"
        source.write_text(subprocess.run(["git", "show", f"{args.ref}:{DB_PY}"], cwd=REPO, check=True,
                                         capture_output=True, text=True).stdout)  # fmt: skip
        sys.path.insert(0, str(SRC))  # the module's own imports (hatchway.errors) from this checkout
        sides = {"A": database_class(source, "ref_db"), "B": database_class(SRC.parent / DB_PY, "this_db")}
        print(f"A = {args.ref}, B = this checkout; {args.threads} threads x {args.writes} writes")
        for synchronous in ("NORMAL", "FULL"):
            got: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
            for round_ in range(args.rounds):
                for side in ("A", "B") if round_ % 2 == 0 else ("B", "A"):
                    got[side].append(sample(sides[side], synchronous, args.threads, args.writes))
            for side in ("A", "B"):
                rates = " / ".join(f"{rate:,.0f}" for rate, _ in got[side])
                per = " / ".join(f"{commits:.2f}" for _, commits in got[side])
                print(f"{synchronous:6} {side}: writes/s {rates}; COMMITs per write {per}")


if __name__ == "__main__":
    main()
