"""The `hatchway` command line against a real server with the examples loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ADMIN_TOKEN, REPO, LiveServer, child_env

pytestmark = pytest.mark.integration
SAMPLE_DB = str(REPO / "examples" / "db-extractor" / "sample.db")


def cli(
    server: LiveServer, *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = child_env(server.home, HATCHWAY_URL=server.url, HATCHWAY_TOKEN=ADMIN_TOKEN, COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-m", "hatchway", *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    if check and done.returncode != 0:
        raise AssertionError(f"hatchway {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def test_help_is_quick_to_reach() -> None:
    done = subprocess.run([sys.executable, "-m", "hatchway", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "serve" in done.stdout and "actions" in done.stdout


def test_examples_through_the_cli(live_server: LiveServer) -> None:
    listed = cli(live_server, "actions", "list", "--json")
    assert {a["name"] for a in json.loads(listed.stdout)} == {"check-magnetometer-norm", "db-extractor"}

    ok = cli(live_server, "sync", "db-extractor", "test-connection", "-p", f"database={SAMPLE_DB}")
    assert json.loads(ok.stdout) == {"status": "success", "tables": 2}
    tables = json.loads(cli(live_server, "sync", "db-extractor", "list-tables", "-p", f"database={SAMPLE_DB}").stdout)
    assert [t["name"] for t in tables] == ["customers", "orders"]

    missing = cli(live_server, "sync", "db-extractor", "test-connection", "-p", "database=/nope.db", check=False)
    assert missing.returncode == 1 and "400 User error" in missing.stderr and "does not exist" in missing.stderr

    run = cli(live_server, "run", "check-magnetometer-norm", "--wait", "--json")
    final = json.loads(run.stdout)
    assert final["status"] == "SUCCESSFUL"
    assert final["ret"]["flagged"] == ["flight-002", "flight-003"]
    assert final["exports"] == {"flights_checked": 3, "flights_flagged": 2}

    narrow = json.loads(
        cli(live_server, "run", "check-magnetometer-norm", "-p", "max_norm=50", "--wait", "--json").stdout
    )
    assert narrow["ret"]["flagged"] == ["flight-001", "flight-002", "flight-003"]

    bad = cli(live_server, "run", "check-magnetometer-norm", "-p", "min_norm=70", "--wait", check=False)
    assert bad.returncode == 1 and "must be below max_norm" in bad.stdout

    extract = cli(
        live_server,
        "run",
        "db-extractor",
        "-p",
        f"database={SAMPLE_DB}",
        "-p",
        "#password=hunter2-x",
        "--wait",
        "--json",
    )
    extracted = json.loads(extract.stdout)
    assert extracted["exports"] == {"tables_extracted": 2, "rows_extracted": 29}
    assert extracted["parameters"]["#password"] == "[hidden]"

    run_id = extracted["id"]
    logs = cli(live_server, "runs", "logs", run_id)
    assert "extracted customers: 4 rows" in logs.stdout
    followed = cli(live_server, "runs", "logs", run_id, "--follow")
    assert "extracted orders: 25 rows" in followed.stdout
    assert run_id in cli(live_server, "runs", "list", "--action", "db-extractor").stdout
    assert json.loads(cli(live_server, "runs", "get", run_id).stdout)["id"] == run_id
    assert "SUCCESSFUL" in cli(live_server, "runs", "wait", run_id).stdout
    versions = cli(live_server, "actions", "versions", "db-extractor")
    assert versions.stdout.split()[0] == "1"


def test_cancel_through_the_cli(live_server: LiveServer, tmp_path: Path) -> None:
    spec = {
        "name": "sleeper",
        "container_parameters": {"entry_point": ["sleep"], "command": ["60"]},
    }
    (tmp_path / "action.json").write_text(json.dumps(spec))
    cli(live_server, "actions", "create", "--from-file", str(tmp_path / "action.json"))
    run_id = cli(live_server, "run", "sleeper").stdout.strip()
    cancelled = cli(live_server, "runs", "cancel", run_id)
    assert run_id in cancelled.stdout
    done = cli(live_server, "runs", "wait", run_id, check=False)
    assert done.returncode == 1 and "TERMINATED" in done.stdout


def test_init_scaffolds_an_action_that_runs(live_server: LiveServer, tmp_path: Path) -> None:
    made = cli(live_server, "init", "hello-world", cwd=tmp_path)
    project = tmp_path / "hello-world"
    assert {p.name for p in project.iterdir()} == {"action.json", "main.py", "Dockerfile", "test_main.py"}
    # the scaffold's timeout says its unit (JSON has no comments: init's output and main.py say it)
    assert json.loads((project / "action.json").read_text())["timeout"] == 10
    assert "timeout is in minutes" in made.stdout and "`hatchway run --timeout` is in seconds" in made.stdout
    assert '"timeout" is in minutes' in (project / "main.py").read_text()
    created = cli(live_server, "actions", "create", "--from-file", str(project / "action.json"))
    assert "hello-world version 1" in created.stdout
    final = json.loads(
        cli(live_server, "run", "hello-world", "-p", "greeting=hi", "-p", "times=3", "--wait", "--json").stdout
    )
    assert final["ret"] == {"greeting": "hi", "times": 3} and final["exports"] == {"printed": 3}
    assert json.loads(cli(live_server, "sync", "hello-world", "check", "-p", "greeting=hey").stdout) == {
        "ok": True,
        "length": 3,
    }
    again = cli(live_server, "init", "hello-world", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "not empty" in again.stderr
    # the scaffold's own tests pass as generated
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "test_main.py")],
        capture_output=True, text=True, timeout=120, cwd=project,
        env=child_env(live_server.home),
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_cli_errors_are_one_line(live_server: LiveServer, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "compute_requirements": {"vCPU": 256, "memory": 8192}}))
    bad = cli(live_server, "actions", "create", "--from-file", str(tmp_path / "bad.json"), check=False)
    assert bad.returncode == 1 and "422 Validation error" in bad.stderr and "Traceback" not in bad.stderr
    env = child_env(live_server.home, HATCHWAY_URL="http://127.0.0.1:9", HATCHWAY_TOKEN="x")
    down = subprocess.run(
        [sys.executable, "-m", "hatchway", "actions", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 1 and "cannot reach the gateway" in down.stderr


def test_secrets_projects_and_tokens_through_the_cli(live_server: LiveServer) -> None:
    ciphertext = cli(live_server, "encrypt", "s3cret-value").stdout.strip()
    assert ciphertext.startswith("hwenc:v1:")
    bound = cli(live_server, "encrypt", "s3cret-value", "--action", "db-extractor").stdout.strip()
    assert bound.startswith("hwenc:v1:") and bound != ciphertext
    project = json.loads(cli(live_server, "projects", "create", "team-a").stdout)
    assert project["id"].startswith("proj_")
    created = json.loads(
        cli(live_server, "--project", project["id"], "tokens", "create", "-s", "runs:read", "--name", "ci").stdout
    )
    assert created["token"].startswith("hw_")
    listed = json.loads(cli(live_server, "--project", project["id"], "tokens", "list").stdout)
    assert [t["id"] for t in listed] == [created["id"]]
    env = child_env(live_server.home, HATCHWAY_URL=live_server.url, HATCHWAY_TOKEN=created["token"])
    as_token = [sys.executable, "-m", "hatchway", "--project", project["id"], "runs", "list", "--json"]
    assert subprocess.run(as_token, env=env, capture_output=True, text=True, timeout=60).returncode == 0
    cli(live_server, "--project", project["id"], "tokens", "revoke", created["id"])
    refused = subprocess.run(as_token, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "401 Unauthorized" in refused.stderr


def test_without_a_bootstrap_token_the_cli_uses_the_token_file_of_the_home(tmp_path: Path) -> None:
    # Given a server started with no HATCHWAY_BOOTSTRAP_TOKEN: it writes an admin token file
    home = tmp_path / "home"
    server = LiveServer(home, "--examples", HATCHWAY_BOOTSTRAP_TOKEN="")
    server.start()
    try:
        token_file = home / "token"
        assert f"admin token in {token_file}" in server.log()
        # When the CLI runs on the same home with neither --token nor HATCHWAY_TOKEN
        env = child_env(home, HATCHWAY_URL=server.url, HATCHWAY_BOOTSTRAP_TOKEN="", COLUMNS="200")
        done = subprocess.run(
            [sys.executable, "-m", "hatchway", "actions", "get", "db-extractor"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        # Then it authenticates with the file's token and shows the action
        assert done.returncode == 0, done.stderr
        action = json.loads(done.stdout)
        assert action["name"] == "db-extractor" and action["version"] == 1
        # And a wrong token is refused, so the file is what authenticated it
        refused = subprocess.run(
            [sys.executable, "-m", "hatchway", "actions", "get", "db-extractor"],
            env={**env, "HATCHWAY_TOKEN": "hwadmin_wrong"}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert refused.returncode != 0 and "401" in refused.stderr
    finally:
        server.kill()


def test_project_and_environment_come_from_variables_or_from_options_after_the_command(live_server: LiveServer) -> None:
    def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hatchway", *args], env=env, capture_output=True, text=True, timeout=60
        )

    # Given a project and, made with HATCHWAY_PROJECT naming it, a token that may read runs only in prod
    project = json.loads(cli(live_server, "projects", "create", "team-b").stdout)["id"]
    admin = child_env(live_server.home, HATCHWAY_URL=live_server.url, HATCHWAY_TOKEN=ADMIN_TOKEN, COLUMNS="200")
    made = run({**admin, "HATCHWAY_PROJECT": project}, "tokens", "create", "-s", "runs:read", "--environment", "prod")
    token = json.loads(made.stdout)
    listed = json.loads(cli(live_server, "tokens", "list", "--project", project).stdout)
    assert [t["id"] for t in listed] == [token["id"]] and listed[0]["environments"] == ["prod"]
    # When it lists runs in prod, named by HATCHWAY_ENVIRONMENT or by --env after the command, it may
    as_token = {**admin, "HATCHWAY_TOKEN": token["token"], "HATCHWAY_PROJECT": project}
    assert run({**as_token, "HATCHWAY_ENVIRONMENT": "prod"}, "runs", "list", "--json").returncode == 0
    assert run(as_token, "runs", "list", "--json", "--env", "prod").returncode == 0
    # Then in any other environment it is refused, and the option wins over the variable
    refused = run({**as_token, "HATCHWAY_ENVIRONMENT": "prod"}, "runs", "list", "--env", "staging")
    assert refused.returncode == 1 and "403" in refused.stderr and "staging environment" in refused.stderr
