"""The container executors' pure parts: argv rules, image tags, the warm pool."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.attempts import AttemptResult, result_from_outcome
from hatchway.domain.runs import Mode
from hatchway.domain.spec import ActionSpec
from hatchway.executors.containers.engine import (
    ActionImage,
    action_image_tag,
    container_workdir,
    effective_argv,
    engine_answers,
    owner_alive,
    owner_token,
)
from hatchway.executors.containers.warm_pool import PoolBusy, WarmContainer, WarmPool
from hatchway.runtime import adapter
from hatchway.runtime.contract import OutputCollector

# the reference grammar of image names (repository path and tag)
IMAGE_NAME = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*:[\w][\w.-]{0,127}$"
)


def spec(**fields: Any) -> ActionSpec:
    return ActionSpec.model_validate({"name": "a", **fields})


IMAGE = ActionImage("img", entrypoint=["/entry"], cmd=["default", "args"], workdir="/app")


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        (None, ["/entry", "default", "args"]),
        ({"command": ["run.py"]}, ["/entry", "run.py"]),
        ({"entry_point": ["python3"]}, ["python3"]),
        ({"entry_point": ["python3"], "command": ["main.py", "-v"]}, ["python3", "main.py", "-v"]),
        ({"entry_point": [], "command": ["sh"]}, ["sh"]),
    ],
)
def test_argv_follows_dockers_rules(container: dict[str, Any] | None, argv: list[str]) -> None:
    assert effective_argv(spec(image_uri="x", container_parameters=container), IMAGE) == argv


def test_workdir_is_relative_to_the_images() -> None:
    assert container_workdir(spec(image_uri="x"), IMAGE) == "/app"
    assert container_workdir(spec(image_uri="x", container_parameters={"workdir": "sub"}), IMAGE) == "/app/sub"
    assert container_workdir(spec(image_uri="x", container_parameters={"workdir": "/w"}), IMAGE) == "/w"
    assert container_workdir(spec(image_uri="x"), ActionImage("img")) == "/"


@pytest.mark.parametrize("name", ["a", "db-extractor", "x-", "9-lives", "a" * 63])
def test_image_tags_are_valid_and_distinct_per_tenant(name: str) -> None:
    digest = "sha256:" + "ab" * 32
    tag = action_image_tag("proj_Local", name, digest)
    assert IMAGE_NAME.match(tag), tag
    assert digest.removeprefix("sha256:") in tag
    assert tag != action_image_tag("proj_other", name, digest)


def test_no_engine_is_a_quick_no(tmp_path: Path) -> None:
    started = time.monotonic()
    assert not engine_answers(f"unix://{tmp_path}/missing.sock")
    assert not engine_answers("tcp://127.0.0.1:9")
    assert time.monotonic() - started < 3


def test_owner_tokens_tell_live_from_dead_processes() -> None:
    assert owner_alive(owner_token())
    dead = subprocess.Popen(["true"])
    token = owner_token(dead.pid)
    dead.wait()
    assert not owner_alive(token)
    assert not owner_alive("otherboot:1:1")


# ---- the warm pool ------------------------------------------------------------------------------


class FakeContainers:
    def __init__(self) -> None:
        self.started: list[WarmContainer] = []
        self.stopped: list[WarmContainer] = []
        self.lock = threading.Lock()

    def start(self, key: tuple[str, ...]) -> WarmContainer:
        with self.lock:
            warm = WarmContainer(f"c{len(self.started)}", key, "", Path("/nonexistent"))
            self.started.append(warm)
        return warm

    def stop(self, warm: WarmContainer) -> None:
        with self.lock:
            self.stopped.append(warm)


def test_pool_reuses_idle_containers_and_bounds_each_key() -> None:
    fake = FakeContainers()
    pool = WarmPool(per_key=2, total=10, idle_seconds=60, stop=fake.stop)
    key = ("p", "e", "d1")
    first, is_new = pool.acquire(key, lambda: fake.start(key), time.monotonic() + 1)
    assert is_new
    pool.release(first)
    again, is_new = pool.acquire(key, lambda: fake.start(key), time.monotonic() + 1)
    assert again is first and not is_new
    second, _ = pool.acquire(key, lambda: fake.start(key), time.monotonic() + 1)
    assert second is not first
    # both busy and the key at its bound: a third caller waits, then gives up at its deadline
    with pytest.raises(PoolBusy):
        pool.acquire(key, lambda: fake.start(key), time.monotonic() + 0.1)
    # a release hands the container to a waiting caller
    got: list[WarmContainer] = []
    waiter = threading.Thread(
        target=lambda: got.append(pool.acquire(key, lambda: fake.start(key), time.monotonic() + 5)[0])
    )
    waiter.start()
    time.sleep(0.05)
    pool.release(second)
    waiter.join(5)
    assert got == [second]
    assert len(fake.started) == 2
    pool.close()
    assert set(fake.stopped) == {first, second}


def test_pool_evicts_idle_containers_of_other_keys_at_its_total_and_expires_idle_ones() -> None:
    fake = FakeContainers()
    pool = WarmPool(per_key=2, total=2, idle_seconds=0.2, stop=fake.stop)
    a, b = ("a",), ("b",)
    one, _ = pool.acquire(a, lambda: fake.start(a), time.monotonic() + 1)
    two, _ = pool.acquire(a, lambda: fake.start(a), time.monotonic() + 1)
    pool.release(one)
    # the total is reached: a new key takes the place of the idle container of another key
    three, is_new = pool.acquire(b, lambda: fake.start(b), time.monotonic() + 1)
    assert is_new and fake.stopped == [one]
    pool.release(two)
    pool.release(three)
    deadline = time.monotonic() + 5
    while pool.size() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.size() == 0
    assert set(fake.stopped) == {one, two, three}


def test_a_failed_start_frees_its_place() -> None:
    fake = FakeContainers()
    pool = WarmPool(per_key=1, total=1, idle_seconds=60, stop=fake.stop)

    def boom() -> WarmContainer:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        pool.acquire(("k",), boom, time.monotonic() + 1)
    warm, is_new = pool.acquire(("k",), lambda: fake.start(("k",)), time.monotonic() + 1)
    assert is_new


# ---- the adapter's out-of-memory report -----------------------------------------------------------


def test_the_adapter_reports_an_oom_kill_it_can_see(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = tmp_path / "memory.events"
    counter.write_text("oom 0\noom_kill 0\n")
    monkeypatch.setattr(adapter, "OOM_COUNTERS", (str(counter),))
    # the "action" bumps the counter as the kernel would, then dies by SIGKILL
    script = (
        f"import os, pathlib; pathlib.Path({str(counter)!r}).write_text('oom 1\\noom_kill 1\\n'); "
        "os.kill(os.getpid(), 9)"
    )
    outcome = adapter.invoke(
        {"hatchway": 1, "config": {"action": "check", "parameters": {}, "run": {"id": "r"}},
         "argv": [sys.executable, "-c", script], "timeout_seconds": 10, "data_root": str(tmp_path)}
    )  # fmt: skip
    assert outcome["signal"] == 9 and outcome["oom"] is True
    execution = result_from_outcome(outcome, OutputCollector(Mode.SYNC))
    assert execution.oom


def test_the_adapter_puts_its_data_directory_into_derived_variables(tmp_path: Path) -> None:
    # Given a payload whose variables derive from the data directory the adapter will make
    script = "import json, os; print(json.dumps([os.environ['KBC_DATADIR'], os.environ['HATCHWAY_DATA_DIR']]))"
    outcome = adapter.invoke(
        {"hatchway": 1, "config": {"action": "check", "parameters": {}, "run": {"id": "r"}},
         "argv": [sys.executable, "-c", script], "timeout_seconds": 10, "data_root": str(tmp_path),
         "env": {"KBC_DATADIR": "${HATCHWAY_DATA_DIR}/"}, "data_dir_token": "${HATCHWAY_DATA_DIR}"}
    )  # fmt: skip
    # Then the action sees the real directory in both
    kbc, data_dir = json.loads(outcome["stdout"])
    assert kbc == data_dir + "/" and data_dir.startswith(str(tmp_path))


# ---- limits and the sync clock (a fake engine: no Docker needed) ------------------------------


class FakeClock:
    """Stands in for the ``time`` module of an executor: monotonic time moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class FakeEngine:
    """An engine whose image takes ``pull_seconds`` (of the fake clock) to pull or build."""

    def __init__(self, clock: FakeClock, pull_seconds: float, image: ActionImage, ncpu: float = 2.0) -> None:
        self.clock = clock
        self.pull_seconds = pull_seconds
        self.image = image
        self.removed: list[str] = []
        self.client = type("Client", (), {"info": lambda _self: {"NCPU": ncpu}})()

    def ensure_image(self, invocation: Any) -> ActionImage:
        self.clock.now += self.pull_seconds
        return self.image

    def remove_later(self, container_id: str, delay: float = 0.0, then: Any = None) -> None:
        self.removed.append(container_id)


