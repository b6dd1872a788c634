"""Sync actions as container Lambdas on the local engine, with warm containers.

This is the production path of a sync action, run locally: the action's image is started as a
Lambda function under the Runtime Interface Emulator (the binary that ships in ``aws-sam-cli``,
bind-mounted read-only) with ``awslambdaric`` and :mod:`hatchway.runtime.adapter` as the
handler - the same adapter, the same invocation payload (:func:`~hatchway.domain.attempts.adapter_payload`)
and the same outcome (:func:`~hatchway.domain.attempts.result_from_outcome`) as on AWS.

Containers stay warm: the first call of an action version starts one, later calls reuse it.
A :class:`~hatchway.executors.containers.warm_pool.WarmPool` keeps at most ``pool_size`` containers
per (project, environment, digest, image ID) - tenants never share a container, and an image
rebuilt under the same tag (sources edited, action.json unchanged) gets new containers - and a
bound over all of them; an idle container expires after ``idle_seconds``; concurrent calls each
get their own container or wait for one; a container that died (or whose action was OOM-killed)
is replaced. Starting a container and the runtime's init are not counted against the call's limit
(as an image pull is not); the action's run is.

The emulator listens on TCP inside the container, which has no network: the container's first
process is :mod:`hatchway.runtime.rie_bridge`, which relays a unix socket in a bind-mounted
directory to it. Images not built from hatchway's base image (no adapter inside), and calls
that hand files over or collect them (inputs, a file stash), run with a cold ``docker run`` instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hatchway.config import Settings
from hatchway.domain.attempts import AttemptResult, Invocation, adapter_payload, result_from_outcome
from hatchway.domain.spec import ActionSpec
from hatchway.errors import Unavailable
from hatchway.executors.base import BaseAttemptExecutor
from hatchway.executors.containers.docker import DockerExecutor, engine_reason
from hatchway.executors.containers.engine import (
    LABEL_CLEANUP,
    ActionImage,
    DockerEngine,
    ImageFailed,
    container_user,
    container_workdir,
    effective_argv,
    give_to,
)
from hatchway.executors.containers.warm_pool import ContainerGone, PoolBusy, WarmContainer, WarmPool
from hatchway.runtime.contract import OutputCollector

RIE_IN_CONTAINER = "/opt/hatchway/aws-lambda-rie"
CTL_IN_CONTAINER = "/hatchway/ctl"
LAMBDA_ENTRY = "/usr/local/bin/hatchway-lambda"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
READY_SECONDS = 30.0
#: how long after its deadline an invocation may still answer before its container is killed
ANSWER_SLACK_SECONDS = 3.0


def find_rie(configured: str | None = None) -> Path | None:
    """The Runtime Interface Emulator: as configured, else inside an ``aws-sam-cli`` installation."""
    if configured:
        path = Path(configured)
        return path if path.is_file() else None
    arch = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine, "x86_64")
    candidates: list[Path] = []
    with contextlib.suppress(ImportError):
        import samcli  # type: ignore[import-not-found]

        candidates.append(Path(samcli.__file__).parent)
    sam = shutil.which("sam")
    if sam:
        # `sam` from a virtualenv or pipx: its interpreter's site-packages hold samcli
        with contextlib.suppress(OSError, IndexError):
            interpreter = Path(Path(sam).read_text(errors="replace").splitlines()[0].removeprefix("#!").strip())
            candidates.extend(interpreter.resolve().parent.parent.glob("lib/python3*/site-packages/samcli"))
    for root in candidates:
        rie = root / "local" / "rapid" / f"aws-lambda-rie-{arch}"
        if rie.is_file():
            return rie
    return None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class LocalLambdaExecutor(BaseAttemptExecutor):
    """Sync actions as warm container Lambdas (Runtime Interface Emulator + awslambdaric)."""

    name = "lambda-local"

    def __init__(
        self,
        engine: DockerEngine,
        docker: DockerExecutor,
        rie_path: Path,
        pool_size: int = 4,
        idle_seconds: float = 300.0,
        total: int | None = None,
        kill_grace_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.docker = docker
        self.rie_path = rie_path
        self.kill_grace_seconds = kill_grace_seconds
        self.pool = WarmPool(pool_size, total or max(16, pool_size), idle_seconds, self._stop)
        self.ctl_root = Path(tempfile.gettempdir()) / f"hatchway-lambda-{os.getuid()}"
        self.ctl_root.mkdir(mode=0o711, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalLambdaExecutor:
        docker = DockerExecutor.from_settings(settings)
        rie = find_rie(settings.executors.lambda_rie_path)
        if rie is None:
            raise Unavailable(
                "the lambda-local executor needs the Lambda Runtime Interface Emulator: install aws-sam-cli "
                "(its `sam` on PATH) or set HATCHWAY_LAMBDA_RIE"
            )
        return cls(
            docker.engine, docker, rie, settings.executors.lambda_pool_size, settings.executors.lambda_idle_seconds
        )

    def check(self, spec: ActionSpec, invoked: str) -> None:
        self.docker.check(spec, invoked)

    def recover(self) -> int:
        return self.docker.recover()

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        self.docker.prepare(project_id, spec)

    def release(self, project_id: str, spec: ActionSpec) -> None:
        self.docker.release(project_id, spec)

    # ---- one call ------------------------------------------------------------------------------

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult:
        started = time.monotonic()
        try:
            image = self.engine.ensure_image(invocation)
        except Unavailable as exc:  # the engine is down, a pull broke: another try may work (503)
            return AttemptResult(unavailable=exc.message)
        except ImageFailed as exc:
            return AttemptResult(platform_error=exc.message)
        if not image.has_runtime or invocation.input_files or invocation.tmp_source is not None:
            # no runtime adapter in the image, or files to hand over or collect: a cold container
            shifted = dataclasses.replace(invocation, deadline=invocation.deadline + (time.monotonic() - started))
            return self.docker.run_container(shifted, image, collector, cancel)
        # keyed by the image ID, not its tag: a rebuild under the same tag must not be served by old containers
        key = (invocation.project_id, invocation.environment, invocation.digest, image.id or image.ref)
        for attempt in range(2):
            waited = time.monotonic()
            try:
                warm, is_new = self.pool.acquire(
                    key, lambda: self._start(invocation, image, key), time.monotonic() + invocation.seconds_left
                )
            except PoolBusy:
                return AttemptResult(timed_out=True, duration_ms=_ms(started))
            except Unavailable as exc:  # the container did not start: the engine's failure, or it is down
                if not self.engine._answers():
                    return AttemptResult(unavailable=self.engine.down().message)
                return AttemptResult(platform_error=exc.message)
            # an image pull/build and a cold start do not count against the call's limit
            prep = time.monotonic() - started if is_new else 0.0
            call = dataclasses.replace(invocation, deadline=invocation.deadline + prep)
            payload = adapter_payload(
                call,
                argv=effective_argv(call.spec, image),
                workdir=container_workdir(call.spec, image),
                kill_grace_seconds=self.kill_grace_seconds,
                max_log_bytes=collector.max_log_bytes,
                max_stdout_bytes=collector.max_stdout_bytes,
            )
            try:
                return self._call(warm, call, payload, collector, cancel, time.monotonic() - waited)
            except ContainerGone:
                self.pool.discard(warm)
                if attempt == 1:
                    return AttemptResult(platform_error="the Lambda container could not be reached")
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(
        self,
        warm: WarmContainer,
        call: Invocation,
        payload: dict[str, Any],
        collector: OutputCollector,
        cancel: threading.Event,
        waited: float,
    ) -> AttemptResult:
        started = time.monotonic()
        body = json.dumps(payload).encode()
        answer: dict[str, Any] = {}
        done = threading.Event()
        patience = call.seconds_left + self.kill_grace_seconds + ANSWER_SLACK_SECONDS
        connection = _UnixConnection(warm.socket_path, timeout=patience)
        try:
            connection.connect()
        except OSError:
            connection.close()
            raise ContainerGone() from None

        def post() -> None:
            try:
                connection.request("POST", INVOKE_PATH, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer["status"] = response.status
                answer["body"] = response.read()
            except (OSError, http.client.HTTPException) as exc:
                answer["error"] = exc
            finally:
                done.set()

        threading.Thread(target=post, name=f"hatchway-invoke-{call.run_id}", daemon=True).start()
        while not done.wait(0.05):
            collector.tick()
            if cancel.is_set() or time.monotonic() - started > patience:
                connection.close()
                self.pool.discard(warm)
                return AttemptResult(cancelled=cancel.is_set(), timed_out=not cancel.is_set(), duration_ms=_ms(started))
        connection.close()
        if "error" in answer:
            # the container died under the call (the action took the runtime down, or memory ran out)
            oom = self._oom_killed(warm)
            self.pool.discard(warm)
            return AttemptResult(signal=9, oom=oom, duration_ms=_ms(started))
        try:
            outcome = json.loads(answer["body"])
        except ValueError:
            outcome = {}
        if answer.get("status") != 200 or not isinstance(outcome, dict) or outcome.get("hatchway") != 1:
            self.pool.discard(warm)
            return AttemptResult(
                platform_error="the Lambda runtime answered without an outcome", duration_ms=_ms(started)
            )
        execution = result_from_outcome(outcome, collector)
        if execution.oom or execution.timed_out:
            self.pool.discard(warm)  # start the next call from a clean container
        else:
            self.pool.release(warm)
        execution.duration_ms = execution.duration_ms or _ms(started)
        return execution

    def _oom_killed(self, warm: WarmContainer) -> bool:
        try:
            state = self.engine.client.api.inspect_container(warm.id)["State"]
        except Exception:
            return False
        return bool(state.get("OOMKilled"))

    # ---- containers ----------------------------------------------------------------------------

    def _start(self, invocation: Invocation, image: ActionImage, key: tuple[str, ...]) -> WarmContainer:
        spec = invocation.spec
        name = f"hatchway-fn-{invocation.digest.removeprefix('sha256:')[:12]}-{secrets.token_hex(4)}"
        ctl_dir = self.ctl_root / name
        ctl_dir.mkdir(mode=0o700)
        uid, _ = container_user()
        give_to(ctl_dir, uid)
        options = self.engine.run_options(spec, "lambda", **{LABEL_CLEANUP: str(ctl_dir)})
        api = self.engine.client.api
        limit = int(invocation.spec.timeout_seconds) + 60
        try:
            container = api.create_container(
                image.id or image.ref,  # the image inspected, even if the tag moves meanwhile
                entrypoint=[
                    "python3",
                    "-m",
                    "hatchway.runtime.rie_bridge",
                    f"{CTL_IN_CONTAINER}/invoke.sock",
                    "--",
                    RIE_IN_CONTAINER,
                    LAMBDA_ENTRY,
                ],  # fmt: skip
                command=[],
                user="{}:{}".format(*container_user()),
                environment={
                    "AWS_LAMBDA_FUNCTION_NAME": invocation.action_name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.compute_requirements.memory),
                    "AWS_LAMBDA_FUNCTION_TIMEOUT": str(limit),
                    "HATCHWAY_ADAPTER_ROOT": "/tmp",  # noqa: S108 - inside the container
                },
                working_dir=container_workdir(spec, image),
                name=name,
                labels=options["labels"],
                host_config=api.create_host_config(
                    binds={
                        str(ctl_dir): {"bind": CTL_IN_CONTAINER, "mode": "rw"},
                        str(self.rie_path): {"bind": RIE_IN_CONTAINER, "mode": "ro"},
                    },
                    mem_limit=options["mem_limit"],
                    memswap_limit=options["memswap_limit"],
                    nano_cpus=options["nano_cpus"],
                    pids_limit=options["pids_limit"],
                    network_mode=options["network_mode"],
                    cap_drop=options["cap_drop"],
                    security_opt=options["security_opt"],
                    init=options["init"],
                    log_config=options["log_config"],
                ),
            )
            api.start(container["Id"])
        except Exception as exc:
            shutil.rmtree(ctl_dir, ignore_errors=True)
            raise Unavailable(f"the Lambda container could not be started ({engine_reason(exc)})") from exc
        warm = WarmContainer(container["Id"], (), str(ctl_dir / "invoke.sock"), ctl_dir)
        self._wait_ready(warm)
        warm.key = key
        return warm

    def _wait_ready(self, warm: WarmContainer) -> None:
        deadline = time.monotonic() + READY_SECONDS
        next_look = time.monotonic() + 0.25
        while time.monotonic() < deadline:
            if Path(warm.socket_path).exists():
                return
            time.sleep(0.005)
            if time.monotonic() > next_look:  # did it die on the way?
                next_look = time.monotonic() + 0.25
                state = self._state(warm)
                if state is not None and not state.get("Running"):
                    break
        logs = self._logs(warm)
        self._stop(warm)
        raise Unavailable(f"the Lambda container did not start{': ' + logs if logs else ''}")

    def _state(self, warm: WarmContainer) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = self.engine.client.api.inspect_container(warm.id)["State"]
            return state
        except Exception:
            return None

    def _logs(self, warm: WarmContainer) -> str:
        try:
            raw = self.engine.client.api.logs(warm.id, tail=5)
        except Exception:
            return ""
        return str(raw.decode("utf-8", "replace")).strip()[-500:]

    def _stop(self, warm: WarmContainer) -> None:
        self.engine.remove_later(warm.id, 0.0, lambda: shutil.rmtree(warm.ctl_dir, ignore_errors=True))

    def close(self) -> None:
        self.pool.close()
        self.docker.close()


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


if __name__ == "__main__":  # pragma: no cover
    print(find_rie(sys.argv[1] if len(sys.argv) > 1 else None))
