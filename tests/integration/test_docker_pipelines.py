"""Buddy's Run Docker container step on a real dockerd, field by field.

Each test runs a pipeline whose container steps use hatchway's base image (Debian, no registry
needed) on the gateway's Docker executor, and reads what the steps printed: the shell, the
commands' flow (``execute_every_command``, ``loop``), the image's entrypoint, the user, the image
customised once by ``setup_commands``, the timeout, and the pipeline filesystem shared by the
steps of one execution (``working_directory``, ``volume_mappings``, ``mount_filesystem_disable``,
``export_container_path``).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.client import Client, ValidationErrorResponse
from hatchway.domain.pipelines.filesystem import execution_dir
from hatchway.domain.tenants import DEFAULT_ENVIRONMENT
from hatchway.executors.containers.engine import LABEL_RUN
from hatchway.executors.containers.setup import LABEL_SETUP_STEP, step_key
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from hatchway.worker import WorkerPool
from tests.conftest import inprocess_client, make_settings
from tests.helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.docker]


@pytest.fixture
def gateway(tmp_path: Path, docker_host: str, base_image: str) -> Iterator[tuple[Client, Services]]:
    """A gateway running containers on the real engine, with a worker pool."""
    services = build_services(make_settings(tmp_path / "home", executor="docker", docker_host=docker_host), pool=True)
    bootstrap(services)
    pool = WorkerPool(services, size=2)
    pool.start()
    client = inprocess_client(services)
    try:
        yield client, services
    finally:
        client.close()
        pool.stop(grace_seconds=2)
        services.close()


@pytest.fixture
def hw(gateway: tuple[Client, Services]) -> Client:
    return gateway[0]


@pytest.fixture
def image(base_image: str) -> dict[str, str]:
    name, tag = base_image.rsplit(":", 1)
    return {"docker_image_name": name, "docker_image_tag": tag}


def box(image: dict[str, str], name: str, *commands: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **image, "execute_commands": list(commands), **fields}


def execute(hw: Client, pipeline: str, *steps: dict[str, Any]) -> dict[str, Any]:
    hw.put_pipeline(pipeline, {"steps": list(steps)})
    started = hw.start_execution(pipeline)
    return hw.wait_execution(pipeline, started["id"], timeout=180)


def explain(hw: Client, final: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Each step's status and its run's error, for a failed assertion's message."""
    return [(s["name"], s["status"], s.get("run_id") and hw.get_run(s["run_id"]).get("error")) for s in final["steps"]]


def statuses(final: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in final["steps"]}


def run_of(hw: Client, final: dict[str, Any], step: str) -> dict[str, Any]:
    return hw.get_run(next(s["run_id"] for s in final["steps"] if s["name"] == step))


def printed(hw: Client, final: dict[str, Any], step: str, stream: str = "stdout") -> list[str]:
    run = run_of(hw, final, step)
    return [e["msg"] for e in hw.logs(run["id"])["items"] if e["k"] == stream]


# ---- the commands ---------------------------------------------------------------------------


def test_shell_picks_bash_or_sh(hw: Client, image: dict[str, str]) -> None:
    # Given the same bash-only command under BASH and under SH (Debian's sh is dash)
    command = '[[ "$0" == *bash ]] && echo "in bash"'
    inline = {"name": "inline", **image, "shell": "BASH", "inline_commands": f"cd /usr\n{command} in $PWD"}
    final = execute(hw, "shells", box(image, "bash", command, shell="BASH"),
                    box(image, "sh", command, shell="SH", ignore_errors=True), inline)  # fmt: skip
    # Then bash runs it and sh does not know [[
    assert statuses(final) == {"bash": "SUCCESSFUL", "sh": "WARNING", "inline": "SUCCESSFUL"}, explain(hw, final)
    assert printed(hw, final, "bash") == ["in bash"]
    assert any("[[: not found" in line for line in printed(hw, final, "sh", "stderr"))
    # and Buddy's inline_commands (the commands as one text) run as written when execute_commands is absent
    assert printed(hw, final, "inline") == ["in bash in /usr"]


