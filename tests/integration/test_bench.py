"""The benchmark suite keeps working: every figure runs in quick mode (its numbers mean nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIGURES = {"P1", "P2", "P3", "P4", "P5", "P6", "P9"}
PEERS = {"P1-PEERS", "P2-PEERS", "P4-PEERS", "P5-PEERS"}


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
    # (a failing figure's own error comes first; the gateways' logs the harness prints follow it)
    assert done.returncode == 0, done.stderr[:4000] + "\n...\n" + done.stderr[-1500:]
    report = json.loads(out.read_text())
    rows = [row for row in report["rows"] if "skipped" not in row]
    assert {row["figure"] for row in rows} >= FIGURES | PEERS, report["rows"]
    for row in rows:
        assert row["samples"] >= 1 and row["target"] is not None
        if row["baseline"] is not None:
            assert row["baseline"] > 0 and row["ratio"] is not None
    assert all(figure in done.stdout for figure in FIGURES | PEERS)
    # the peers: hatchway against the bare-ASGI floor always; a peer that cannot run says why
    metrics = {(row["figure"], row["metric"]) for row in rows}
    assert ("P2-PEERS", "sync call /bin/echo '{}' vs bare ASGI, p50") in metrics
    assert ("P4-PEERS", "submit rate vs bare ASGI") in metrics
    [doubles] = [row for row in rows if row["metric"] == "double executions, hatchway and every peer"]
    assert doubles["met"] is True and doubles["value"] == 0, doubles
    for row in report["rows"]:
        if row["figure"] in PEERS and "skipped" in row:
            assert "not installed" in row["skipped"], row


def test_peers_is_a_group_of_figures() -> None:
    # Given the benchmark runner, When it lists its figures
    listed = subprocess.run(
        [sys.executable, "bench/run.py", "--list"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    # Then the peers group names its figures
    assert "peers: P1-PEERS P2-PEERS P4-PEERS P5-PEERS" in listed.stdout
    # And an unknown name is refused with the groups among what is known
    refused = subprocess.run(
        [sys.executable, "bench/run.py", "no-such-figure"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "NO-SUCH-FIGURE" in refused.stderr and "peers" in refused.stderr
