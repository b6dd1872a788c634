"""Run actions as Docker containers: one ``docker run`` per attempt.

The container contract goes through a bind mount: the attempt's private workspace on the host
(``config.json``, ``out/``) is mounted at ``/hatchway/data`` and named by ``HATCHWAY_DATA_DIR``;
its ``tmp/`` is also the container's ``/tmp`` (and ``TMPDIR``), so a file stash is found where
programs look for temporary files.
``entry_point``/``command``/``env_vars``/``workdir`` of ``container_parameters`` override the
image's own with Docker's rules; limits, user and network come from
:meth:`DockerEngine.run_options`. Output is attached before the container starts, so nothing
is missed, and fed to the collector as it arrives.

At the deadline or on cancel the container gets SIGTERM and the answer is given at once; the
engine's remover kills and removes it after the grace. A container that ends by itself is
inspected (exit code, ``OOMKilled``) and removed. Image pulls and builds happen before the
attempt's clock starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from hatchway.config import Settings
from hatchway.domain.attempts import AttemptResult, Invocation, read_outputs, scrub_paths
from hatchway.domain.pipelines import inline
from hatchway.domain.pipelines.filesystem import PathRefused, execution_dir, host_path
from hatchway.domain.pipelines.inline import CONTAINER_STEP
from hatchway.domain.spec import ActionSpec, has_image
from hatchway.errors import Unavailable, ValidationFailed
from hatchway.executors.base import BaseAttemptExecutor
from hatchway.executors.containers.engine import (
    CONTAINER_DATA_DIR,
    LABEL_CLEANUP,
    LABEL_EXECUTION,
    LABEL_HOME,
    LABEL_RUN,
    ActionImage,
    DockerEngine,
    ImageFailed,
    container_user,
    container_workdir,
    effective_argv,
    give_to,
)
from hatchway.executors.containers.setup import SetupStopped, remove_step_images, setup_image, step_key
from hatchway.executors.sandbox import signal_of
from hatchway.runtime.contract import OutputCollector, Workspace

#: the container's temporary directory: the workspace's tmp/, bind-mounted
CONTAINER_TMP = "/tmp"  # noqa: S108 - inside the container

#: beyond the kill grace, how long a step that opens paths of the filesystem waits for the
#: execution's other containers to be removed
ALONE_SLACK_SECONDS = 10.0

#: how long the output of an exited container is awaited (the attach stream closes right after)
DRAIN_SECONDS = 5.0


class DockerExecutor(BaseAttemptExecutor):
    """Actions as Docker containers on the local engine."""

    name = "docker"

    def __init__(self, engine: DockerEngine, work_dir: Path, kill_grace_seconds: float = 5.0) -> None:
        self.engine = engine
        self.work_dir = work_dir
        self.kill_grace_seconds = kill_grace_seconds
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerExecutor:
        engine = DockerEngine(settings.executors.docker_host, settings.home)
        engine.ping()
        return cls(engine, settings.work_dir, settings.runs.kill_grace_seconds)

    def recover(self) -> int:
        """Remove the containers (and their workspaces) of gateways on this home that are gone, and
        hatchway's images that a rebuild replaced."""
        removed = self.engine.cleanup_orphans()
        self.engine.prune_images()
        return removed

    def check(self, spec: ActionSpec, invoked: str) -> None:
        if not has_image(spec):
            raise ValidationFailed.at(
                ["body", "image_uri"],
                "this action has no image (image_uri or docker_config); the docker executor runs images only",
                "executor_unsupported",
            )

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        """Build a ``docker_config`` action's image on the engine, tagged by the spec's digest."""
        self.engine.prepare(project_id, spec)

    def release(self, project_id: str, spec: ActionSpec) -> None:
        """Remove the image a deleted ``docker_config`` version was built into."""
        self.engine.release(project_id, spec)

    def release_step(self, project_id: str, environment: str, action_name: str) -> None:
        """Remove the setup image of a deleted pipeline's container step (``pipeline:<p>/<s>``)."""
        remove_step_images(self.engine, step_key(project_id, environment, action_name))

    def image(self, invocation: Invocation) -> ActionImage:
        """The attempt's image, pulled or built first if needed (raises :class:`Unavailable`)."""
        return self.engine.ensure_image(invocation)

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult:
        started = time.monotonic()
        try:
            image = self.image(invocation)
        except Unavailable as exc:  # the engine is down, a pull broke: another try may work (503)
            return AttemptResult(unavailable=exc.message)
        except ImageFailed as exc:
            return AttemptResult(platform_error=exc.message)
        # pulling or building the image does not count against the action's limit
        invocation = dataclasses.replace(invocation, deadline=invocation.deadline + (time.monotonic() - started))
        setup = (container_step(invocation.spec) or {}).get("setup")
        if setup:  # the step's own work: its timeout covers it
            started = time.monotonic()
            try:
                image = setup_image(
                    self.engine, invocation, image, setup,
                    lambda line: collector.feed("stdout", f"{line}\n".encode()), invocation.seconds_left, cancel,
                )  # fmt: skip
            except Unavailable as exc:
                return AttemptResult(unavailable=exc.message)
            except SetupStopped as exc:
                return AttemptResult(cancelled=exc.cancelled, timed_out=not exc.cancelled, duration_ms=_ms(started))
            except ImageFailed as exc:  # a setup command failed: the step's own failure, as a command's would be
                collector.feed("stderr", f"{exc.message}\n".encode())
                return AttemptResult(exit_code=1, duration_ms=_ms(started))
        return self.run_container(invocation, image, collector, cancel)

    def run_container(
        self, invocation: Invocation, image: ActionImage, collector: OutputCollector, cancel: threading.Event
    ) -> AttemptResult:
        """One attempt in a fresh container of ``image``."""
        started = time.monotonic()
        workspace = Workspace(self.work_dir, f"{invocation.run_id}-{invocation.attempt}")
        uid, _ = container_user()
        try:
            workspace.create(invocation.config_document())
            workspace.stage(invocation.input_files, invocation.tmp_source)
            give_to(workspace.path, uid)
        except (OSError, ValueError) as exc:
            workspace.remove()
            return AttemptResult(
                platform_error=f"could not prepare the workspace ({getattr(exc, 'strerror', None) or exc})"
            )
        spec = invocation.spec
        step = container_step(spec)
        try:
            run_as = inline.run_as(str(step["user"]), invocation.parameters) if step and step.get("user") else None
        except ValueError as exc:
            workspace.remove()
            collector.feed("stderr", f"{exc}\n".encode())
            return AttemptResult(exit_code=1)
        try:
            mounts = self._filesystem(invocation, step)
            if run_as:  # another user of the image reaches the workspace through the group
                share_with_group(workspace.path)
        except (OSError, PathRefused) as exc:
            workspace.remove()
            if isinstance(exc, PathRefused):
                collector.feed("stderr", f"the pipeline filesystem: {exc}\n".encode())
                return AttemptResult(exit_code=1)
            return AttemptResult(platform_error=f"could not prepare the pipeline filesystem ({exc.strerror or exc})")
        env = invocation.environment_for(CONTAINER_DATA_DIR)
        env.setdefault("HOME", CONTAINER_DATA_DIR)
        env.setdefault("TMPDIR", CONTAINER_TMP)
        env.setdefault("LANG", "C.UTF-8")
        env.setdefault("PYTHONUNBUFFERED", "1")
        client = self.engine.client
        labels = {LABEL_RUN: invocation.run_id, LABEL_CLEANUP: str(workspace.path)}
        if mounts and invocation.pipeline_execution:
            labels[LABEL_EXECUTION] = invocation.pipeline_execution
        try:
            container = client.api.create_container(
                image.ref,
                entrypoint=effective_argv(spec, image) or None,
                command=[],
                user=run_as or "{}:{}".format(*container_user()),
                environment=env,
                working_dir=container_workdir(spec, image),
                name=f"hatchway-{invocation.run_id.lower()}-{invocation.attempt}",
                labels=self.engine.labels("run", **labels),
                host_config=self._host_config(spec, workspace.path, mounts, shared=run_as is not None),
            )
        except Exception as exc:
            workspace.remove()
            if not self.engine._answers():
                return AttemptResult(unavailable=self.engine.down().message)
            return AttemptResult(platform_error=f"the container could not be created ({engine_reason(exc)})")
        container_id = container["Id"]
        if run_as and not self._user_allowed(container_id, run_as, collector):
            self.engine.remove_later(container_id, 0.0, workspace.remove)
            return AttemptResult(exit_code=1, duration_ms=_ms(started))
        try:
            return self._run(container_id, invocation, workspace, collector, cancel, started)
        except Exception:
            self.engine.remove_later(container_id, 0.0, workspace.remove)
            raise

    def _filesystem(self, invocation: Invocation, step: dict[str, Any] | None) -> dict[str, str]:
        """The pipeline filesystem's mounts of a container step: container path -> host path."""
        if not step or not step.get("filesystem") or invocation.pipeline_execution is None:
            return {}
        if step.get("export") or any(source for source, _ in step["filesystem"]):
            self._alone_in(invocation.pipeline_execution, invocation.seconds_left)
        root = self.filesystem(invocation)
        owner = container_user() if os.getuid() == 0 else None
        return {target: str(host_path(root, source, owner)) for source, target in step["filesystem"]}

    def _alone_in(self, execution: str, seconds: float) -> None:
        """Wait until no other container mounts the execution's filesystem (one stopped by a
        timeout or a termination is removed after the kill grace): the gateway is about to open
        paths in it, which no container may be changing (see ``_filesystem_rules`` of the spec).
        Raises :class:`TimeoutError` if one is still there when ``seconds`` have passed (a platform
        error: the attempt is retried)."""
        deadline = time.monotonic() + max(0.0, min(seconds, self.kill_grace_seconds + ALONE_SLACK_SECONDS))
        labels = [f"{LABEL_EXECUTION}={execution}", f"{LABEL_HOME}={self.engine.home_label}"]
        while self.engine.client.containers.list(all=True, filters={"label": labels}, ignore_removed=True):
            if time.monotonic() >= deadline:
                raise TimeoutError("another container of this execution still has it")
            time.sleep(0.2)

    def filesystem(self, invocation: Invocation) -> Path:
        """The execution's filesystem, made on first use and owned by the containers' user."""
        assert invocation.pipeline_execution is not None  # noqa: S101 - callers check
        root = execution_dir(self.work_dir, invocation.project_id, invocation.pipeline_execution)
        if not root.is_dir():
            root.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileExistsError):
                root.mkdir(mode=0o770)
                uid, gid = container_user()
                if os.getuid() == 0:
                    os.chown(root, uid, gid)
                root.chmod(0o2770)  # what a step makes belongs to the containers' group
        return root

    def _user_allowed(self, container_id: str, user: str, collector: OutputCollector) -> bool:
        """``run_as_user`` must be a user of the image, and never root (whatever its name)."""
        uid = uid_in(self.engine.client, container_id, user)
        if uid is None:
            collector.feed("stderr", f"run_as_user {user}: the image has no such user\n".encode())
        elif uid == 0:
            message = f"run_as_user {user} is root in this image; containers never run as root\n"
            collector.feed("stderr", message.encode())
        return uid not in (None, 0)

    def _host_config(self, spec: ActionSpec, data_dir: Path, mounts: dict[str, str], shared: bool = False) -> Any:
        options = self.engine.run_options(spec, "run")
        binds = [
            f"{data_dir}:{CONTAINER_DATA_DIR}:rw",
            # the workspace's tmp/ (a file stash's files) is the container's /tmp
            f"{data_dir / 'tmp'}:{CONTAINER_TMP}:rw",
            *(f"{source}:{target}:rw" for target, source in mounts.items()),
        ]
        return self.engine.client.api.create_host_config(
            binds=binds,
            group_add=[str(container_user()[1])] if shared else None,
            mem_limit=options["mem_limit"],
            memswap_limit=options["memswap_limit"],
            nano_cpus=options["nano_cpus"],
            pids_limit=options["pids_limit"],
            network_mode=options["network_mode"],
            cap_drop=options["cap_drop"],
            security_opt=options["security_opt"],
            init=options["init"],
            log_config=options["log_config"],
        )

    def _run(
        self,
        container_id: str,
        invocation: Invocation,
        workspace: Workspace,
        collector: OutputCollector,
        cancel: threading.Event,
        started: float,
    ) -> AttemptResult:
        from docker.utils.socket import frames_iter

        api = self.engine.client.api
        sock = api.attach_socket(container_id, params={"stdout": 1, "stderr": 1, "stream": 1})
        # an action may be silent for longer than the client's request timeout
        api._disable_socket_timeout(sock)
        stop_feeding = threading.Event()

        def pump() -> None:
            with contextlib.suppress(Exception):  # the stream breaks when the container is removed
                for stream_id, data in frames_iter(sock, False):
                    if stop_feeding.is_set():
                        break
                    collector.feed("stderr" if stream_id == 2 else "stdout", data)
            with contextlib.suppress(Exception):
                sock.close()

        reader = threading.Thread(target=pump, name=f"hatchway-attach-{invocation.run_id}", daemon=True)
        reader.start()
        try:
            api.start(container_id)
        except Exception as exc:
            # the engine could not start the container (a runtime or mount failure; a command the
            # image lacks is tini's to report, once the container runs): the platform failed it
            stop_feeding.set()
            self.engine.remove_later(container_id, 0.0, workspace.remove)
            if not self.engine._answers():
                return AttemptResult(unavailable=self.engine.down().message, duration_ms=_ms(started))
            collector.system(f"cannot start the action: {engine_reason(exc)}")
            return AttemptResult(
                platform_error=f"the engine could not start the container ({engine_reason(exc)})",
                duration_ms=_ms(started),
            )
        while reader.is_alive():
            if cancel.is_set() or invocation.seconds_left <= 0:
                stop_feeding.set()
                with contextlib.suppress(Exception):
                    api.kill(container_id, signal="SIGTERM")
                self.engine.remove_later(container_id, self.kill_grace_seconds, workspace.remove)
                return AttemptResult(cancelled=cancel.is_set(), timed_out=not cancel.is_set(), duration_ms=_ms(started))
            reader.join(timeout=0.05)
            collector.tick()
        try:
            status = api.wait(container_id, timeout=DRAIN_SECONDS)
            state = api.inspect_container(container_id)["State"]
        except Exception as exc:
            self.engine.remove_later(container_id, 0.0, workspace.remove)
            reason = "the engine does not answer" if not self.engine._answers() else engine_reason(exc)
            return AttemptResult(platform_error=f"the container's end could not be read ({reason})")
        exit_code = int(status.get("StatusCode", -1))
        start_error = init_start_error(exit_code, collector.tail("stderr"))
        if start_error:
            collector.system(f"cannot start the action: {start_error}")
        execution = AttemptResult(
            exit_code=exit_code,
            # the container's init (tini) reports the action's death by signal N as exit code 128+N,
            # and the engine records nothing else (State has no signal): an action that itself exits
            # 129..192 reads as killed by a signal. An OOM kill is told apart (State.OOMKilled).
            signal=None if start_error else signal_of(exit_code),
            oom=bool(state.get("OOMKilled")),
            duration_ms=_ms(started),
        )
        if execution.exit_code == 0:
            read_outputs(workspace, execution, invocation.output_mode)
            export = (container_step(invocation.spec) or {}).get("export")
            if export and invocation.pipeline_execution is not None:
                problem = self._export(container_id, str(export), invocation)
                if problem:
                    collector.system(problem)
                    execution = dataclasses.replace(execution, output_problem=problem)
        if invocation.before_cleanup is not None:
            invocation.before_cleanup(workspace.path)
        self.engine.remove_later(container_id, 0.0, workspace.remove)
        return execution

    def _export(self, container_id: str, path: str, invocation: Invocation) -> str | None:
        """Copy ``path`` of the stopped container into the filesystem's root, as ``docker cp`` does
        (a folder lands as ``<root>/<its name>/``); what went wrong, or None.

        The archive comes from the engine, written by the action: it is extracted with the
        ``data`` filter (no absolute paths, no ``..``, no links out of the filesystem, no devices
        or set-id bits), and each file is given to the containers' user.
        """
        import tarfile

        import docker.errors

        uid, gid = container_user()
        assert invocation.pipeline_execution is not None  # noqa: S101 - the caller checked
        try:  # only this step's (stopped) container may have the filesystem while it is written
            labels = [f"{LABEL_EXECUTION}={invocation.pipeline_execution}", f"{LABEL_HOME}={self.engine.home_label}"]
            others = [c for c in self.engine.client.containers.list(filters={"label": labels}, ignore_removed=True)
                      if c.id != container_id]  # fmt: skip
        except docker.errors.APIError as exc:
            return f"export_container_path {path} could not be read ({engine_reason(exc)})"
        if others:
            return f"export_container_path {path}: another container of this execution has the filesystem"
        root = self.filesystem(invocation)

        def owned(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
            safe = tarfile.data_filter(member, dest)
            return safe.replace(uid=uid, gid=gid, uname="", gname="", deep=False) if safe is not None else None

        try:
            stream, _ = self.engine.client.api.get_archive(container_id, path)
            with tarfile.open(fileobj=_Chunks(stream), mode="r|") as archive:
                archive.extractall(root, numeric_owner=True, filter=owned)  # noqa: S202 - the data filter
        except docker.errors.NotFound:
            return f"export_container_path {path}: the container has no such path"
        except (tarfile.TarError, OSError) as exc:  # the filter's reasons name the host folder: never shown
            reason = scrub_paths(engine_reason(exc).replace(f"{root}/", "").replace(str(root), "."))
            return f"export_container_path {path} could not be copied into the filesystem ({reason})"
        except docker.errors.APIError as exc:
            return f"export_container_path {path} could not be read ({engine_reason(exc)})"
        return None

    def close(self) -> None:
        self.engine.close()


class _Chunks(io.RawIOBase):
    """A file over the engine's archive stream (an iterator of byte chunks), read once."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def uid_in(client: Any, container_id: str, user: str) -> int | None:
    """The uid ``user`` (a name or uid, optionally :group) has in a created container, or None
    if the image has no such user (read from its /etc/passwd, as Docker reads it)."""
    import tarfile

    name = user.partition(":")[0]
    if name.isdigit():
        return int(name)
    try:
        stream, _ = client.api.get_archive(container_id, "/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile("passwd")
            text = member.read().decode(errors="replace") if member else ""
    except Exception:
        return None
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def container_step(spec: ActionSpec) -> dict[str, Any] | None:
    """What a pipeline's Run Docker container step asks of the executor (None: any other action)."""
    described = spec.metadata.get(CONTAINER_STEP)
    return described if isinstance(described, dict) else None


def share_with_group(path: Path) -> None:
    """Open a workspace to its group (the containers' group): ``run_as_user`` runs as another uid
    of the image, which reaches the workspace through that group (``group_add``)."""
    for root, _dirs, files in os.walk(path):
        Path(root).chmod(0o770)  # noqa: S103 - the group is the containers' own
        for name in files:
            (Path(root) / name).chmod(0o660, follow_symlinks=False)


#: what the container's init (tini, ``init: true``) prints when it cannot exec the command
INIT_EXEC_FAILED = re.compile(r"^\[FATAL tini \(\d+\)\] exec (?P<program>.+) failed: (?P<why>.+)$")


def init_start_error(exit_code: int, stderr_tail: list[str]) -> str | None:
    """Why the container's init could not start the action (it exits 127 or 126 and says so on
    stderr), or None. The action could print the same line itself before exiting 127: it would only
    mislabel its own application error."""
    if exit_code not in (126, 127):
        return None
    for line in reversed(stderr_tail):
        found = INIT_EXEC_FAILED.match(line.strip())
        if found:
            program = found["program"]
            return f"{program!r} was not found" if exit_code == 127 else f"{program!r} is not executable"
    return None


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def engine_reason(exc: BaseException) -> str:
    """The first line of an engine error, for a run's record (never a traceback)."""
    text = str(getattr(exc, "explanation", None) or exc) or type(exc).__name__
    return text.splitlines()[0][:300]