def test_a_step_has_the_network_as_buddys_containers_do(hw: Client, image: dict[str, str]) -> None:
    # Given a step that lists its network interfaces
    final = execute(hw, "online", box(image, "interfaces", "ls /sys/class/net"))
    # Then it has the engine's network, not loopback alone (an action without "network": true has only lo)
    assert statuses(final) == {"interfaces": "SUCCESSFUL"}, explain(hw, final)
    assert "eth0" in printed(hw, final, "interfaces")


def test_execute_every_command_runs_past_a_failure(hw: Client, image: dict[str, str]) -> None:
    # Given two steps whose second command fails, one with execute_every_command
    commands = ("echo one", "cd /usr", "exit_three() { return 3; }; exit_three", "echo two in $PWD")
    final = execute(hw, "every", box(image, "stops", *commands, ignore_errors=True),
                    box(image, "every", *commands, execute_every_command=True, ignore_errors=True))  # fmt: skip
    # Then the first stops at the failure; the second runs every command in one shell (cd holds)
    assert printed(hw, final, "stops") == ["one"]
    assert printed(hw, final, "every") == ["one", "two in /usr"]
    # and fails with the status of the failed command all the same
    assert statuses(final) == {"stops": "WARNING", "every": "WARNING"}
    assert run_of(hw, final, "every")["error"]["message"].endswith("exit code 3")


def test_loop_runs_the_commands_once_per_value(hw: Client, image: dict[str, str]) -> None:
    # Given a step looping over values, one of them with a space
    final = execute(hw, "looped", box(image, "each", 'echo "value=$BUDDY_LOOP_VALUE in $PWD"', "cd /usr",
                                      loop=["first", "two words", 3]))  # fmt: skip
    # Then its commands ran once per value, each from the working directory (a cd does not leak)
    assert statuses(final) == {"each": "SUCCESSFUL"}, explain(hw, final)
    assert printed(hw, final, "each") == [
        "value=first in /buddy/looped", "value=two words in /buddy/looped", "value=3 in /buddy/looped",
    ]  # fmt: skip
    # and a failing value stops the loop, failing the step
    final = execute(hw, "looped-fails", box(image, "each", 'echo "$BUDDY_LOOP_VALUE"', '[ "$BUDDY_LOOP_VALUE" != b ]',
                                            loop=["a", "b", "c"], ignore_errors=True))  # fmt: skip
    assert printed(hw, final, "each") == ["a", "b"]
    assert statuses(final) == {"each": "WARNING"}


def test_the_images_entrypoint_is_kept_unless_reset(hw: Client, docker_client: Any, base_image: str) -> None:
    # Given an image whose ENTRYPOINT wraps the command it is given
    dockerfile = f'FROM {base_image}\nENTRYPOINT ["/bin/sh", "-c", "echo wrapped; exec \\"$@\\"", "--"]\n'
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag="hatchway-test/wrapped:1", rm=True)
    image = {"docker_image_name": "hatchway-test/wrapped", "docker_image_tag": "1"}
    final = execute(hw, "entry", box(image, "kept", "echo command"),
                    box(image, "reset", "echo command", reset_entrypoint=True),
                    {"name": "own", **image, "entrypoint": "echo own entrypoint"})  # fmt: skip
    assert statuses(final) == {"kept": "SUCCESSFUL", "reset": "SUCCESSFUL", "own": "SUCCESSFUL"}, explain(hw, final)
    # Then by default the shell is the entrypoint's command (Buddy's default), reset drops it,
    # and an entrypoint of the step's own replaces it
    assert printed(hw, final, "kept") == ["wrapped", "command"]
    assert printed(hw, final, "reset") == ["command"]
    assert printed(hw, final, "own") == ["own entrypoint"]


