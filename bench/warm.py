"""P3: a sync call answered by a warm Python server against the same call started cold.

The action is the smallest Python action written with ``hatchway.runtime`` - one ``@sync_action``
that returns ``{}`` and ``hw.main()`` - run as an action is (``python3 main.py``, the interpreter's
site hooks included). Two registrations of the same file on one gateway: one with ``"warm": true``
(the first call starts its server; the warm-up rounds take that), one without. Both are called over
HTTP on keep-alive connections, interleaved, each after a short quiet (:func:`settled`), at the
default sandbox level and at ``none``. The ratio is warm over cold; both include the gateway's own
share of a sync call, which is what bounds the warm side: at ``none`` a third series, a sync call
of ``/bin/echo '{}'`` on the same gateway, is that share (the floor row): no warm call can be
faster than a call whose action costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import PY, Context, Row, percentile, rotate, sandbox_level
from bench.latency import ECHO, sync_sampler

#: quiet before each sample (see :func:`settled`)
SETTLE_SECONDS = 0.05
NOOP = """from hatchway import runtime as hw


@hw.sync_action("call")
def call(ctx):
    return {}


if __name__ == "__main__":
    hw.main()
"""


def _action_file() -> Path:
    """The action's source where an action's own uid can read it (the bench's root is private)."""
    folder = Path(tempfile.mkdtemp(prefix="hatchway-bench-warm-"))
    folder.chmod(0o755)
    path = folder / "main.py"
    path.write_text(NOOP)
    path.chmod(0o644)
    return path


def settled(sampler: Callable[[], float]) -> Callable[[], float]:
    """``sampler`` taken after :data:`SETTLE_SECONDS` of quiet (not timed): each call alone, not in
    the tail of the one before - a cold call leaves its workspace, cgroups and uid to background
    threads, and a warm one its next spare fork, which would otherwise fall on the other side."""

    def sample() -> float:
        time.sleep(SETTLE_SECONDS)
        return sampler()

    return sample


def p3(ctx: Context) -> list[Row]:
    """Warm sync call of a Python ``@sync_action`` no-op vs its cold start: p50 and p99."""
    main = _action_file()
    rows: list[Row] = []
    try:
        for sandbox in ("auto",) if ctx.quick else ("auto", "none"):
            server = ctx.server(sandbox=sandbox)
            level = sandbox_level(sandbox)
            failed: list[bytes] = []
            with contextlib.ExitStack() as stack:
                samplers = [
                    stack.enter_context(
                        sync_sampler(server, f"bench-p3-{kind}", [PY, str(main)], failed, 3, warm=kind == "warm")
                    )
                    for kind in ("warm", "cold")
                ]
                if level == "none":  # (confined, /bin/echo pays its sandbox's start, which a warm call does not)
                    samplers.append(stack.enter_context(sync_sampler(server, "bench-p3-echo", ECHO, failed, 3)))
                warm, cold, *echo = rotate([settled(s) for s in samplers], ctx.n(150, 5), ctx.n(10, 2))
            log = server.log()
            if "run cold" in log or "broke" in log:  # the gateway's line when a warm server failed
                raise RuntimeError(f"the warm calls ran cold at {level}:\n{log[-2000:]}")
            setting = server.setting
            note = f"{len(failed)} calls failed and were taken again" if failed else ""
            for q, ratio_max in ((50, 0.1), (99, None)):
                rows.append(
                    Row(
                        "P3",
                        f"warm sync call, python @sync_action no-op, p{q}",
                        setting,
                        percentile(warm, q),
                        "ms",
                        baseline=percentile(cold, q),
                        baseline_metric=f"the same call cold p{q}",
                        samples=len(warm),
                        ratio_max=ratio_max,
                        note=note,
                    )
                )
            if not echo:
                continue
            rows.append(
                Row(
                    "P3",
                    "  floor: sync call of /bin/echo '{}' (the gateway's own share), p50",
                    setting,
                    percentile(echo[0], 50),
                    "ms",
                    baseline=percentile(cold, 50),
                    baseline_metric="the python call cold p50",
                    samples=len(echo[0]),
                )
            )
    finally:
        with contextlib.suppress(OSError):
            os.unlink(main)
            os.rmdir(main.parent)
    return rows


FIGURES = {"P3": p3}
