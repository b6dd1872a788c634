"""Confining what a thread starts: Landlock rulesets, credentials, no_new_privs; and the gateway's
safe reading of what an action left in its workspace."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hatchway.config import Settings
from hatchway.errors import ValidationFailed
from hatchway.executors.sandbox import reachable_by_others, split_around
from hatchway.runtime import confine
from hatchway.runtime.contract import Workspace

HAS_LANDLOCK = confine.abi() >= 1
needs_landlock = pytest.mark.skipif(not HAS_LANDLOCK, reason="this kernel offers no Landlock")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing a thread's uid needs root")


def run_confined(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    proc = confine.start_confined(start, **kwargs)  # type: ignore[arg-type]
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def reader(*paths: Path) -> list[str]:
    code = (
        "import json, sys\n"
        "def tries(p):\n"
        "    try:\n"
        "        open(p).read(); return 'read'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
        "print(json.dumps([tries(p) for p in sys.argv[1:]]))\n"
    )
    return [sys.executable, "-S", "-c", code, *map(str, paths)]


@needs_landlock
def test_a_confined_thread_starts_a_process_that_reaches_only_what_the_ruleset_allows(tmp_path: Path) -> None:
    # Given a ruleset that allows the interpreter and one folder, not its neighbour
    allowed, denied = tmp_path / "allowed", tmp_path / "denied"
    for folder in (allowed, denied):
        folder.mkdir()
        (folder / "file").write_text("x")
    ruleset = confine.Ruleset()
    for prefix in {sys.prefix, sys.base_prefix, "/usr", "/lib", "/lib64", "/etc"}:
        ruleset.allow(prefix, confine.READ)
    assert ruleset.allow(str(allowed), confine.READ)
    # When a process is started from a thread restricted by it
    done = run_confined(reader(allowed / "file", denied / "file"), ruleset=ruleset)
    ruleset.close()
    # Then the process reads only what was allowed, and this process (every thread) still reads both
    assert done.stdout.decode().strip() == '["read", "PermissionError"]', done.stderr
    assert (denied / "file").read_text() == "x"


@needs_landlock
def test_rights_the_kernel_does_not_know_are_dropped_and_files_get_only_file_rights(tmp_path: Path) -> None:
    old = confine.Ruleset(version=1, network=False)
    assert old.handled == (1 << 13) - 1 and not old.confines_tcp  # ABI 1: files only, TCP stays open
    old.close()
    ruleset = confine.Ruleset(network=False)
    assert ruleset.confines_tcp == (confine.abi() >= 4)
    (tmp_path / "file").write_text("x")
    assert ruleset.allow(str(tmp_path / "file"), confine.EVERYTHING)  # no EINVAL: directory rights dropped
    assert not ruleset.allow(str(tmp_path / "missing"), confine.READ)
    ruleset.close()


@needs_landlock
def test_tcp_is_refused_unless_the_network_is_allowed() -> None:
    if confine.abi() < 4:
        pytest.skip(f"Landlock ABI {confine.abi()} does not confine TCP (4 does)")
    code = (
        "import socket\n"
        "s = socket.socket()\n"
        "try:\n"
        "    s.bind(('127.0.0.1', 0)); print('bound')\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    outcomes = []
    for network in (False, True):
        ruleset = confine.Ruleset(network=network)
        for prefix in {sys.prefix, sys.base_prefix, "/usr", "/lib", "/lib64", "/etc"}:
            ruleset.allow(prefix, confine.READ)
        outcomes.append(run_confined([sys.executable, "-S", "-c", code], ruleset=ruleset).stdout.decode().strip())
        ruleset.close()
    assert outcomes == ["PermissionError", "bound"]


@needs_root
def test_the_thread_takes_the_uid_without_groups_or_capabilities_and_the_process_keeps_root() -> None:
    script = "id -u; id -g; id -G; grep -E '^(CapEff|CapPrm|NoNewPrivs):' /proc/self/status"
    done = run_confined(["/bin/sh", "-c", script], uid=2_000_000_123, gid=2_000_000_124)
    lines = done.stdout.decode().split()
    assert lines[:3] == ["2000000123", "2000000124", "2000000124"], done.stderr
    status = dict(zip(lines[3::2], lines[4::2], strict=True))
    assert status == {"CapPrm:": "0000000000000000", "CapEff:": "0000000000000000", "NoNewPrivs:": "1"}
    assert os.getuid() == 0 and os.geteuid() == 0 and os.getgroups() is not None


def test_an_error_in_the_confined_thread_reaches_the_caller() -> None:
    def start() -> subprocess.Popen[bytes]:
        raise FileNotFoundError("nothing to start")

    with pytest.raises(FileNotFoundError, match="nothing to start"):
        confine.start_confined(start)


def test_a_folder_holding_a_private_path_is_split_around_it(tmp_path: Path) -> None:
    for name in ("a", "home/secret", "home/other", "b/c"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "home" / "secret")
    private = [str(tmp_path / "home" / "secret")]
    rules = dict(split_around(str(tmp_path), confine.READ, private))
    assert sorted(rules) == sorted(str(tmp_path / n) for n in ("a", "b", "home/other"))
    assert split_around(str(tmp_path / "home" / "secret" / "x"), confine.READ, private) == []
    assert split_around(str(tmp_path / "a"), confine.READ, private) == [(str(tmp_path / "a"), confine.READ)]


def test_reachable_by_others_follows_every_folder_on_the_way(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    script = folder / "main.py"
    script.write_text("print(1)")
    script.chmod(0o644)
    assert reachable_by_others(script)
    assert not reachable_by_others(script, stat.S_IXOTH)
    folder.chmod(0o700)
    assert not reachable_by_others(script)
    assert not reachable_by_others(tmp_path / "missing")


def test_the_gateway_reads_no_link_an_action_left_in_its_workspace(tmp_path: Path) -> None:
    # Given an action's workspace whose outputs are links to a file it cannot read itself
    secret = tmp_path / "secret.json"
    secret.write_text('{"key": "the gateway\'s"}')
    workspace = Workspace(tmp_path, "ws").create({"parameters": {}})
    (workspace.out / "result.json").symlink_to(secret)
    (workspace.out / "files").mkdir()
    (workspace.out / "files" / "stolen").symlink_to(secret)
    (workspace.out / "files" / "home").symlink_to(tmp_path)
    (workspace.out / "files" / "real.txt").write_text("mine")
    (workspace.out / "files" / "deep").mkdir()
    (workspace.out / "files" / "deep" / "more.txt").write_text("also mine")
    # When the gateway reads the result and collects the files, then the links are not followed
    assert workspace.read_json("result.json") == (None, "out/result.json cannot be read")
    collected = {name: path.read_text() for name, path in workspace.files("out", "files")}
    assert collected == {"deep/more.txt": "also mine", "real.txt": "mine"}
    # nor is a folder on the way that is a link
    (workspace.out / "files").rename(workspace.out / "moved")
    (workspace.out / "files").symlink_to(tmp_path)
    assert list(workspace.files("out", "files")) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HATCHWAY_SANDBOX", "chroot"),
        ("HATCHWAY_SANDBOX_UIDS", "0-10"),
        ("HATCHWAY_SANDBOX_UIDS", "9-3"),
        ("HATCHWAY_SANDBOX_UIDS", "many"),
    ],  # fmt: skip
)
def test_sandbox_settings_that_cannot_work_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Settings.from_env({variable: value})
    assert caught.value.details[0]["loc"] == ["env", variable]


def test_workspaces_live_outside_the_home_unless_told(tmp_path: Path) -> None:
    settings = Settings.from_env({"HATCHWAY_HOME": str(tmp_path / "home")})
    assert not settings.work_dir.is_relative_to(settings.home)
    assert settings.work_dir == Settings.from_env({"HATCHWAY_HOME": str(tmp_path / "home")}).work_dir
    assert settings.work_dir != Settings.from_env({"HATCHWAY_HOME": str(tmp_path / "other")}).work_dir
    told = Settings.from_env({"HATCHWAY_HOME": str(tmp_path / "home"), "HATCHWAY_WORK_DIR": str(tmp_path / "w")})
    assert told.work_dir == tmp_path / "w" and told.executors.sandbox_uids == (2_000_000_000, 2_000_000_999)


def test_start_confined_returns_once_its_thread_has_left_the_kernel() -> None:
    import threading
    from pathlib import Path

    from hatchway.runtime.confine import start_confined

    # a process that asks to die with its parent (bubblewrap's --die-with-parent) is the starting
    # thread's child: that thread must be gone before the prologue lets the process run, or its exit
    # SIGKILLs it (R5 saw sync calls under bubblewrap "killed by signal 9" 0.1 s in, ~1 in 100)
    for _ in range(50):
        tid = start_confined(threading.get_native_id)
        assert not Path(f"/proc/self/task/{tid}").exists()


def test_recovery_skips_a_dead_gateways_cgroup_that_another_gateway_removed_first(tmp_path: Path) -> None:
    # Given the cgroups of a dead gateway, one already removed by another gateway starting on the
    # host (its name still listed, the directory gone: a dangling link stands for that moment)
    from hatchway.executors.sandbox import CGROUP_PREFIX, Cgroups, Sandbox

    parent = tmp_path / "pids"
    (parent / "mine").mkdir(parents=True)
    gone = parent / f"{CGROUP_PREFIX}-999999999-1"
    gone.symlink_to(tmp_path / "removed")
    dead = parent / f"{CGROUP_PREFIX}-999999998-1"
    (dead / "attempt").mkdir(parents=True)
    sandbox = Sandbox("limits", tmp_path / "home", Cgroups(1, pids=parent / "mine"))
    try:
        # When this gateway recovers, it goes on past the vanished one and removes the rest
        sandbox.recover()
    finally:
        sandbox.close()
    assert not dead.exists() and (parent / "mine").is_dir()