def test_a_timeout_stops_the_container_and_the_setup(
    gateway: tuple[Client, Services], image: dict[str, str], docker_client: Any
) -> None:
    hw, services = gateway
    # Given a step whose commands, and one whose setup commands, outlast its timeout
    nonce = uuid.uuid4().hex
    final = execute(hw, "slow", box(image, "sleeps", "echo start", "sleep 120", timeout=2, ignore_errors=True),
                    box(image, "sets-up-slowly", "echo never", setup_commands=[f"echo {nonce}", "sleep 120"],
                        timeout=3, ignore_errors=True))  # fmt: skip
    # Then both fail with a timeout
    assert statuses(final) == {"sleeps": "WARNING", "sets-up-slowly": "WARNING"}, explain(hw, final)
    for step, seconds in (("sleeps", 2), ("sets-up-slowly", 3)):
        run = run_of(hw, final, step)
        assert run["error"]["kind"] == "timeout" and f"{seconds} s" in run["error"]["message"], run["error"]

    # and the step's container is removed (after the kill grace)
    sleeper = run_of(hw, final, "sleeps")["id"]
    wait_until(lambda: not docker_client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={sleeper}"}),
               timeout=30, what="the timed-out step's container to be removed")  # fmt: skip

    # and the engine stops the abandoned setup: no container of it is left running
    def setup_running() -> bool:
        return any(nonce in " ".join(c.attrs["Config"]["Cmd"] or []) for c in docker_client.containers.list())

    wait_until(lambda: not setup_running(), timeout=30, what="the setup build container to stop")


def test_terminating_stops_a_silent_setup_at_once(hw: Client, image: dict[str, str], docker_client: Any) -> None:
    # Given a step whose setup commands are silent for long, within its timeout
    nonce = uuid.uuid4().hex
    hw.put_pipeline("quiet", {"steps": [box(image, "use", "echo never", timeout=600,
                                            setup_commands=[f": {nonce}", "sleep 300"])]})  # fmt: skip

    def building() -> list[Any]:
        return [c for c in docker_client.containers.list() if nonce in " ".join(c.attrs["Config"]["Cmd"] or [])]

    started = hw.start_execution("quiet")
    wait_until(building, timeout=60, what="the setup's build to start")
    # When the execution is terminated
    hw.terminate_execution("quiet", started["id"])
    final = hw.wait_execution("quiet", started["id"], timeout=60)
    # Then the step is stopped, and so is its build (not left to its 300 s)
    assert statuses(final) == {"use": "TERMINATED"}, explain(hw, final)
    wait_until(lambda: not building(), timeout=30, what="the setup build container to stop")


# ---- the image and the user -----------------------------------------------------------------


def test_setup_commands_customise_the_image_once(hw: Client, image: dict[str, str]) -> None:
    # Given a step whose setup commands write into the image (as root, where the step's user cannot);
    # the engine's images outlive a test session: this session's script is new to it
    nonce = uuid.uuid4().hex
    step = box(
        image, "use", "cat /opt/setup-mark", "id -u",
        setup_commands=[f"echo preparing {nonce}", 'echo "set up as $(id -u)" > /opt/setup-mark'],
    )  # fmt: skip
    first = execute(hw, "setup", step)
    assert statuses(first) == {"use": "SUCCESSFUL"}, explain(hw, first)
    # Then the first run prints the setup's output, and the step sees what setup made
    assert printed(hw, first, "use")[0] == f"preparing {nonce}"
    assert printed(hw, first, "use")[-2:] == ["set up as 0", "65534"]
    # and the next execution uses the image they made without running them again
    started = hw.start_execution("setup")
    again = hw.wait_execution("setup", started["id"], timeout=120)
    assert printed(hw, again, "use") == ["set up as 0", "65534"]
    # A failing setup command fails the step, saying so
    failing = box(image, "use", "echo never", setup_commands=[f"echo {nonce}", "exit 4"], ignore_errors=True)
    final = execute(hw, "setup-fails", failing)
    assert statuses(final) == {"use": "WARNING"}
    assert "the setup commands failed" in run_of(hw, final, "use")["error"]["message"]


