"""R2: one queued run offered to two worker processes at the same instant, many times over.

Each round the parent enqueues one run and tells two claimer processes (``claimer.py``, each with
its own repositories built by ``build_repos``) to claim at the same instant; the winner finishes the run.
Exactly one claim per round, one result per run - on SQLite (one file, two processes) and on
DynamoDB (a moto server shared by both) once that store exists.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hatchway.config import Settings
from hatchway.domain.runs import Run, RunStatus, new_run_id, now_ms
from hatchway.ports import RunRepo
from hatchway.wiring import build_repos
from tests.helpers import REPO
from tests.reliability.conftest import Figures, scaled

pytestmark = pytest.mark.integration

CLAIMER = "tests.reliability.claimer"


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment that makes ``build_repos(Settings.from_env())`` open one shared store."""
    if request.param == "sqlite":
        yield {"HATCHWAY_HOME": str(tmp_path / "home")}
        return
    if importlib.util.find_spec("hatchway.store.dynamodb") is None:
        pytest.skip("hatchway.store.dynamodb does not exist yet (the aws branch brings it)")
    from tests.awsmock import FAKE_CREDENTIALS, MotoServer, patched_env  # type: ignore[import-not-found,unused-ignore]

    server = MotoServer().start()
    try:
        with patched_env(FAKE_CREDENTIALS):  # for this process's store; the claimers get them in their env
            yield {**server.env(), "HATCHWAY_BACKEND": "aws", "HATCHWAY_TABLE_NAME": f"r2-{uuid.uuid4().hex[:8]}"}
    finally:
        server.stop()


def _runs(env: dict[str, str]) -> RunRepo:
    repos = build_repos(Settings.from_env(env))
    create_table = getattr(repos, "create_table", None)
    if create_table is not None:
        create_table()
    return repos.runs


def _queued(round_: int) -> Run:
    now = now_ms()
    return Run(
        id=new_run_id(now), project_id="proj_local", environment="development", action_name="r2",
        action_version=1, action_digest="sha256:" + "0" * 64, parameters={"round": str(round_)},
        created_at=now, available_at=now,
    )  # fmt: skip


def test_r2_one_run_two_workers_exactly_one_claim(
    backend_env: dict[str, str], figures: Figures, is_full: bool, tmp_path: Path
) -> None:
    backend = backend_env.get("HATCHWAY_BACKEND", "sqlite").replace("aws", "dynamodb")
    rounds = scaled(1000, 200 if backend == "sqlite" else 100, is_full)  # moto answers slower than SQLite
    runs = _runs(backend_env)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HATCHWAY_")},
        **backend_env,
        "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
    }
    claimers = [
        subprocess.Popen(
            [sys.executable, "-m", CLAIMER, f"claimer-{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        for claimer in claimers:
            assert claimer.stdout is not None and claimer.stdout.readline().strip() == "ready"
        winners = Counter[str]()
        double, none, races = [], [], 0
        run_ids = []
        for round_ in range(rounds):
            # Given one queued run
            run = runs.create_run(_queued(round_))
            run_ids.append(run.id)
            # When both processes claim it at the same instant
            instant = time.time() + 0.004
            for claimer in claimers:
                assert claimer.stdin is not None
                claimer.stdin.write(f"go {instant}\n")
                claimer.stdin.flush()
            answers = []
            for claimer in claimers:
                assert claimer.stdout is not None
                answers.append(claimer.stdout.readline().split())
            won = [(index, answer[1]) for index, answer in enumerate(answers) if answer[0] == "won"]
            races += sum(int(answer[-1]) for answer in answers)
            if len(won) > 1:
                double.append(run.id)
            elif not won:
                none.append(run.id)
            else:
                winners[f"claimer-{won[0][0]}"] += 1
                assert won[0][1] == run.id
        for claimer in claimers:
            assert claimer.stdin is not None
            claimer.stdin.write("stop\n")
            claimer.stdin.flush()
    finally:
        for claimer in claimers:
            try:
                claimer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                claimer.kill()
    # Then each run was claimed once, by one process, and has exactly one result
    finals = [runs.get_run(run_id) for run_id in run_ids]
    wrong = [
        r.id for r in finals if r is None or r.status != RunStatus.SUCCESSFUL or r.attempt != 1 or not r.ret
    ]  # fmt: skip
    figures.add("R2", f"{backend}: rounds (one run, two processes)", rounds)
    figures.add("R2", f"{backend}: rounds with two claims / no claim", f"{len(double)} / {len(none)}", "0 / 0",
                not double and not none)  # fmt: skip
    figures.add("R2", f"{backend}: compare-and-set races lost", races, "> 0 (real contention)")
    figures.add("R2", f"{backend}: wins per process", dict(winners))
    figures.add("R2", f"{backend}: runs without exactly one result", len(wrong), "0", not wrong)
    assert not double and not none
    assert not wrong, wrong[:5]
