"""Host actions are contained: resource limits, cgroups, a uid per attempt, Landlock, bubblewrap, a scrubbed
environment. (tests/security runs the whole attack against a real `hatchway serve` at each level.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.client import Client
from hatchway.domain.attempts import Invocation
from hatchway.domain.runs import Mode
from hatchway.domain.spec import parse_spec
from hatchway.executors.process import ProcessExecutor
from hatchway.executors.sandbox import Cgroups, Sandbox, bwrap_works
from hatchway.executors.uids import UidPool
from hatchway.runtime import confine
from hatchway.runtime.contract import OutputCollector
from hatchway.wiring import bootstrap, build_services
from hatchway.worker import WorkerPool
from tests.conftest import inprocess_client, make_settings
from tests.helpers import describe_processes, processes_with, wait_until

pytestmark = pytest.mark.integration
HAS_CGROUPS = Cgroups.detect("hatchway-test-probe") is not None
IS_ROOT = os.geteuid() == 0


def python_action(name: str, code: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "parameters": [{"name": "target"}],
        "sync_actions": ["check"],
        "container_parameters": {"entry_point": [sys.executable, "-c"], "command": [code]},
        **fields,
    }


@pytest.fixture(
    params=[
        "limits",
        pytest.param("landlock", marks=pytest.mark.skipif(confine.abi() < 1, reason="this kernel has no Landlock")),
        pytest.param("bwrap", marks=pytest.mark.skipif(not bwrap_works(), reason="no bwrap")),
    ]
)
def sandboxed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    settings = make_settings(tmp_path / "home", sandbox=request.param)
    services = build_services(settings, pool=True)
    bootstrap(services)
    pool = WorkerPool(services, size=2)
    pool.start()
    with inprocess_client(services) as hw:
        hw.sandbox = request.param  # type: ignore[attr-defined]
        yield hw
    pool.stop(2)
    services.close()


ENV_CODE = "import json,os; print(json.dumps(sorted(os.environ)))"
ALLOWED_ENV = {
    "HATCHWAY_DATA_DIR", "HATCHWAY_RUN_ID", "HATCHWAY_ACTION", "HATCHWAY_ACTION_NAME", "HATCHWAY_PROJECT_ID",
    "HATCHWAY_ENVIRONMENT", "HATCHWAY_ATTEMPT", "HATCHWAY_DEADLINE", "PATH", "HOME", "TMPDIR", "LANG",
    "PYTHONUNBUFFERED", "MY_SETTING", "KBC_DATADIR", "KBC_RUNID", "KBC_PROJECTID", "KBC_COMPONENTID", "KBC_CONFIGID",
    # where the action's uid cannot run the gateway's Python: the reachable one's path to hatchway.runtime
    "PYTHONPATH",
    "ROBOTO_INVOCATION_ID", "ROBOTO_ORG_ID", "ROBOTO_DATASET_ID", "ROBOTO_INPUT_DIR", "ROBOTO_OUTPUT_DIR",
    "ROBOTO_ACTION_PARAMETERS_FILE", "ROBOTO_ACTION_TIMEOUT", "ROBOTO_API_KEY", "ROBOTO_SERVICE_ENDPOINT",
}  # fmt: skip


def test_the_environment_is_scrubbed(sandboxed: Client) -> None:
    sandboxed.register_action(python_action("env", ENV_CODE, container_parameters={
        "entry_point": [sys.executable, "-c"], "command": [ENV_CODE], "env_vars": {"MY_SETTING": "1"}}))  # fmt: skip
    names = set(sandboxed.call_sync("env", "check")["ret"])
    assert "MY_SETTING" in names and names <= ALLOWED_ENV | {"PWD", "SHLVL", "_", "LC_CTYPE"}, names - ALLOWED_ENV


@pytest.mark.skipif(not HAS_CGROUPS, reason="this machine gives no writable pids cgroup")
def test_a_fork_bomb_is_contained_and_the_gateway_keeps_answering(sandboxed: Client) -> None:
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.05)\n"
    sandboxed.register_action(python_action("bomb", bomb, timeout=1))
    run = sandboxed.start_run("bomb", timeout_seconds=3)
    wait_until(lambda: sandboxed.get_run(run["id"])["status"] == "INPROGRESS", 10, what="the bomb to start")
    health = []
    while sandboxed.get_run(run["id"])["status"] == "INPROGRESS":
        health.append(sandboxed.health()["status"])
    final = sandboxed.wait(run["id"], timeout=30)
    assert final["status"] == "FAILED" and final["error"]["kind"] in ("timeout", "application")
    assert health and set(health) == {"ok"}
    # (60 s: once in CI some were still there after 15 s, cause not found; should it ever take
    # longer than 60, the message says which processes were left, as whom and in which cgroups)
    try:
        wait_until(lambda: not processes_with("os.fork()"), 60, what="every forked process to be gone")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {describe_processes(processes_with('os.fork()'))}") from None


@pytest.mark.skipif(not HAS_CGROUPS, reason="this machine gives no writable memory cgroup")
def test_a_4_gib_allocation_is_stopped_and_reported_as_out_of_memory(sandboxed: Client) -> None:
    hog = "data = bytearray(4 * 1024 ** 3)\nprint('allocated', len(data))"
    sandboxed.register_action(python_action("hog", hog, compute_requirements={"vCPU": 256, "memory": 512}))
    final = sandboxed.wait(sandboxed.start_run("hog")["id"], timeout=60)
    assert final["status"] == "FAILED"
    assert final["error"]["kind"] == "application" and final["error"]["message"] == "out of memory"
    assert sandboxed.health()["status"] == "ok"


def test_no_network_unless_the_metadata_allows_it(sandboxed: Client) -> None:
    if sandboxed.sandbox == "limits":  # type: ignore[attr-defined]
        pytest.skip("resource limits and a uid of its own leave the network open")
    if sandboxed.sandbox == "landlock" and confine.abi() < 4:  # type: ignore[attr-defined]
        pytest.skip(f"Landlock ABI {confine.abi()} does not confine TCP (4 does)")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    accepted = threading.Thread(target=lambda: [listener.accept() for _ in range(1)], daemon=True)
    accepted.start()
    probe = (
        "import json, socket, sys\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); ok = True\n"
        "except OSError:\n"
        "    ok = False\n"
        "print(json.dumps({'connected': ok}))\n"
    )
    sandboxed.register_action(python_action("offline", probe))
    sandboxed.register_action(python_action("online", probe, metadata={"network": True}))
    assert sandboxed.call_sync("offline", "check")["ret"] == {"connected": False}
    assert sandboxed.call_sync("online", "check")["ret"] == {"connected": True}
    listener.close()


def test_the_gateway_home_is_hidden(sandboxed: Client, tmp_path: Path) -> None:
    if sandboxed.sandbox == "limits" and not IS_ROOT:  # type: ignore[attr-defined]
        pytest.skip("a gateway that is not root runs actions as itself: resource limits hide nothing")
    reader = (
        "import json, os, sys\n"
        "path = json.load(open(os.environ['HATCHWAY_DATA_DIR'] + '/config.json'))['parameters']['target']\n"
        "def reads(path):\n"
        "    try:\n"
        "        open(path, 'rb').close(); return True\n"
        "    except OSError:\n"
        "        return False\n"
        "print(json.dumps({'reads': reads(path)}))\n"
    )
    sandboxed.register_action(python_action("peek", reader))
    key = tmp_path / "home" / "secret.key"
    sandboxed.encrypt("make-the-key-exist")
    assert key.exists()
    for target in (key, tmp_path / "home" / "hatchway.db"):
        assert sandboxed.call_sync("peek", "check", {"target": str(target)})["ret"] == {"reads": False}


def test_the_system_is_read_only_and_tmp_is_private(sandboxed: Client, tmp_path: Path) -> None:
    if sandboxed.sandbox == "limits" and not IS_ROOT:  # type: ignore[attr-defined]
        pytest.skip("a gateway that is not root runs actions as itself: resource limits protect nothing")
    marker = f"/tmp/hatchway-private-probe-{tmp_path.name}"
    writer = (
        "import json, os, tempfile\n"
        "def tries(path):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); return True\n"
        "    except OSError:\n"
        "        return False\n"
        "scratch = os.path.join(tempfile.gettempdir(), 'scratch')\n"
        f"print(json.dumps({{'usr': tries('/usr/hatchway-probe'), 'tmp': tries({marker!r}),\n"
        f"                  'tmp_seen': os.path.exists({marker!r}), 'tmpdir': tries(scratch)}}))\n"
    )
    sandboxed.register_action(python_action("writer", writer))
    found = sandboxed.call_sync("writer", "check")["ret"]
    # every level: the system is read-only, and the action's TMPDIR (its workspace's tmp/) is its own
    assert found["usr"] is False and found["tmpdir"] is True
    if sandboxed.sandbox == "bwrap":  # type: ignore[attr-defined]
        # bubblewrap: the action may write its own /tmp, and the host never sees it
        assert found["tmp"] is True and found["tmp_seen"] is True
    elif sandboxed.sandbox == "landlock":  # type: ignore[attr-defined]
        # Landlock: /tmp is not the action's (its TMPDIR is)
        assert found["tmp"] is False
    assert not Path(marker).exists() or sandboxed.sandbox == "limits"  # type: ignore[attr-defined]
    Path(marker).unlink(missing_ok=True)
    assert not Path("/usr/hatchway-probe").exists()


@pytest.mark.skipif(not IS_ROOT, reason="actions run under a uid of their own only under a root gateway")
def test_a_process_left_behind_dies_before_its_uid_serves_another_attempt(tmp_path: Path) -> None:
    # Given a root gateway without cgroups (nothing but the uid ties a process to its attempt) and
    # a single uid for actions, so that every attempt runs as the same one
    uid = 2_000_001_500
    home = tmp_path / "home"
    sandbox = Sandbox("limits", home, None, work_dir=tmp_path / "work", uids=UidPool(uid, uid))
    executor = ProcessExecutor(tmp_path / "work", 1.0, sandbox, home / "journal")
    marker = f"{uid % 997}.{os.getpid()}"
    drop = tmp_path / "drop"  # where the escaped process says who it is (writable by every user)
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    escape = (
        f"id -u; setsid sh -c 'echo $$ > {drop}/pid.new && mv {drop}/pid.new {drop}/pid; exec sleep {marker}' "
        f"</dev/null >/dev/null 2>&1 & while [ ! -s {drop}/pid ]; do sleep 0.01; done; echo '{{}}'"
    )
    spec = parse_spec({"name": "escape", "container_parameters": {"entry_point": ["/bin/sh", "-c", escape]}})

    def attempt(number: int) -> list[str]:
        invocation = Invocation("run_x", "proj_local", "development", "escape", 1, "sha256:x", "check", Mode.SYNC,
                                spec, {}, number, time.time() + 20)  # fmt: skip
        collector = OutputCollector(Mode.SYNC)
        assert executor.execute(invocation, collector, threading.Event()).exit_code == 0
        return collector.stdout.decode().split()

    try:
        # When an attempt leaves a process behind in a session of its own and ends
        assert attempt(1)[0] == str(uid)
        pid = int((drop / "pid").read_text())
        # Then that process is killed as its uid is given back, before the next attempt takes the uid
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 10, what="the escaped process to be killed")
        (drop / "pid").unlink()
        assert attempt(2)[0] == str(uid)
    finally:
        executor.close()
        for pid in processes_with(marker):
            os.kill(pid, 9)


@pytest.mark.skipif(not IS_ROOT, reason="actions run under a uid of their own only under a root gateway")
def test_a_uid_given_back_twice_is_not_swept_from_under_its_next_holder(tmp_path: Path) -> None:
    # Given two gateways on one host sharing one uid, the first holding it and giving it back
    uid = 2_000_001_501
    first, second = UidPool(uid, uid), UidPool(uid, uid)
    assert first.take() == uid
    first.give(uid, is_clean=True)
    # When the second takes it and an attempt of its own runs as it
    assert second.take() == uid
    proc = confine.start_confined(lambda: subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL), uid=uid, gid=uid)
    try:
        # and the first gateway gives the uid back once more (a late clean-up after its close)
        first.give(uid, is_clean=False)
        # Then the second holder's process still runs: only a uid still held is ever swept
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=10)
        second.give(uid, is_clean=True)
        first.close()
        second.close()