def test_a_steps_setup_image_is_replaced_by_its_next_and_goes_with_its_pipeline(
    hw: Client, image: dict[str, str], docker_client: Any
) -> None:
    def images_of(pipeline: str) -> set[str]:
        # (by the step's label: a stopped setup of an earlier test may still leave an image of its own)
        key = step_key("proj_local", DEFAULT_ENVIRONMENT, f"pipeline:{pipeline}/use")
        return {i.id for i in docker_client.images.list(filters={"label": f"{LABEL_SETUP_STEP}={key}"})}

    def marking(word: str) -> dict[str, Any]:
        return box(image, "use", "cat /opt/mark", setup_commands=[f"echo {word} > /opt/mark"])

    nonce = uuid.uuid4().hex
    # Given a step whose setup commands made its image
    first = execute(hw, "resetup", marking(f"one-{nonce}"))
    assert printed(hw, first, "use") == [f"one-{nonce}"], explain(hw, first)
    made = images_of("resetup")
    assert len(made) == 1
    # When its setup commands change
    second = execute(hw, "resetup", marking(f"two-{nonce}"))
    assert printed(hw, second, "use") == [f"two-{nonce}"], explain(hw, second)
    # Then the step has one setup image, the new one: the earlier one is gone from the engine
    remade = images_of("resetup")
    assert len(remade) == 1 and remade != made
    assert not made & {i.id for i in docker_client.images.list(all=True)}
    # and another pipeline's step with the same commands gets an image of its own
    other = execute(hw, "resetup-too", marking(f"two-{nonce}"))
    assert printed(hw, other, "use") == [f"two-{nonce}"], explain(hw, other)
    kept = images_of("resetup-too")
    assert len(kept) == 1 and kept != remade
    # When the first pipeline is deleted
    hw.delete_pipeline("resetup")
    # Then its step's image goes, and the other pipeline's stays
    assert images_of("resetup") == set() and images_of("resetup-too") == kept
    hw.delete_pipeline("resetup-too")
    assert images_of("resetup-too") == set()


def test_run_as_user_runs_as_that_user_of_the_image(hw: Client, image: dict[str, str]) -> None:
    # Given steps run as "daemon" (a user of Debian images): it reads its variables and shares the filesystem
    final = execute(
        hw, "users",
        box(image, "as-daemon", "id -un", 'echo "$WHO"', "echo made > by-daemon", run_as_user="daemon",
            variables=[{"key": "WHO", "value": "ada"}]),
        box(image, "as-default", "id -u", "cat by-daemon"),
        box(image, "ghost", "id", run_as_user="ghost", ignore_errors=True),
        # Buddy's own example: the user in a variable
        box(image, "from-variable", "id -un", run_as_user="$containerUser",
            variables=[{"key": "containerUser", "value": "mail"}]),
    )  # fmt: skip
    expected = {
        "as-daemon": "SUCCESSFUL",
        "as-default": "SUCCESSFUL",
        "ghost": "WARNING",
        "from-variable": "SUCCESSFUL",
    }
    assert statuses(final) == expected, explain(hw, final)
    assert printed(hw, final, "as-daemon") == ["daemon", "ada"]
    assert printed(hw, final, "as-default") == ["65534", "made"]
    assert printed(hw, final, "from-variable") == ["mail"]
    # a user the image lacks fails the step, saying so
    assert "the image has no such user" in run_of(hw, final, "ghost")["error"]["message"]
    # and root is refused when the pipeline is defined, or when the variable naming it is set
    with pytest.raises(ValidationErrorResponse) as refused:
        hw.put_pipeline("rooted", {"steps": [box(image, "root", "id", run_as_user="root")]})
    assert refused.value.details[0]["loc"][-1] == "run_as_user"
    hw.put_pipeline("settable", {"variables": [{"key": "WHO", "value": "daemon", "settable": True}],
                                 "steps": [box(image, "who", "id -un", run_as_user="${WHO}")]})  # fmt: skip
    started = hw.start_execution("settable", variables={"WHO": "root"})
    final = hw.wait_execution("settable", started["id"], timeout=120)
    assert statuses(final) == {"who": "FAILED"}
    assert "never run as root" in run_of(hw, final, "who")["error"]["message"]


# ---- the pipeline filesystem ----------------------------------------------------------------


