"""P9: the gateway's resident memory, idle and after many runs.

A fresh ``hatchway serve`` (default settings but the sandbox level, see below) is measured after
start-up and one request, then after each batch of trivial runs up to 10,000. The growth from the
first batch to the last tells a leak from the one-time cost of warming up (imports done on the
first run, thread stacks, SQLite's page cache).

The sandbox is ``none`` here: the sandbox lives in the action's processes, not in the gateway, and
10,000 bubblewrap starts would take minutes on a shared machine without changing the gateway's RSS.
"""

from __future__ import annotations

import time

from bench.harness import Context, Row
from bench.throughput import TRUE_ACTION, run_batch


def p9(ctx: Context) -> list[Row]:
    """Gateway RSS idle and after 10,000 runs (growth)."""
    total, batches = ctx.n(10_000, 40), 10
    server = ctx.fresh_server(sandbox="none")
    conn = server.connect()
    conn.call("GET", "/health", expect=200)
    conn.close()
    time.sleep(0.5)
    idle = server.rss_mib()
    server.register(TRUE_ACTION)
    curve = []
    for _ in range(batches):
        run_batch(server, total // batches)
        curve.append(round(server.rss_mib(), 1))
    time.sleep(0.5)
    after = server.rss_mib()
    server.stop()
    return [
        Row("P9", "gateway RSS, idle", "sandbox none", idle, "MiB", samples=1, value_max=120),
        Row(
            "P9",
            f"gateway RSS growth after {total:,} runs",
            "sandbox none",
            after - idle,
            "MiB",
            samples=1,
            value_max=20,
            note=f"{after:.1f} MiB after",
            extra={"rss_after_each_batch": curve},
        ),
        Row(
            "P9",
            f"RSS growth from run {total // batches:,} to {total:,}",
            "sandbox none",
            after - curve[0],
            "MiB",
            samples=1,
            note="what keeps growing once warm (a leak would show here)",
        ),
    ]


FIGURES = {"P9": p9}
