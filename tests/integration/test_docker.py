"""Container actions against a real dockerd: ``docker run`` per attempt and warm container Lambdas.

The test action (``docker_action/``) is built FROM hatchway's base image at registration and
behaves as its ``mode`` parameter says (answer, user error, application error, bad JSON, sleep,
eat memory, kill its runtime).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.client import (
    ApplicationErrorResponse as AppErrorResponse,
)
from hatchway.client import (
    Client,
    TimeoutResponse,
    UnavailableResponse,
    UserErrorResponse,
    ValidationErrorResponse,
    as_json,
)
from hatchway.config import Settings
from hatchway.domain.spec import resolve_local_paths
from hatchway.executors.containers.engine import LABEL_HOME, LABEL_KIND, LABEL_MANAGED, DockerEngine, action_image_tag
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services, tidy_at_rest
from hatchway.worker import WorkerPool
from tests.conftest import inprocess_client, make_settings
from tests.helpers import REPO, LiveServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.docker]

ACTION_DIR = Path(__file__).parent / "docker_action"


def action(name: str = "box", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "parameters": [
            {"name": "mode", "default": "ok"},
            {"name": "seconds", "default": "60"},
            {"name": "who", "required": False},
        ],
        "sync_actions": ["go"],
        "compute_requirements": {"vCPU": 1024, "memory": 2048},
        "container_parameters": {"entry_point": ["python3"], "command": ["act.py"], "env_vars": {"GREETING": "hi"}},
        "docker_config": {"context": str(ACTION_DIR), "dockerfile": "Dockerfile"},
    }
    doc.update(extra)
    return doc


SMALL = {"vCPU": 256, "memory": 512}


def containers(engine: DockerEngine, kind: str | None = None) -> list[Any]:
    labels = [f"{LABEL_MANAGED}=1", f"{LABEL_HOME}={engine.home_label}"]
    if kind:
        labels.append(f"{LABEL_KIND}={kind}")
    return list(engine.client.containers.list(all=True, filters={"label": labels}, ignore_removed=True))


def engine_of(services: Services) -> DockerEngine:
    engine: DockerEngine = services.placement.named["docker"][0].engine  # type: ignore[attr-defined]
    return engine


def container_settings(home: Path, executor: str, docker_host: str, rie_path: str, **overrides: Any) -> Settings:
    return make_settings(home, executor=executor, docker_host=docker_host, lambda_rie_path=rie_path, **overrides)


@pytest.fixture
def services_for(tmp_path: Path, docker_host: str, base_image: str, rie_path: str) -> Iterator[Any]:
    """Gateways with container executors; each is closed (and its containers removed) at the end."""
    made: list[Services] = []

    def make(executor: str, **overrides: Any) -> Services:
        home = tmp_path / f"home-{len(made)}"
        services = build_services(container_settings(home, executor, docker_host, rie_path, **overrides), pool=True)
        bootstrap(services)
        made.append(services)
        return services

    yield make
    for services in made:
        services.close()


@pytest.fixture
def hw_for(services_for: Any) -> Iterator[Any]:
    """A client over an in-process gateway with a worker pool, for one executor choice."""
    opened: list[tuple[Client, WorkerPool]] = []

    def make(executor: str, **overrides: Any) -> tuple[Client, Services]:
        services = services_for(executor, **overrides)
        pool = WorkerPool(services, size=2)
        pool.start()
        client = inprocess_client(services)
        opened.append((client, pool))
        return client, services

    yield make
    for client, pool in opened:
        client.close()
        pool.stop(grace_seconds=2)


@pytest.mark.parametrize("executor", ["docker", "lambda-local"])
def test_sync_answers_errors_and_timeouts(hw_for: Any, executor: str) -> None:
    hw, services = hw_for(executor)
    # Given an action with a docker_config, registered: its image is built, tagged by the digest
    record = hw.register_action(action())
    tag = action_image_tag("proj_local", "box", record["digest"])
    assert tag.startswith("hatchway-action/box:" + record["digest"].removeprefix("sha256:"))
    assert engine_of(services).inspect(tag) is not None
    # When its sync action answers
    answer = hw.call_sync("box", "go", {"who": "a; $(rm -rf /) `x`"})
    # Then the JSON on stdout is the answer; it ran as nobody, without a network, with env_vars
    ret = answer["ret"]
    assert ret["who"] == "a; $(rm -rf /) `x`"
    assert ret["uid"] == 65534
    assert ret["interfaces"] == ["lo"]
    assert ret["env"] == "hi"
    assert ret["cwd"] == "/action"
    assert [e["msg"] for e in answer["os"]] == ["to the log"]
    # A user error is a 400 with the action's message
    with pytest.raises(UserErrorResponse) as user:
        hw.call_sync("box", "go", {"mode": "user"})
    assert "the table 'x' does not exist" in user.value.message
    # An application error and invalid JSON are 500s that quote an exceptionId only
    for mode in ("app", "badjson"):
        with pytest.raises(AppErrorResponse) as app:
            hw.call_sync("box", "go", {"mode": mode})
        assert app.value.body["exceptionId"].startswith("exc_")
        assert "exit code" not in app.value.message
    # A call over its limit is a 504, and its container goes away (a warm Lambda container too)
    engine = engine_of(services)
    warm_before = {c.id for c in containers(engine, "lambda")}
    assert len(warm_before) == (1 if executor == "lambda-local" else 0)
    with pytest.raises(TimeoutResponse):
        hw.call_sync("box", "go", {"mode": "sleep"}, timeout_seconds=2)
    wait_until(lambda: not containers(engine, "run"), 20, 0.1, "the timed-out container to be removed")
    wait_until(
        lambda: not warm_before & {c.id for c in containers(engine, "lambda")},
        20, 0.1, "the timed-out Lambda container to be removed",
    )  # fmt: skip
    # and the action still answers afterwards, from a fresh container
    again = hw.call_sync("box", "go", {"who": "again"})["ret"]
    assert again["who"] == "again"
    assert again["host"] != ret["host"]


def test_warm_containers_are_reused_and_a_crashed_one_replaced(hw_for: Any) -> None:
    hw, services = hw_for("lambda-local")
    hw.register_action(action())
    engine = engine_of(services)
    # Given a first call that started a warm container
    first = hw.call_sync("box", "go", {})["ret"]["host"]
    # When the action is called again, the same container answers
    assert hw.call_sync("box", "go", {})["ret"]["host"] == first
    assert len(containers(engine, "lambda")) == 1
    # When the action kills its runtime, the call fails as an application error
    with pytest.raises(AppErrorResponse):
        hw.call_sync("box", "go", {"mode": "crash"})
    # Then the next call gets a fresh container, and the dead one is removed
    replaced = hw.call_sync("box", "go", {})["ret"]["host"]
    assert replaced != first
    wait_until(lambda: len(containers(engine, "lambda")) == 1, 20, 0.1, "the crashed container to be removed")


def test_a_rebuilt_image_is_not_served_by_warm_containers(hw_for: Any, tmp_path: Path) -> None:
    hw, services = hw_for("lambda-local")
    source = tmp_path / "source"
    shutil.copytree(ACTION_DIR, source)
    doc = action(docker_config={"context": str(source), "dockerfile": "Dockerfile"})
    first = hw.register_action(doc)
    # Given a warm container answering from the first build
    assert hw.call_sync("box", "go", {})["ret"]["env"] == "hi"
    assert len(containers(engine_of(services), "lambda")) == 1
    # When the action's source is edited and the unchanged action.json registered again
    script = source / "act.py"
    script.write_text(script.read_text().replace('os.environ.get("GREETING")', '"edited"'))
    again = hw.register_action(doc)
    # Then the version (and so the image tag) is the same, but the call runs the new image
    assert again["digest"] == first["digest"]
    assert hw.call_sync("box", "go", {})["ret"]["env"] == "edited"


def test_an_image_a_rebuild_replaced_or_a_delete_left_is_removed(
    hw_for: Any, services_for: Any, tmp_path: Path
) -> None:
    hw, services = hw_for("docker")
    engine = engine_of(services)
    source = tmp_path / "source"
    shutil.copytree(ACTION_DIR, source)
    doc = action(docker_config={"context": str(source), "dockerfile": "Dockerfile"})
    script = source / "act.py"
    original = script.read_text()
    # Given an action built from its sources (made unique to this test: the engine outlives sessions)
    script.write_text(f"{original}\n# {os.urandom(8).hex()}\n")
    record = hw.register_action(doc)
    tag = action_image_tag("proj_local", "box", record["digest"])
    first = engine.inspect(tag)
    assert first is not None and first.labels.get(LABEL_MANAGED) == "1"
    # When its sources change and the same action.json is registered again
    script.write_text(f"{original}\n# {os.urandom(8).hex()}\n")
    hw.register_action(doc)
    # Then the tag names the new image, and the one it replaced is gone from the engine
    second = engine.inspect(tag)
    assert second is not None and second.id != first.id
    assert engine.inspect(first.id) is None
    assert hw.call_sync("box", "go", {})["ret"]["env"] == "hi"
    # Given a replaced image that a container still used when the rebuild came
    script.write_text(f"{original}\n# {os.urandom(8).hex()}\n")
    user = engine.client.containers.create(second.id, command=["true"])
    hw.register_action(doc)
    assert engine.inspect(second.id) is not None
    user.remove()
    # When a gateway starts (and tidies what it finds, as serve and worker do)
    tidy_at_rest(services_for("docker"))
    # Then that image is gone too
    assert engine.inspect(second.id) is None
    third = engine.inspect(tag)
    assert third is not None
    # When the action is deleted (once its call's container is gone)
    wait_until(lambda: not containers(engine), 30, 0.1, "the call's container to be removed")
    hw.delete_action("box")
    # Then its image goes too
    assert engine.inspect(tag) is None and engine.inspect(third.id) is None


def test_a_stash_is_the_containers_tmp(hw_for: Any) -> None:
    hw, _ = hw_for("lambda-local")
    counter = (
        "import json, os\n"
        "path = '/tmp/count'\n"
        "count = int(open(path).read()) + 1 if os.path.exists(path) else 1\n"
        "open(path, 'w').write(str(count))\n"
        "print(json.dumps({'count': count, 'tmpdir': os.environ['TMPDIR']}))\n"
    )
    hw.register_action(action(container_parameters={"entry_point": ["python3", "-c", counter]}))
    sync = "/v1/projects/proj_local/actions/box/sync/go"
    # Given a sync call with a new stash that writes /tmp/count in its container
    first = hw.request("POST", sync, json={"parameters": {}, "stash_id": "NEW"})
    assert first["ret"] == {"count": 1, "tmpdir": "/tmp"}
    # When the stash is named again, the file written to /tmp is there
    second = hw.request("POST", sync, json={"parameters": {}, "stash_id": first["stash_id"]})
    assert second["ret"]["count"] == 2
    # and a call without the stash starts from an empty /tmp
    assert hw.call_sync("box", "go", {})["ret"]["count"] == 1


def test_concurrent_calls_share_a_bounded_pool(hw_for: Any) -> None:
    hw, services = hw_for("lambda-local", lambda_pool_size=2)
    hw.register_action(action(compute_requirements=SMALL))
    hosts: list[str] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            hosts.append(hw.call_sync("box", "go", {"mode": "sleep", "seconds": "1"})["ret"]["host"])
        except BaseException as exc:
            errors.append(exc)

    # When four calls arrive at once for a pool of two
    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then all are answered, by at most two containers
    assert not errors
    assert len(hosts) == 4
    assert 1 <= len(set(hosts)) <= 2
    assert len(containers(engine_of(services), "lambda")) <= 2


def test_async_run_records_ret_exports_and_logs(hw_for: Any) -> None:
    hw, _ = hw_for("docker")
    hw.register_action(action())
    # When a run is started and awaited
    run = hw.start_run("box", {"who": "w"})
    final = hw.wait(run["id"], timeout=60)
    # Then out/result.json, out/exports.json and the output lines are recorded
    assert final["status"] == "SUCCESSFUL", final
    assert final["ret"]["who"] == "w"
    assert final["ret"]["data_dir"] == "/hatchway/data"
    assert final["exports"] == {"rows": 42}
    messages = [e["msg"] for e in hw.logs(run["id"])["items"]]
    assert {"line 0", "line 1", "line 2", "to the log"} <= set(messages)


@pytest.mark.parametrize("executor", ["docker", "lambda-local"])
def test_memory_limit_is_enforced_and_reported(hw_for: Any, executor: str) -> None:
    hw, services = hw_for(executor)
    hw.register_action(action(compute_requirements=SMALL))
    # When the action allocates more than its 512 MiB
    with pytest.raises(AppErrorResponse) as err:
        hw.call_sync("box", "go", {"mode": "oom"})
    # Then it is killed and the run says why
    run = hw.get_run(err.value.body["runId"])
    assert run["error"]["message"] == "out of memory"
    # and the next call is answered
    assert hw.call_sync("box", "go", {})["ret"]["uid"] == 65534


def test_network_only_when_the_action_allows_it(hw_for: Any) -> None:
    hw, _ = hw_for("docker")
    hw.register_action(action("open", metadata={"network": True}))
    hw.register_action(action("closed"))
    assert "eth0" in hw.call_sync("open", "go", {})["ret"]["interfaces"]
    assert hw.call_sync("closed", "go", {})["ret"]["interfaces"] == ["lo"]


def test_cancel_and_timeout_leave_no_container(hw_for: Any) -> None:
    hw, services = hw_for("docker", kill_grace_seconds=1.0)
    engine = engine_of(services)
    hw.register_action(action())
    # Given a running run in its container
    run = hw.start_run("box", {"mode": "sleep"})
    wait_until(lambda: containers(engine, "run"), 30, 0.1, "the run's container")
    wait_until(lambda: hw.get_run(run["id"])["status"] == "INPROGRESS", 30, 0.05, "INPROGRESS")
    # When it is cancelled
    hw.cancel_run(run["id"])
    # Then it ends TERMINATED and its container is removed
    assert hw.wait(run["id"], timeout=30)["status"] == "TERMINATED"
    wait_until(lambda: not containers(engine, "run"), 30, 0.1, "the cancelled container to be removed")
    # When a run outlives its timeout
    late = hw.start_run("box", {"mode": "sleep"}, timeout_seconds=2)
    final = hw.wait(late["id"], timeout=60)
    # Then it fails with a timeout and leaves no container either
    assert final["status"] == "FAILED"
    assert final["error"]["kind"] == "timeout" or "time" in final["error"]["message"]
    wait_until(lambda: not containers(engine, "run"), 30, 0.1, "the timed-out container to be removed")
    # and the workspaces (config.json holds the parameters) go with their containers
    wait_until(lambda: not list(services.settings.work_dir.glob("run_*")), 30, 0.1, "the workspaces to be removed")


def test_a_failed_build_is_a_422_with_the_log_and_stores_nothing(hw_for: Any, tmp_path: Path) -> None:
    hw, _ = hw_for("docker")
    context = tmp_path / "broken"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "ARG BASE=hatchway/action-base:3.11\nFROM ${BASE}\nRUN echo compiling the thing && exit 7\n"
    )
    doc = action("broken", docker_config={"context": str(context), "dockerfile": "Dockerfile"})
    with pytest.raises(ValidationErrorResponse) as err:
        hw.register_action(doc)
    assert "compiling the thing" in err.value.message
    assert str(context) not in json.dumps(err.value.body)
    assert hw.list_actions() == []


def test_examples_build_from_the_base_image_and_answer(hw_for: Any) -> None:
    hw, _ = hw_for("lambda-local")
    for example in ("db-extractor", "check-magnetometer-norm"):
        path = REPO / "examples" / example / "action.json"
        hw.register_action(resolve_local_paths(json.loads(path.read_text()), path.parent))
    tables = hw.call_sync("db-extractor", "list-tables", {"database": "sample.db"})["ret"]
    assert tables
    run = hw.start_run("check-magnetometer-norm", {})
    assert hw.wait(run["id"], timeout=120)["status"] == "SUCCESSFUL"


def test_containers_of_a_killed_gateway_are_removed_at_restart(
    tmp_path: Path, docker_host: str, base_image: str, docker_client: Any
) -> None:
    home = tmp_path / "live"
    env = {"HATCHWAY_EXECUTOR": "docker", "DOCKER_HOST": docker_host, "HATCHWAY_LEASE_SECONDS": "3",
           "HATCHWAY_HEARTBEAT_SECONDS": "0.5"}  # fmt: skip
    server = LiveServer(home, **env).start(timeout=60)
    engine = DockerEngine(docker_host, home, client=docker_client)
    try:
        assert "executor Docker engine at" in server.log()
        with server.client() as hw:
            hw.register_action(action(retry={"count": 0, "interval_seconds": 0}))
            run = hw.start_run("box", {"mode": "sleep", "seconds": "300"}, timeout_seconds=10)
            first = wait_until(lambda: containers(engine, "run"), 60, 0.1, "the run's container")[0].id
        # When the gateway is SIGKILLed, its container lives on
        server.kill()
        assert [c.id for c in containers(engine, "run")] == [first]
        # Then a restarted gateway removes it at start-up
        server = LiveServer(home, **env).start(timeout=60)
        assert first not in [c.id for c in containers(engine, "run")]
        # and the run, re-claimed after its lease, ends terminal with nothing left behind
        with server.client() as hw:
            final = hw.wait(run["id"], timeout=120)
        assert final["status"] == "FAILED"
        assert final["attempt"] == 2
        wait_until(lambda: not containers(engine, "run"), 30, 0.1, "no container of the run")
    finally:
        server.kill()
        for container in containers(engine):
            container.remove(force=True)


def test_serve_picks_containers_for_actions_with_an_image(
    tmp_path: Path, docker_host: str, base_image: str, rie_path: str, docker_client: Any
) -> None:
    # Given a gateway started with the default executor choice and an engine that answers
    server = LiveServer(
        tmp_path / "auto", HATCHWAY_EXECUTOR="auto", DOCKER_HOST=docker_host, HATCHWAY_LAMBDA_RIE=rie_path
    ).start(timeout=60)
    try:
        # Then it says so at start-up
        assert "executor auto (Docker engine at" in server.log()
        assert "lambda-local (sync), docker (runs) for actions with an image" in server.log()
        with server.client() as hw:
            hw.register_action(action())
            host_action = {
                "name": "host",
                "sync_actions": ["go"],
                "container_parameters": {"entry_point": ["python3", "-c"],
                                         "command": ["import os, json; print(json.dumps(os.getuid()))"]},
            }  # fmt: skip
            hw.register_action(host_action)
            # an action with an image runs in a container, one without on the host (as the gateway's
            # user, or - under a root gateway - as a uid of its own from HATCHWAY_SANDBOX_UIDS)
            assert hw.call_sync("box", "go", {})["ret"]["uid"] == 65534
            host_uid = hw.call_sync("host", "go", {})["ret"]
            assert host_uid == os.getuid() or (os.getuid() == 0 and 2_000_000_000 <= host_uid <= 2_000_000_999)
        engine = DockerEngine(docker_host, tmp_path / "auto", client=docker_client)
        assert containers(engine, "lambda")
        # When the gateway stops gracefully, its warm containers go with it
        server.stop()
        wait_until(lambda: not containers(engine), 30, 0.1, "the warm containers to be removed")
    finally:
        server.kill()


def test_building_the_base_image_again_is_a_no_op(docker_client: Any, base_image: str) -> None:
    from hatchway.executors.containers.images import build_base

    # Given the base image built once (by the session's fixture)
    before = docker_client.images.get(base_image).id
    # When it is built again, twice
    for _ in range(2):
        said: list[str] = []
        assert build_base(docker_client, "3.11", log=said.append) == base_image
        # Then nothing is rebuilt: the same image, "up to date"
        assert said[-1] == f"{base_image} is up to date", said
        assert not [line for line in said if line.startswith("building")]
        assert docker_client.images.get(base_image).id == before


def test_a_pipelines_container_step_runs_in_a_real_container(hw_for: Any, base_image: str) -> None:
    # Given a pipeline whose Run Docker container step uses an image the engine has (no registry here)
    hw, _ = hw_for("docker")
    name, tag = base_image.rsplit(":", 1)
    secret = "correct-horse-battery"
    hw.put_pipeline(
        "boxed",
        {
            "variables": [{"key": "TOKEN", "value": secret, "encrypted": True}],
            "steps": [
                {
                    "name": "shell",
                    "docker_image_name": name,
                    "docker_image_tag": tag,
                    "shell": "BASH",
                    "working_directory": "/work",
                    "variables": [{"key": "WHO", "value": "ada"}],
                    "execute_commands": [
                        'echo "hello $WHO in $PWD"',
                        'echo "token=$TOKEN"',
                        'test -f /.dockerenv && echo "in a container"',
                        'printf \'{"who": "%s"}\' "$WHO" > "$HATCHWAY_DATA_DIR/out/result.json"',
                    ],
                }
            ],
        },
    )
    # When it is executed
    started = hw.start_execution("boxed")
    final = hw.wait_execution("boxed", started["id"], timeout=120)
    # Then the step ran in a container of that image, with its variables and its secret hidden
    assert final["status"] == "SUCCESSFUL", final
    run = hw.get_run(final["steps"][0]["run_id"])
    lines = [e["msg"] for e in hw.logs(run["id"])["items"] if e["k"] == "stdout"]
    assert lines == ["hello ada in /work", "token=[hidden]", "in a container"], lines
    assert run["ret"] == {"who": "ada"}
    assert secret not in json.dumps(as_json(run))


class EngineRelay:
    """A Docker socket of the test's own that relays to the real engine while it is up. Down, it
    refuses connections and cuts the open ones: to the gateway the engine is gone, as when its
    daemon restarts."""

    def __init__(self, target: str, folder: Path) -> None:
        self.target = target.removeprefix("unix://")
        self.path = folder / "docker.sock"
        self.url = f"unix://{self.path}"
        self._open: list[Any] = []
        self._lock = threading.Lock()
        self._listener: Any = None

    def up(self) -> None:
        import socket

        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        import contextlib
        import socket

        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.path.unlink(missing_ok=True)
        with self._lock:
            opened, self._open = self._open, []
        for sock in opened:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: Any) -> None:
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            try:
                engine.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, engine]
            for source, sink in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: Any, sink: Any) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay(docker_host: str, tmp_path: Path) -> Iterator[EngineRelay]:
    folder = tmp_path / "relay"
    folder.mkdir()
    made = EngineRelay(docker_host, folder)
    made.up()
    yield made
    made.down()


def test_platform_failures_are_retried_and_answered_as_such(
    relay: EngineRelay, tmp_path: Path, base_image: str, rie_path: str
) -> None:
    # Given a gateway on an engine that goes away for a while (platform retries 1 s, 2 s, 4 s apart)
    settings = container_settings(tmp_path / "home", "docker", relay.url, rie_path, platform_retry_seconds=1)
    services = build_services(settings, pool=True)
    bootstrap(services)
    pool = WorkerPool(services, size=2)
    pool.start()
    hw = inprocess_client(services)
    try:
        hw.register_action(action(compute_requirements=SMALL))
        relay.down()
        # When a sync call comes while the engine is down
        with pytest.raises(UnavailableResponse) as down:
            hw.call_sync("box", "go", {})
        # Then it is a 503 that says so and when to try again, and names no host path
        assert down.value.message.startswith("the Docker engine does not answer; nothing was started")
        assert down.value.retry_after == 1 and str(tmp_path) not in json.dumps(down.value.body)
        # When a run (no retries of its own) is submitted while the engine is down
        run = hw.start_run("box", {"who": "patient"})
        assert run["max_attempts"] == 1

        def lost() -> int:
            stored = services.repos.runs.get_run(run["id"])
            return stored.lost_attempts if stored is not None else 0

        wait_until(lambda: lost() >= 1, 30, 0.05, "the first attempt to fail on the engine")
        relay.up()
        # Then it is retried once the engine is back, and succeeds
        final = hw.wait(run["id"], timeout=60)
        assert final["status"] == "SUCCESSFUL", final
        assert final["attempt"] >= 2 and final["ret"]["who"] == "patient"
        messages = [e["msg"] for e in hw.logs(run["id"])["items"]]
        assert any(m.startswith(f"attempt {final['attempt']} of") for m in messages), messages
        # while the action's own user error is never retried
        failed = hw.wait(hw.start_run("box", {"mode": "user"}, retries=2)["id"], timeout=60)
        assert (failed["status"], failed["attempt"], failed["error"]["kind"]) == ("FAILED", 1, "user")
        # An image that cannot be pulled (no registry answers there) is a 503 too, and says which image
        unpullable = action("pulled", image_uri="127.0.0.1:1/hatchway/nope:1")
        del unpullable["docker_config"]
        hw.register_action(unpullable)
        with pytest.raises(UnavailableResponse) as pull:
            hw.call_sync("pulled", "go", {})
        assert "the image 127.0.0.1:1/hatchway/nope:1 could not be pulled" in pull.value.message
    finally:
        hw.close()
        pool.stop(grace_seconds=2)
        services.close()


def test_serve_auto_without_the_docker_package_runs_host_processes(tmp_path: Path, docker_host: str) -> None:
    from tests.functional.test_serve_executors import without_docker_package

    # Given an engine that answers but no docker package (a plain `pip install hatchway`)
    server = LiveServer(
        tmp_path / "auto", HATCHWAY_EXECUTOR="auto", DOCKER_HOST=docker_host,
        PYTHONPATH=without_docker_package(tmp_path),
    ).start(timeout=60)  # fmt: skip
    try:
        # Then serve starts on host processes and says why, once
        log = server.log()
        assert "executor auto (a Docker engine answers but the docker package is missing)" in log
        assert log.count("the docker package is missing: actions run as host processes") == 1
        assert "Traceback" not in log
        with server.client() as hw:
            hw.register_action(
                {
                    "name": "host",
                    "sync_actions": ["go"],
                    "container_parameters": {"entry_point": ["python3", "-c"], "command": ["print(42)"]},
                }
            )
            assert hw.call_sync("host", "go", {})["ret"] == 42
    finally:
        server.kill()