def test_the_filesystem_is_shared_by_the_steps_of_one_execution(
    gateway: tuple[Client, Services], image: dict[str, str]
) -> None:
    hw, services = gateway
    # Given steps that write, read, map and export through the pipeline filesystem
    steps = [
        box(image, "write", "pwd", "echo built > artifact.txt", "mkdir -p sub && echo deep > sub/file"),
        box(image, "read", "pwd", "cat artifact.txt", working_directory="/work"),
        box(image, "map", "cat /data/file", "ls /buddy/fs 2>/dev/null | wc -l", volume_mappings=["/sub:/data"]),
        box(image, "alone", "pwd", "test ! -e artifact.txt && echo no filesystem", mount_filesystem_disable=True,
            working_directory="/srv"),
        box(image, "export", "mkdir -p /tmp/out/deeper", "echo exported > /tmp/out/deeper/report.txt",
            export_container_path="/tmp/out"),
        box(image, "imported", "cat out/deeper/report.txt"),
    ]  # fmt: skip
    final = execute(hw, "fs", *steps)
    assert set(statuses(final).values()) == {"SUCCESSFUL"}, explain(hw, final)
    # Then each step starts in the filesystem (mounted at /buddy/<pipeline> or its working_directory)
    assert printed(hw, final, "write") == ["/buddy/fs"]
    assert printed(hw, final, "read") == ["/work", "built"]
    # a mapping mounts a folder of it instead of the whole
    assert printed(hw, final, "map") == ["deep", "0"]
    # mount_filesystem_disable leaves it out
    assert printed(hw, final, "alone") == ["/srv", "no filesystem"]
    # and export_container_path copies a folder of the container into it for the next steps
    assert printed(hw, final, "imported") == ["exported"]
    # The next execution starts with an empty filesystem, and an ended execution's is removed
    started = hw.start_execution("fs")
    again = hw.wait_execution("fs", started["id"], timeout=180)
    assert set(statuses(again).values()) == {"SUCCESSFUL"}, explain(hw, again)
    for execution in (final, again):
        folder = execution_dir(services.settings.work_dir, hw.project, execution["id"])
        assert not folder.exists()


def test_the_filesystem_gives_no_way_out_to_the_host(gateway: tuple[Client, Services], image: dict[str, str]) -> None:
    hw, services = gateway
    # Given a step that leaves links to host folders in the filesystem, and steps mounting them
    final = execute(
        hw, "escape",
        box(image, "plant", "ln -s /etc etc-link", "mkdir real && ln -s /root real/root-link"),
        box(image, "through-link", "ls /x", volume_mappings=["/etc-link:/x"], ignore_errors=True),
        box(image, "nested-link", "ls /y", volume_mappings=["/real/root-link:/y"], ignore_errors=True),
        box(image, "exports-a-link", "mkdir -p /tmp/out && ln -s /etc/shadow /tmp/out/shadow",
            export_container_path="/tmp/out", ignore_errors=True),
        box(image, "exports-a-way-up", "mkdir -p /tmp/up && ln -s ../../../../../../etc /tmp/up/etc",
            export_container_path="/tmp/up", ignore_errors=True),
    )  # fmt: skip
    # Then no step mounts through a link, and a link out of the filesystem is not exported
    refused = {"through-link", "nested-link", "exports-a-link", "exports-a-way-up"}
    assert statuses(final) == {"plant": "SUCCESSFUL", **dict.fromkeys(refused, "WARNING")}, explain(hw, final)
    for step in ("through-link", "nested-link"):
        assert "not a folder of the pipeline filesystem" in run_of(hw, final, step)["error"]["message"]
    for step in ("exports-a-link", "exports-a-way-up"):
        message = run_of(hw, final, step)["error"]["message"]
        assert "could not be copied into the filesystem" in message, message
        # the reason never names the gateway's folders
        assert str(services.settings.work_dir) not in message and "/var/tmp" not in message, message
    # and paths leaving the filesystem or covering the container's own are refused when defined
    for bad, field in (
        ({"volume_mappings": ["../up:/x"]}, "volume_mappings"),
        ({"volume_mappings": ["/a:/tmp"]}, "volume_mappings"),
        ({"volume_mappings": ["/a:/hatchway/data"]}, "volume_mappings"),
        ({"working_directory": "/proc"}, "working_directory"),
        ({"export_container_path": "/x", "mount_filesystem_disable": True}, "export_container_path"),
    ):
        with pytest.raises(ValidationErrorResponse) as refused:
            hw.put_pipeline("bad", {"steps": [box(image, "s", "true", **bad)]})
        assert field in refused.value.details[0]["loc"], (bad, refused.value.details)