@pytest.mark.parametrize(
    ("vcpu", "memory", "nano_cpus"),
    [(256, 512, 250_000_000), (1024, 2048, 1_000_000_000), (4096, 8192, 2_000_000_000)],  # capped at NCPU=2
)
def test_run_options_limit_cpus_and_memory_from_compute(tmp_path: Path, vcpu: int, memory: int, nano_cpus: int) -> None:
    from hatchway.executors.containers.engine import DockerEngine

    engine = DockerEngine(None, tmp_path, client=FakeEngine(FakeClock(), 0, IMAGE, ncpu=2).client)
    options = engine.run_options(spec(image_uri="x", compute_requirements={"vCPU": vcpu, "memory": memory}), "run")
    assert options["nano_cpus"] == nano_cpus
    assert options["mem_limit"] == options["memswap_limit"] == f"{memory}m"
    assert options["network_mode"] == "none" and options["cap_drop"] == ["ALL"]


def invocation(deadline: float) -> Any:
    from hatchway.domain.attempts import Invocation

    return Invocation("run_1", "p", "e", "a", 1, "sha256:" + "0" * 64, "go", Mode.SYNC,
                      spec(image_uri="x", sync_actions=["go"]), {}, 1, deadline)  # fmt: skip


def test_an_image_pull_does_not_count_against_the_sync_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hatchway.executors.containers import docker, lambda_local

    clock = FakeClock()
    monkeypatch.setattr(docker, "time", clock)
    monkeypatch.setattr(lambda_local, "time", clock)
    # Given an engine whose image takes 100 s to pull, and a call with 5 s left
    engine: Any = FakeEngine(clock, 100.0, ActionImage("img", labels={"io.hatchway.runtime": "1"}))
    executor = docker.DockerExecutor(engine, tmp_path / "work")
    given = invocation(time.time() + 5)
    seen: list[Any] = []
    monkeypatch.setattr(executor, "run_container", lambda inv, *_: seen.append(inv) or AttemptResult(exit_code=0))
    # When the Docker executor runs it
    executor.execute(given, OutputCollector(Mode.SYNC), threading.Event())
    # Then the container starts with the 5 s still ahead: the pull moved the deadline
    assert seen[0].deadline - given.deadline == pytest.approx(100.0)
    # And a warm Lambda call that pulled and started a container (another 7 s) still has its 5 s
    warm = lambda_local.LocalLambdaExecutor(engine, executor, tmp_path / "rie")

    def start(inv: Any, image: ActionImage, key: tuple[str, ...]) -> WarmContainer:
        clock.now += 7.0
        return WarmContainer("c1", key, "", tmp_path / "ctl")

    monkeypatch.setattr(warm, "_start", start)
    monkeypatch.setattr(warm, "_call", lambda _w, call, *_: seen.append(call) or AttemptResult(exit_code=0))
    warm.execute(given, OutputCollector(Mode.SYNC), threading.Event())
    assert seen[1].deadline - given.deadline == pytest.approx(107.0)
    warm.pool.close()
    assert engine.removed == ["c1"]


@pytest.mark.parametrize(
    ("code", "tail", "expected"),
    [
        (127, ["[FATAL tini (7)] exec /app/run failed: No such file or directory"], "'/app/run' was not found"),
        (126, ["[FATAL tini (7)] exec /app/run failed: Permission denied"], "'/app/run' is not executable"),
        (127, ["sh: 1: frobnicate: not found"], None),  # the action's own exit 127 stays its own
        (1, ["[FATAL tini (7)] exec /app/run failed: No such file or directory"], None),
    ],
)
def test_the_inits_failure_to_start_the_command_is_told_from_the_actions_end(
    code: int, tail: list[str], expected: str | None
) -> None:
    from hatchway.executors.containers.docker import init_start_error

    assert init_start_error(code, tail) == expected


@pytest.mark.parametrize(("code", "signal"), [(137, 9), (143, 15), (129, 1), (192, 64), (128, None), (193, None),
                                              (1, None), (0, None), (None, None)])  # fmt: skip
def test_an_inits_exit_code_128_plus_n_is_signal_n(code: int | None, signal: int | None) -> None:
    from hatchway.executors.sandbox import signal_of

    assert signal_of(code) == signal
