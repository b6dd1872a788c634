"""A tenant's action never reaches the gateway: the attack, against a real ``hatchway serve``.

A tenant that may register actions and run them registers a probe - in Python and in shell - that
tries to read and write the gateway's key file, database and token, list and write its home, read
another run's workspace (its decrypted parameters) and the gateway's source, read the gateway's
environment (the bootstrap token), signal it, and open a TCP connection without
``"network": true``; and a run that leaves links to the key file where the gateway collects its
outputs. Each level of ``HATCHWAY_SANDBOX`` is held to what it promises (README, "Confinement of
host actions"); the default level of this machine to all of it, also for the Python probe as a
warm action (each call a fork of a server started confined).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import hatchway
from hatchway.client import Client, ValidationErrorResponse, as_json
from hatchway.executors.sandbox import bwrap_works
from hatchway.runtime import confine
from tests.conftest import FAST
from tests.helpers import ADMIN_TOKEN, LiveServer, child_env, wait_until
from tests.security.conftest import work_dir_of

pytestmark = pytest.mark.integration

IS_ROOT = os.geteuid() == 0
HAS_LANDLOCK = confine.abi() >= 1
SOURCE = Path(hatchway.__file__).resolve().parent / "config.py"
CANARY = "victim-parameter-d41d8cd9"

PYTHON_PROBE = r"""
import json, os, socket
params = json.load(open(os.path.join(os.environ["HATCHWAY_DATA_DIR"], "config.json")))["parameters"]
home, victim, gateway = params["home"], params["victim"], int(params["gateway_pid"])
def read(path):
    with open(path, "rb") as handle:
        handle.read(1)
def write(path):
    with open(path, "w") as handle:
        handle.write("pwned")
def others(folder):
    # (a warm call's workspace lies inside its server's directory: that entry is its own)
    own = os.path.relpath(os.environ["HATCHWAY_DATA_DIR"], folder).split(os.sep)[0]
    if not [name for name in os.listdir(folder) if name != own]:
        raise OSError("nothing but its own")
def attempt(check):
    try:
        check()
        return "reached"
    except Exception:
        return "denied"
checks = {
    "read_key": lambda: read(home + "/secret.key"),
    "read_db": lambda: read(home + "/hatchway.db"),
    "read_token": lambda: read(home + "/token"),
    "list_home": lambda: os.listdir(home),
    "write_home": lambda: write(home + "/pwned"),
    "read_victim": lambda: read(victim + "/config.json"),
    "list_victim": lambda: os.listdir(victim),
    "write_victim": lambda: write(victim + "/out/pwned"),
    "list_workspaces": lambda: others(os.path.dirname(victim)),
    "read_source": lambda: read(params["source"]),
    "read_gateway_environ": lambda: read("/proc/%d/environ" % gateway),
    "signal_gateway": lambda: os.kill(gateway, 0),
    "tcp_connect": lambda: socket.create_connection(("127.0.0.1", int(params["port"])), timeout=3).close(),
    "own_workspace": lambda: write(os.environ["HATCHWAY_DATA_DIR"] + "/out/mine"),
    "system": lambda: read("/etc/passwd"),
}
print(json.dumps({name: attempt(check) for name, check in checks.items()}))
"""
SHELL_PROBE = r"""
r() { if "$@" >/dev/null 2>&1; then echo reached; else echo denied; fi; }
printf '{"read_key":"%s","read_db":"%s","read_token":"%s","list_home":"%s","write_home":"%s",' \
  "$(r cat "$HOME_DIR/secret.key")" "$(r cat "$HOME_DIR/hatchway.db")" "$(r cat "$HOME_DIR/token")" \
  "$(r ls "$HOME_DIR")" "$(r sh -c 'echo x > "$HOME_DIR/pwned-sh"')"
printf '"read_victim":"%s","list_victim":"%s","read_source":"%s","read_gateway_environ":"%s",' \
  "$(r cat "$VICTIM/config.json")" "$(r ls "$VICTIM")" "$(r cat "$SOURCE")" "$(r cat "/proc/$GATEWAY/environ")"
printf '"own_workspace":"%s","system":"%s"}\n' \
  "$(r sh -c 'echo x > "$HATCHWAY_DATA_DIR/out/mine-sh"')" "$(r cat /etc/passwd)"
"""
#: the Python probe as a warm action (``hatchway.runtime``): each call a fork of a server that
#: imported it; says whether it ran as a fork (else the call fell back to a cold start)
WARM_PROBE = f"""
import contextlib, io, json, os
from hatchway import runtime as hw

