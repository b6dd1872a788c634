"""The benchmark suite keeps working: every figure runs in quick mode (its numbers mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIGURES = {"P1", "P2", "P4", "P5", "P6", "P9"}


def test_every_figure_runs_in_quick_mode(tmp_path: Path) -> None:
    # Given the benchmark runner in its smoke-test mode, writing to a scratch file
    out = tmp_path / "results.json"
    # When it runs every figure
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    # Then it succeeds, prints the table and records each figure with a baseline where it has one
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    rows = [row for row in report["rows"] if "skipped" not in row]
    assert {row["figure"] for row in rows} >= FIGURES, report["rows"]
    for row in rows:
        assert row["samples"] >= 1 and row["target"] is not None
        if row["baseline"] is not None:
            assert row["baseline"] > 0 and row["ratio"] is not None
    assert all(figure in done.stdout for figure in FIGURES)
