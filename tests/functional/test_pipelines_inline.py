"""Run Docker container steps: the generated action, its shell prelude, variables and secrets.

The gateway here has a stand-in for a container executor (:class:`HostShellAsContainer`): it runs
the step's argv - the real generated ``/bin/sh -c`` script, against the real ``config.json`` - as
a host process and ignores the image. Everything of hatchway's own (the derived action, the
variables blob, the prelude, secrets, redaction, the run) is real; only the image is not pulled.
A container step on a real Docker engine (the image's shell, the container's filesystem) is
``tests/integration/test_docker.py::test_a_pipelines_container_step_runs_in_a_real_container``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.client import Client, ValidationErrorResponse
from hatchway.executors.process import ProcessExecutor
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_placement, build_services
from tests.conftest import inprocess_client, make_settings
from tests.functional.stages import execute, explain, finish, put, run_of, stage, statuses, step


class HostShellAsContainer(ProcessExecutor):
    """A container executor's stand-in: the step's command runs on this host, the image is not used."""

    name = "host-shell-as-container"


@pytest.fixture
def hw(tmp_path: Path) -> Iterator[Client]:
    from hatchway.worker import WorkerPool

    settings = make_settings(tmp_path / "home")
    placement = build_placement(settings, sync=HostShellAsContainer.from_settings(settings))
    services: Services = build_services(settings, pool=True, placement=placement)
    bootstrap(services)
    pool = WorkerPool(services, size=2)
    pool.start()
    try:
        with inprocess_client(services) as client:
            client.register_action(stage())
            yield client
    finally:
        pool.stop(grace_seconds=2)
        services.close()


def container(name: str, *commands: str, **fields: Any) -> dict[str, Any]:
    # the stand-in runs on this host, which has no pipeline filesystem at /buddy/<pipeline> to start in
    return {"name": name, "docker_image_name": "alpine", "docker_image_tag": "3.20", "execute_commands": list(commands),
            "mount_filesystem_disable": True, **fields}  # fmt: skip


def test_a_container_step_sees_its_variables_as_shell_variables(hw: Client) -> None:
    secret = "correct-horse-battery"
    put(
        hw,
        "inline",
        variables=[
            {"key": "GREETING", "value": "hello 'quoted' $world"},
            {"key": "TOKEN", "value": secret, "encrypted": True},
        ],
        steps=[
            step("first", "x"),
            container(
                "shell",
                'echo "$GREETING / $WHO"',
                'echo "token=$TOKEN"',
                "pwd",
                'printf \'{"who": "%s"}\' "$WHO" > "$HATCHWAY_DATA_DIR/out/result.json"',
                working_directory="/usr",
                variables=[{"key": "WHO", "value": "${steps.first.exports.value}"}],
            ),
            container("stops-early", "echo before", "false", "echo never", ignore_errors=True),
        ],
    )
    final = finish(hw, "inline", execute(hw, "inline")["id"])
    assert final["status"] == "WARNING", explain(final)
    assert statuses(final) == {"first": "SUCCESSFUL", "shell": "SUCCESSFUL", "stops-early": "WARNING"}
    shell = run_of(hw, final, "shell")
    # the step ran as an action of its own, named after the pipeline and the step
    assert shell["action"]["name"] == "pipeline:inline/shell" and shell["action"]["version"] == 1
    lines = [e["msg"] for e in hw.logs(shell["id"])["items"] if e["k"] == "stdout"]
    assert lines == ["hello 'quoted' $world / x!", "token=[hidden]", "/usr"]
    assert shell["ret"] == {"who": "x!"}
    # variables travel as parameters (config.json), the secret ones hidden and never in the clear
    assert shell["parameters"]["WHO"] == "x!" and shell["parameters"]["GREETING"] == "hello 'quoted' $world"
    assert shell["parameters"]["#TOKEN"] == "[hidden]" and shell["parameters"]["#HATCHWAY_VARIABLES"] == "[hidden]"
    assert secret not in repr(shell)
    # set -e: the script stops at the first failing command (exit 1: a user error, not retried)
    early = run_of(hw, final, "stops-early")
    assert [e["msg"] for e in hw.logs(early["id"])["items"] if e["k"] == "stdout"] == ["before"]
    assert early["error"]["kind"] == "user"


def test_a_container_step_with_an_entrypoint_runs_it_without_a_shell(hw: Client) -> None:
    put(
        hw,
        "entry",
        steps=[
            {
                "name": "direct",
                "docker_image_name": "alpine",
                "entrypoint": "echo 'a b' c",
                "mount_filesystem_disable": True,
            }
        ],
    )
    final = finish(hw, "entry", execute(hw, "entry")["id"])
    assert final["status"] == "SUCCESSFUL", explain(final)
    run = run_of(hw, final, "direct")
    assert [e["msg"] for e in hw.logs(run["id"])["items"] if e["k"] == "stdout"] == ["a b c"]


#: Buddy's registry and test-report fields of a Run Docker container step, as its API gives them
ECHOED = {
    "registry": "registry.example.com", "insecure_registry": False, "login": "builder", "region": "eu-west-1",
    "image_location": "PRIVATE_REGISTRY", "docker_registry": "OTHER", "ignore_image_pull_failures": True,
    "cache_base_image": True, "vt_suite": "suite-1", "unit_tests_suite": "unit", "unit_tests_path": "reports/junit.xml",
    "integration": {"hash_id": "int-1"}, "main_service_name": "main", "target_stage": "build",
}  # fmt: skip


def test_buddys_fields_without_a_local_meaning_are_accepted_and_echoed(hw: Client) -> None:
    # Given a Run Docker container step as Buddy's API describes it, registry and test fields included
    put(hw, "imported", steps=[container("build", "echo built", **ECHOED)])
    # Then the step view echoes them as given, and the step still runs (they change nothing here)
    view = hw.request("GET", f"/v1/projects/{hw.project}/pipelines/imported/steps/build")
    assert {key: view[key] for key in ECHOED} == ECHOED
    final = finish(hw, "imported", execute(hw, "imported")["id"])
    assert final["status"] == "SUCCESSFUL", explain(final)
    # but a registry password is refused rather than stored, and an action step takes none of them
    with pytest.raises(ValidationErrorResponse) as refused:
        put(hw, "secretive", steps=[container("build", "echo built", password="hunter2")])
    assert refused.value.details[0]["loc"][-1] == "password"
    with pytest.raises(ValidationErrorResponse) as misplaced:
        put(hw, "misplaced", steps=[step("work", registry="registry.example.com")])
    assert misplaced.value.details[0]["loc"][-1] == "docker_image_name"


def test_what_only_the_docker_executor_does_is_refused_on_another(hw: Client) -> None:
    # Given this gateway's container steps run on an executor other than docker (the stand-in)
    for field in ({"setup_commands": ["apk add jq"]}, {"run_as_user": "daemon"}, {"volume_mappings": ["/a:/a"]},
                  {"export_container_path": "/tmp/out"}):  # fmt: skip
        # Then a field only the Docker executor carries out is refused, not ignored
        with pytest.raises(ValidationErrorResponse) as refused:
            put(hw, "elsewhere", steps=[container("box", "echo hi", mount_filesystem_disable=None, **field)])
        assert refused.value.details[0]["loc"][-1] == next(iter(field))
        assert "not the host-shell-as-container executor" in refused.value.message


def test_a_starting_gateway_removes_the_filesystems_of_ended_executions(tmp_path: Path) -> None:
    import os

    from hatchway.domain.pipelines.filesystem import execution_dir
    from hatchway.worker import WorkerPool

    # Given a gateway whose work folder holds the filesystems of an ended and of an unfinished execution
    settings = make_settings(tmp_path / "home")
    placement = build_placement(settings, sync=HostShellAsContainer.from_settings(settings))
    services: Services = build_services(settings, pool=True, placement=placement)
    bootstrap(services)
    with inprocess_client(services) as client:
        client.register_action(stage())
        put(client, "gated", steps=[step("first", "x"), {"name": "approve", "type": "WAIT_FOR_APPROVE"}])
        waiting = execute(client, "gated")["id"]
        left = {name: execution_dir(settings.work_dir, client.project, name) for name in (waiting, "pex_ended")}
    for folder in left.values():
        (folder / "sub").mkdir(parents=True)
        os.utime(folder, (1, 1))
    # When the worker pool starts
    pool = WorkerPool(services, size=1)
    pool.start()
    try:
        # Then the ended execution's is gone and the unfinished one's is kept
        assert not left["pex_ended"].exists()
        assert (left[waiting] / "sub").is_dir()
    finally:
        pool.stop(grace_seconds=2)
        services.close()