PROBE = {PYTHON_PROBE!r}
IMPORTED_BY = os.getpid()


@hw.sync_action("check")
def check(ctx):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(PROBE, {{"__name__": "probe"}})
    return {{**json.loads(printed.getvalue()), "forked": os.getpid() != IMPORTED_BY}}


hw.main()
"""
#: leaves links to the gateway's files where the gateway collects a run's outputs
LINKER = r"""
cd "$HATCHWAY_DATA_DIR/out" && mkdir -p files &&
ln -s "$HOME_DIR/secret.key" result.json && ln -s "$HOME_DIR/token" exports.json &&
ln -s "$HOME_DIR/secret.key" files/key && ln -s "$HOME_DIR" files/home
"""
CONTROLS = {"own_workspace": "reached", "system": "reached"}
#: what no confinement level lets an action do
NEVER = ["read_key", "read_db", "read_token", "list_home", "write_home", "read_victim", "list_victim",
         "write_victim", "list_workspaces", "read_gateway_environ", "signal_gateway"]  # fmt: skip
NOTHING = {**dict.fromkeys([*NEVER, "read_source", "tcp_connect"], "denied"), **CONTROLS}


def shell(name: str, script: str, **env: str) -> dict[str, Any]:
    command = {"entry_point": ["/bin/sh", "-c"], "command": [script], "env_vars": env}
    return {
        "name": name,
        "sync_actions": ["check"],
        "parameters": [{"name": "#secret"}],
        "container_parameters": command,
    }


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on loopback that accepts connections (through its backlog)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


class Attack:
    """Everything a tenant tries against one gateway, and what came of it."""

    def __init__(self, server: LiveServer, port: int, warm: bool = False) -> None:
        self.server = server
        self.port = port
        #: also attack with the Python probe as a warm action (where actions can import hatchway.runtime)
        self.warm = warm
        self.home = str(server.home)

    def __call__(self) -> dict[str, dict[str, str]]:
        with self.server.client() as hw:
            hw.encrypt("so that the key file exists")
            victim, victim_run = self._victim(hw)
            try:
                params = {"home": self.home, "victim": victim, "source": str(SOURCE),
                          "gateway_pid": str(self.server.proc.pid), "port": str(self.port)}  # fmt: skip
                command = {"entry_point": ["python3", "-c"], "command": [PYTHON_PROBE]}
                spec = {"name": "probe", "sync_actions": ["check"], "parameters": [{"name": n} for n in params],
                        "container_parameters": command}  # fmt: skip
                hw.register_action(spec)
                found = {"python": hw.call_sync("probe", "check", params)["ret"]}
                env = {"HOME_DIR": self.home, "VICTIM": victim, "SOURCE": str(SOURCE),
                       "GATEWAY": str(self.server.proc.pid)}  # fmt: skip
                hw.register_action(shell("shell-probe", SHELL_PROBE, **env))
                found["shell"] = hw.call_sync("shell-probe", "check")["ret"]
                hw.register_action({**spec, "name": "online", "metadata": {"network": True}})
                found["online"] = hw.call_sync("online", "check", params)["ret"]
                if self.warm:
                    command = {"entry_point": ["python3", "-c"], "command": [WARM_PROBE]}
                    hw.register_action({**spec, "name": "warm-probe", "warm": True, "container_parameters": command})
                    found["warm"] = [hw.call_sync("warm-probe", "check", params)["ret"] for _ in range(2)]
                found["outputs"] = self._links(hw)
            finally:
                hw.cancel_run(victim_run)
        assert not (self.server.home / "pwned").exists() and not (self.server.home / "pwned-sh").exists()
        return found

    def _victim(self, hw: Client) -> tuple[str, str]:
        """Another tenant's run, still running, with a secret parameter in its workspace."""
        hw.register_action({**shell("victim", 'echo "$HATCHWAY_DATA_DIR"; exec sleep 60'), "sync_actions": []})
        run_id = hw.start_run("victim", {"#secret": CANARY})["id"]

        def path() -> str | None:
            lines = [e["msg"] for e in hw.logs(run_id)["items"] if e["k"] == "stdout"]
            return lines[0] if lines else None

        return wait_until(path, 30, 0.05, "the victim to print its workspace"), run_id

    def _links(self, hw: Client) -> dict[str, Any]:
        """A run that leaves links to the home where its outputs are collected: nothing of the home comes back."""
        hw.register_action({**shell("linker", LINKER, HOME_DIR=self.home), "sync_actions": []})
        run = hw.wait(hw.start_run("linker")["id"], timeout=30)
        key = (self.server.home / "secret.key").read_bytes()
        answer = json.dumps(as_json(run)) + json.dumps(as_json(hw.logs(run["id"])))
        leaked = key.decode(errors="replace")[:24] in answer or ADMIN_TOKEN in answer
        artifacts = self.server.home / "blobs" / "artifacts" / run["id"]
        return {
            "ret": run["ret"],
            "exports": run.get("exports") or None,
            "leaked": leaked,
            "artifacts": artifacts.exists(),
        }


