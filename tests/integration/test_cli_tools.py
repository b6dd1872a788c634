"""The command line as gh users expect it, against a real ``hatchway serve``: server text printed as
sent, whole ids, ``-o``, ``--version``, completion, ``login``, ``run --follow``, ``--params-file``,
``logs --tail/--since``, a confirmed ``actions delete``, and one error line for a taken port."""

from __future__ import annotations

import json
import os
import pty
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAST
from tests.helpers import ADMIN_TOKEN, LiveServer, child_env

pytestmark = pytest.mark.integration
LOUD = "bad input '[hidden]' at [id] [/end] [bold]x[/bold]"


def hatchway(
    server: LiveServer, *args: str, token: str | None = ADMIN_TOKEN, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``hatchway ARGS`` as a new process, piped (not a terminal), at 80 columns."""
    base = child_env(server.home, COLUMNS="80", XDG_CONFIG_HOME=str(server.home / "config"))
    base.update({"HATCHWAY_URL": server.url, **({"HATCHWAY_TOKEN": token} if token else {}), **env})
    return subprocess.run(
        [sys.executable, "-m", "hatchway", *args], env=base, capture_output=True, text=True, timeout=120,
        input=stdin if stdin is not None else "",
    )  # fmt: skip


def register(server: LiveServer, tmp_path: Path, spec: dict[str, object]) -> None:
    path = tmp_path / f"{spec['name']}.json"
    path.write_text(json.dumps(spec))
    done = hatchway(server, "actions", "create", "-f", str(path))
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("cli-tools"), "--examples", **FAST).start()
    yield live
    live.kill()


def test_server_text_with_brackets_is_printed_as_sent(server: LiveServer, tmp_path: Path) -> None:
    # Given an action whose sync call fails (500) and whose run fails with a message full of brackets
    script = f'echo "{LOUD}" >&2; [ "$HATCHWAY_ACTION" = run ] && exit 1; exit 3'
    register(server, tmp_path, {"name": "loud", "sync_actions": ["check"], "parameters": [{"name": "#secret"}],
                                "container_parameters": {"entry_point": ["sh", "-c", script]}})  # fmt: skip
    # When the sync call fails: one error line that keeps its [run …] and [exceptionId …]
    called = hatchway(server, "sync", "loud", "check")
    assert called.returncode == 1 and "Traceback" not in called.stderr
    [line] = called.stderr.splitlines()
    assert line.startswith("error: 500 Application error: ") and "[run run_" in line and "[exceptionId exc_" in line
    # And a run that fails shows the message as the action wrote it
    ran = hatchway(server, "run", "loud", "-p", "#secret=x", "--wait")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert LOUD in ran.stdout
    # And a table and a record show '[hidden]' as sent
    run_id = ran.stdout.split()[0]
    assert '"#secret": "[hidden]"' in hatchway(server, "runs", "get", run_id).stdout
    assert "[hidden]" in hatchway(server, "runs", "get", run_id, "-o", "table").stdout


def test_ids_are_never_cut_at_80_columns(server: LiveServer) -> None:
    run_ids = [hatchway(server, "run", "check-magnetometer-norm").stdout.strip() for _ in range(2)]
    listed = hatchway(server, "runs", "list", "--limit", "5")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:4] == ["ID", "ACTION", "INVOKED", "STATUS"]
    assert all(run_id in listed.stdout for run_id in run_ids) and "…" not in listed.stdout


def test_every_format_prints_the_same_record(server: LiveServer) -> None:
    as_json = json.loads(hatchway(server, "actions", "get", "db-extractor", "-o", "json").stdout)
    assert json.loads(hatchway(server, "actions", "get", "db-extractor", "--json").stdout) == as_json
    assert yaml.safe_load(hatchway(server, "actions", "get", "db-extractor", "-o", "yaml").stdout) == as_json
    table = hatchway(server, "actions", "get", "db-extractor", "-o", "table").stdout
    assert table.splitlines()[0].split() == ["FIELD", "VALUE"] and as_json["digest"] in table
    listed = yaml.safe_load(hatchway(server, "actions", "list", "-o", "yaml").stdout)
    assert {item["name"] for item in listed} == {
        "check-magnetometer-norm",
        "db-extractor",
        *(item["name"] for item in listed if item["name"] not in ("check-magnetometer-norm", "db-extractor")),
    }
    refused = hatchway(server, "runs", "list", "-o", "xml")
    assert refused.returncode == 2 and "'xml' is not one of table, json, yaml" in refused.stderr


def test_projects_list_shows_what_the_token_sees(server: LiveServer) -> None:
    made = json.loads(hatchway(server, "projects", "create", "cli listed", "-o", "json").stdout)["id"]
    table = hatchway(server, "projects", "list")
    assert table.returncode == 0, table.stderr
    assert made in table.stdout and "proj_local" in table.stdout and "cli listed" in table.stdout
    listed = json.loads(hatchway(server, "projects", "list", "-o", "json").stdout)
    assert {"proj_local", made} <= {p["id"] for p in listed}
    # a project token sees its own project only
    token = json.loads(
        hatchway(server, "tokens", "create", "-s", "runs:read", "-o", "json", HATCHWAY_PROJECT=made).stdout
    )["token"]
    own = json.loads(hatchway(server, "projects", "list", "-o", "json", token=token).stdout)
    assert [p["id"] for p in own] == [made]


def test_version(server: LiveServer) -> None:
    from hatchway import __version__

    done = hatchway(server, "--version")
    assert done.returncode == 0 and done.stdout == f"hatchway {__version__}\n"


def test_bash_completes_commands_and_options(server: LiveServer) -> None:
    script = hatchway(server, "completion", "bash").stdout
    probe = (
        f'{script}\nhatchway() {{ {sys.executable} -m hatchway "$@"; }}\n'
        'COMP_WORDS=(hatchway runs lo); COMP_CWORD=2; _hatchway_complete; echo "${COMPREPLY[*]}"\n'
        "COMP_WORDS=(hatchway runs list -o ''); COMP_CWORD=4; _hatchway_complete; echo \"${COMPREPLY[*]}\"\n"
    )
    env = child_env(server.home)
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.splitlines() == ["logs", "table json yaml"], done.stderr
    assert "compdef _hatchway hatchway" in hatchway(server, "completion", "zsh").stdout


def test_zsh_completes_commands_and_options(server: LiveServer) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    script = hatchway(server, "completion", "zsh").stdout
    probe = (
        "autoload -U compinit && compinit -u\n"
        f'{script}\nhatchway() {{ {sys.executable} -m hatchway "$@"; }}\n'
        # compadd only works inside a completion widget: this one prints what it is given
        'compadd() { shift $(( $# - 1 )); print -l -- "${(@P)1}"; }\n'
        "words=(hatchway runs lo); CURRENT=3; _hatchway\n"
        "words=(hatchway runs list -o ''); CURRENT=5; _hatchway\n"
    )
    done = subprocess.run(["zsh", "-c", probe], capture_output=True, text=True, timeout=60, env=child_env(server.home))
    assert done.stdout.splitlines() == ["logs", "table", "json", "yaml"], done.stderr


def test_login_stores_a_private_token_used_when_nothing_else_names_one(server: LiveServer) -> None:
    config = server.home / "config" / "hatchway" / "config.json"
    # A token the gateway does not know is refused, and nothing is stored
    refused = hatchway(server, "login", "--with-token", token=None, stdin="hwadmin_wrong\n")
    assert refused.returncode == 1 and "401 Unauthorized" in refused.stderr and not config.exists()
    # Given a login with the right token, read from stdin
    done = hatchway(server, "login", "--with-token", token=None, stdin=f"{ADMIN_TOKEN}\n")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and ADMIN_TOKEN in config.read_text()
    # When a command runs with neither --token nor HATCHWAY_TOKEN (nor the home's token file)
    no_home = {"HATCHWAY_HOME": str(server.home / "elsewhere")}
    listed = hatchway(server, "actions", "list", "-o", "json", token=None, **no_home)
    # Then the profile's token authenticates it, and without a URL the profile's URL is used
    assert listed.returncode == 0, listed.stderr
    env = child_env(server.home / "elsewhere", XDG_CONFIG_HOME=str(server.home / "config"))
    bare = subprocess.run([sys.executable, "-m", "hatchway", "runs", "list"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert bare.returncode == 0, bare.stderr
    # And a token given in the environment still wins over the profile
    wrong = hatchway(server, "actions", "list", token="hwadmin_wrong", **no_home)
    assert wrong.returncode == 1 and "401" in wrong.stderr
    # After logout the profile has nothing for this gateway
    assert hatchway(server, "logout").returncode == 0
    assert hatchway(server, "actions", "list", token=None, **no_home).returncode == 1
    assert hatchway(server, "logout").returncode == 1


def test_run_follow_streams_the_log_and_exits_with_the_outcome(server: LiveServer, tmp_path: Path) -> None:
    # Given an action that prints three lines, then fails unless its parameter code is "ok"
    script = (
        "for i in 1 2 3; do echo line-$i; done; "
        'grep -q \'"code": *"ok"\' "$HATCHWAY_DATA_DIR/config.json" || { echo broke >&2; exit 1; }'
    )
    spec = {
        "name": "talker",
        "parameters": [{"name": "code"}],
        "container_parameters": {"entry_point": ["sh", "-c", script]},
    }
    register(server, tmp_path, spec)
    good = hatchway(server, "run", "talker", "-p", "code=ok", "--follow")
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    assert [line.split()[-1] for line in lines if "line-" in line] == ["line-1", "line-2", "line-3"]
    assert lines[-1].split()[1:3] == ["SUCCESSFUL", "in"]  # the summary, after the log
    bad = hatchway(server, "run", "talker", "-p", "code=no", "--wait", "--follow")
    assert bad.returncode == 1 and "broke" in bad.stdout and "FAILED" in bad.stdout
    assert hatchway(server, "run", "talker", "-p", "code=no", "--exit-status").returncode == 1
    # runs logs --follow --exit-status reports the run's outcome too
    run_id = next(line.split()[0] for line in bad.stdout.splitlines() if "FAILED" in line)
    followed = hatchway(server, "runs", "logs", run_id, "--follow", "--exit-status")
    assert followed.returncode == 1 and "line-3" in followed.stdout


def test_params_file_gives_typed_values_and_p_wins(server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("max_norm: 50\nmin_norm: 10.5\n")
    done = hatchway(server, "run", "check-magnetometer-norm", "--params-file", str(tmp_path / "params.yaml"),
                    "-p", "max_norm=51", "--wait", "-o", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    parameters = json.loads(done.stdout)["parameters"]
    assert (parameters["max_norm"], parameters["min_norm"]) == ("51", "10.5")
    (tmp_path / "nested.json").write_text(json.dumps({"max_norm": {"deep": 1}}))
    bad = hatchway(server, "run", "check-magnetometer-norm", "--params-file", str(tmp_path / "nested.json"))
    assert bad.returncode == 1 and "must be a string, a number or a boolean" in bad.stderr


def test_logs_tail_and_since(server: LiveServer, tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5; do echo line-$i; done"
    register(server, tmp_path, {"name": "counter", "container_parameters": {"entry_point": ["sh", "-c", script]}})
    done = hatchway(server, "run", "counter", "--wait", "-o", "json")
    run_id = json.loads(done.stdout)["id"]
    every = hatchway(server, "runs", "logs", run_id).stdout.splitlines()
    assert [line.split()[-1] for line in every if "line-" in line] == [f"line-{i}" for i in range(1, 6)]
    assert hatchway(server, "runs", "logs", run_id, "--tail", "2").stdout.splitlines() == every[-2:]
    assert hatchway(server, "runs", "logs", run_id, "--since", "1h").stdout.splitlines() == every
    assert hatchway(server, "runs", "logs", run_id, "--since", "0s").stdout == ""
    entries = [json.loads(line) for line in hatchway(server, "runs", "logs", run_id, "-o", "json").stdout.splitlines()]
    assert [entry["msg"] for entry in entries][-1] in every[-1]


def test_actions_delete_asks_first(server: LiveServer, tmp_path: Path) -> None:
    register(server, tmp_path, {"name": "doomed", "container_parameters": {"entry_point": ["true"]}})
    refused = hatchway(server, "actions", "delete", "doomed")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert hatchway(server, "actions", "get", "doomed").returncode == 0
    # On a terminal it asks, and only the action's name confirms
    assert typed_at_a_terminal(server, "no\n", "actions", "delete", "doomed").returncode == 1
    assert hatchway(server, "actions", "get", "doomed").returncode == 0
    confirmed = typed_at_a_terminal(server, "doomed\n", "actions", "delete", "doomed")
    assert confirmed.returncode == 0 and "Type its name to confirm" in confirmed.stderr
    assert "404" in hatchway(server, "actions", "get", "doomed").stderr
    register(server, tmp_path, {"name": "doomed", "container_parameters": {"entry_point": ["true"]}})
    assert hatchway(server, "actions", "delete", "doomed", "--yes").returncode == 0
    assert "404" in hatchway(server, "actions", "get", "doomed").stderr


def typed_at_a_terminal(server: LiveServer, typed: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``hatchway ARGS`` with a terminal for stdin, on which ``typed`` is typed."""
    main, terminal = pty.openpty()
    env = child_env(server.home, HATCHWAY_URL=server.url, HATCHWAY_TOKEN=ADMIN_TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hatchway", *args], stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, text=True,
    )  # fmt: skip
    os.close(terminal)
    try:
        os.write(main, typed.encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(main)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_taken_port_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "hatchway", "serve", "--port", str(port)], env=child_env(tmp_path),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr
        == f"error: port {port} on 127.0.0.1 is already in use (another `hatchway serve`?); choose one with --port\n"
    )
