"""The trivial work of P5, as every peer's worker does it: spawn ``/bin/true`` the way the gateway
spawns an action (its output captured, a minimal environment), then append one line saying so.

The line - ``<index> <exit status> <unix time>`` - goes to a file named by the task, with one
``O_APPEND`` write (atomic for a line this short), so the benchmark counts completions, finds any
task executed twice and takes the time of the last one without asking the peer anything.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

TRUE = ["/bin/true"]
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/")}


def true_and_mark(marker: str, index: int) -> None:
    """Run ``/bin/true`` and record that task ``index`` ran (the body of every peer's task)."""
    done = subprocess.run(TRUE, capture_output=True, env=ENV, check=False)
    line = f"{index} {done.returncode} {time.time():.6f}\n".encode()
    fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class Marks:
    """What the tasks of one batch recorded in their marker file."""

    def __init__(self, marker: Path) -> None:
        self.indexes: Counter[int] = Counter()
        self.failed = 0
        self.last = 0.0
        try:
            text = marker.read_text()
        except FileNotFoundError:
            return
        for line in text.split("\n")[:-1]:  # the last piece is empty, or a line still being written
            index, status, when = line.split()
            self.indexes[int(index)] += 1
            self.failed += status != "0"
            self.last = max(self.last, float(when))

    @property
    def done(self) -> int:
        """Tasks that ran at least once."""
        return len(self.indexes)

    @property
    def doubles(self) -> int:
        """Executions beyond the first of a task."""
        return sum(n - 1 for n in self.indexes.values())