def expect(level: dict[str, str]) -> dict[str, dict[str, str]]:
    """What the probes must find: ``level`` for the Python probe, its shell subset for the shell one."""
    shell_checks = ["read_key", "read_db", "read_token", "list_home", "write_home", "read_victim",
                    "list_victim", "read_source", "read_gateway_environ", *CONTROLS]  # fmt: skip
    return {"python": level, "shell": {name: level[name] for name in shell_checks}}


def probed(found: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {"python": found["python"], "shell": found["shell"]}


def assert_outputs_kept_home(found: dict[str, Any]) -> None:
    assert found["outputs"] == {"ret": None, "exports": None, "leaked": False, "artifacts": False}


def assert_warm_probe_reached_nothing(found: dict[str, Any]) -> None:
    """Both calls of the warm probe ran as forks of its server and reached nothing."""
    for call in found["warm"]:
        assert call.pop("forked") is True and call == NOTHING


def banner(server: LiveServer) -> list[str]:
    """The banner's two lines on the sandbox: the level, and what an action can reach."""
    lines = server.log().splitlines()
    at = next(index for index, line in enumerate(lines) if line.startswith("  sandbox   "))
    return [lines[at].strip(), lines[at + 1].strip()]


def attack(tmp_path: Path, port: int, sandbox: str, warm: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The attack against a root-started gateway at ``sandbox``: what it found, and the banner."""
    server = LiveServer(tmp_path / "home", HATCHWAY_SANDBOX=sandbox, **FAST).start()
    try:
        return Attack(server, port, warm)(), banner(server)
    finally:
        server.stop()


@pytest.mark.skipif(
    not (IS_ROOT or HAS_LANDLOCK or bwrap_works()),
    reason="nothing confines actions here (no root, no Landlock, no bubblewrap): the gateway refuses to start",
)
def test_the_default_level_keeps_every_secret_out_of_reach(tmp_path: Path, listener: int) -> None:
    # Given a gateway on this machine's default sandbox, when a tenant's actions attack it
    found, (level, reach) = attack(tmp_path, listener, "auto", warm=True)
    # Then the probes reached nothing but their own workspace and the system
    assert probed(found) == expect(NOTHING), level
    # and the same probe reaches the network when its metadata allows it (the check is real)
    assert found["online"]["tcp_connect"] == "reached"
    assert_outputs_kept_home(found)
    # and as a warm action, forked from a server that started confined, it reaches no more
    assert_warm_probe_reached_nothing(found)
    # and the banner names the level and what an action can reach
    assert level.startswith("sandbox   ") and "none" not in level
    assert "the home" in reach and "other workspaces" in reach


@pytest.mark.skipif(not HAS_LANDLOCK, reason="this kernel offers no Landlock (Linux >= 5.13)")
@pytest.mark.skipif(not IS_ROOT, reason="the gateway drops to a uid of the action's own only as root")
def test_landlock_with_a_uid_per_attempt(tmp_path: Path, listener: int) -> None:
    found, (level, _) = attack(tmp_path, listener, "landlock", warm=True)
    assert probed(found) == expect(NOTHING)
    assert_outputs_kept_home(found)
    assert_warm_probe_reached_nothing(found)
    assert level.startswith("sandbox   landlock: landlock ABI") and "a uid of its own per attempt" in level


@pytest.mark.skipif(not HAS_LANDLOCK, reason="this kernel offers no Landlock (Linux >= 5.13)")
def test_landlock_alone_confines_the_actions_of_an_unprivileged_gateway(
    unprivileged_server: Callable[..., LiveServer], listener: int
) -> None:
    # Given a gateway running as an ordinary user: its actions run as that same user
    server = unprivileged_server(HATCHWAY_SANDBOX="landlock", **FAST).start()
    found = Attack(server, listener)()
    # Then Landlock alone keeps them from its files, other workspaces and its code; from its
    # process (ptrace, /proc/<pid>/environ) and, with ABI >= 6, from signalling it
    level = dict(NOTHING)
    if confine.abi() < 6:
        level["signal_gateway"] = "reached"
    if confine.abi() < 4:
        level["tcp_connect"] = "reached"
    assert probed(found) == expect(level)
    assert_outputs_kept_home(found)
    assert "a uid of its own" not in banner(server)[0]


@pytest.mark.skipif(not IS_ROOT, reason="the gateway drops to a uid of the action's own only as root")
def test_the_uid_drop_alone_keeps_the_home_and_other_workspaces(tmp_path: Path, listener: int) -> None:
    # Given a root gateway without Landlock or bubblewrap (HATCHWAY_SANDBOX=limits)
    found, (level, _) = attack(tmp_path, listener, "limits")
    # Then file permissions alone keep the home and other runs' workspaces out of reach; what
    # every user may read (the gateway's code here) and the network stay open at this level
    assert probed(found) == expect({**NOTHING, "read_source": "reached", "tcp_connect": "reached"})
    assert_outputs_kept_home(found)
    assert "a uid of its own per attempt" in level


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not installed or cannot run here (apt install bubblewrap)")
def test_bubblewrap(tmp_path: Path, listener: int) -> None:
    found, (level, _) = attack(tmp_path, listener, "bwrap")
    assert probed(found) == expect(NOTHING)
    assert_outputs_kept_home(found)
    assert level.startswith("sandbox   bwrap: bubblewrap")


def test_without_any_confinement_the_gateway_refuses_to_start_unless_told(
    unprivileged_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    # Given an unprivileged gateway on a kernel without Landlock, and no bubblewrap on its PATH
    path = "/usr/local/bin:/usr/bin:/bin"
    if any(Path(folder, "bwrap").exists() for folder in path.split(":")):
        pytest.skip("bubblewrap is installed system-wide here: the gateway would use it")
    server = unprivileged_server(hide_landlock=True, PATH=path)
    server.home.mkdir(exist_ok=True)

    # When it starts, then it refuses, says why and what to do, and serves nothing
    argv = [*server.command, "serve", "--port", str(server.port)]
    done = subprocess.run(argv, env=child_env(server.home, **server.env), capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "HATCHWAY_SANDBOX=none" in message and "key file" in message, done.stderr
    assert not (server.home / "hatchway.db").exists() or not (server.home / "token").exists()
    # When it is told to run actions unconfined, then it starts and its banner says so
    told = unprivileged_server(hide_landlock=True, PATH=path, HATCHWAY_SANDBOX="none").start()
    level, reach = banner(told)
    assert level == "sandbox   none" and "key file and database" in reach


@pytest.mark.skipif(not IS_ROOT, reason="actions run under a uid of their own only under a root gateway")
def test_an_action_whose_code_the_action_user_cannot_read_fails_clearly(tmp_path: Path) -> None:
    # Given an action registered from a folder only root may enter
    private = tmp_path / "private-action"
    private.mkdir(mode=0o700)
    (private / "main.py").write_text("print('{}')")
    server = LiveServer(tmp_path / "home", **FAST).start()
    try:
        with server.client() as hw:
            command = {"entry_point": ["python3"], "command": ["main.py"]}
            source = {"context": str(private)}
            hw.register_action({"name": "private", "sync_actions": ["check"], "docker_config": source,
                                "container_parameters": command})  # fmt: skip
            # When it is called, or run, then the answer says what to fix, in the API's error shape,
            # naming no host path but the one the client registered
            for start in (lambda: hw.call_sync("private", "check"), lambda: hw.start_run("private")):
                with pytest.raises(ValidationErrorResponse) as caught:
                    start()
                body = caught.value.body
                assert body["status"] == "error" and body["code"] == 422, body
                assert str(private) in body["message"] and "readable by all" in body["message"]
                shown = json.dumps(body).replace(str(private), "")
                for host_path in (str(server.home), str(work_dir_of(server.home)), "/root", "/usr"):
                    assert host_path not in shown
            assert hw.list_runs()["items"] == []
            # and once the folder is readable by all, it runs
            private.chmod(0o755)
            assert hw.call_sync("private", "check")["ret"] == {}
    finally:
        server.stop()
