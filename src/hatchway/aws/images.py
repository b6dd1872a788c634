"""What the AWS engines need of an action image, checked at registration on a local Docker engine.

AWS cannot look inside an image: Lambda creates a function for any image it can pull, and Batch
and ECS register any definition - an image that cannot run hatchway's container side fails only
when a call or run starts it (``ModuleNotFoundError``, exit 1, never retried; or, on Batch, an
ENTRYPOINT that ignores the job's command: exit 0 and nothing recorded). Where a Docker engine
is at hand (``DOCKER_HOST``, else the standard socket - a gateway on a laptop, ``hatchway serve
--backend aws``, CI) and already has the image, :class:`ImageProbe` starts it once the way the
engine would, with a probe command instead of a run, and refuses the registration (422) when it
cannot:

* Lambda (sync actions): ``python3`` must import ``awslambdaric`` and ``hatchway.runtime.adapter``
  (the function's entry point is set to them; the image's own does not matter);
* ECS: ``python3`` must import the attempt's host (``hatchway.wiring``, which needs the package
  with its ``aws`` extra: boto3) - the task's entry point is set to ``python3 -m ...``;
* Batch: the same, through the image's own ENTRYPOINT (a job definition cannot replace it), which
  must run the command it is given.

Without an engine, without the ``docker`` package, or for an image the engine does not have (it
is never pulled: a registration does not wait for a download) nothing is probed and the
registration goes on; the events then fail such runs with a platform error that names the cause.
The answers are kept per image ID, so versions sharing an image are probed once per process.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from hatchway.config import Settings
from hatchway.domain.attempts import scrub_paths
from hatchway.errors import ValidationFailed

log = logging.getLogger("hatchway.aws")

#: printed by the probe command once everything it needs imported
MARKER = "hatchway-image-probe-ok"
#: what ``python3 -c`` imports in the image, per engine
IMPORTS = {
    "lambda": "import awslambdaric, hatchway.runtime.adapter",
    "batch": "import boto3, hatchway.runtime.remote, hatchway.wiring",
    "ecs": "import boto3, hatchway.runtime.remote, hatchway.wiring",
}
#: how long a probe container may take (an ENTRYPOINT that ignores its command may never end)
PROBE_SECONDS = 60.0
#: how long a gateway that found no engine goes on without asking again (registrations stay quick)
NO_ENGINE_SECONDS = 60.0
#: how the gateway tells what is missing
FIXES = {
    "lambda": "build it FROM hatchway/action-base (or pip install hatchway awslambdaric in it)",
    "batch": "pip install 'hatchway[aws]' in it (the base image carries the runtime alone)",
    "ecs": "pip install 'hatchway[aws]' in it (the base image carries the runtime alone)",
}


class ImageProbe:
    """Starts an image on a local Docker engine to see that an AWS engine could run it."""

    def __init__(self, docker_host: str | None, seconds: float = PROBE_SECONDS) -> None:
        self.docker_host = docker_host
        self.seconds = seconds
        self._known: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()
        self._quiet_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageProbe:
        return cls(settings.executors.docker_host)

    def check(self, image: str, engine: str) -> None:
        """Refuse (422 at ``image_uri``) an image the local engine shows ``engine`` could not run."""
        problem = self.problem(image, engine)
        if problem is not None:
            raise ValidationFailed.at(["body", "image_uri"], problem, "image_unsupported")

    def problem(self, image: str, engine: str) -> str | None:
        """Why ``engine`` could not run ``image`` (None: it could, or nothing here can tell)."""
        client = self._client()
        if client is None:
            return None
        try:
            found = self._image(client, image)
            if found is None:
                return None
            key = (found.id, engine)
            with self._lock:
                if key in self._known:
                    return self._known[key]
            problem = self._probe(client, found, image, engine)
        except Exception as exc:
            # the engine failed us (not the image): say so in the log, let the registration go on
            log.warning(
                "could not probe the image",
                extra={
                    "image": image,
                    "engine": engine,
                    "error": type(exc).__name__,
                    "reason": scrub_paths(str(exc))[:200],
                },
            )
            return None
        finally:
            client.close()
        with self._lock:
            self._known[key] = problem
        return problem

    def _client(self) -> Any:
        """A client of an engine that answers, or None (asked again a minute after it did not)."""
        if time.monotonic() < self._quiet_until:
            return None
        try:
            import docker
        except ImportError:
            return None
        try:
            client = docker.DockerClient(base_url=self.docker_host or "unix:///var/run/docker.sock", timeout=10)
            client.ping()
        except Exception:
            self._quiet_until = time.monotonic() + NO_ENGINE_SECONDS  # no engine answers here
            return None
        return client

    @staticmethod
    def _image(client: Any, image: str) -> Any:
        import docker.errors

        try:
            return client.images.get(image)
        except docker.errors.ImageNotFound:
            return None

    def _probe(self, client: Any, found: Any, image: str, engine: str) -> str | None:
        import requests.exceptions

        script = f"{IMPORTS[engine]}; print({MARKER!r})"
        entrypoint = None if engine == "batch" else ["python3"]
        command = ["python3", "-c", script] if engine == "batch" else ["-c", script]
        container = client.containers.run(
            found.id, command, entrypoint=entrypoint, detach=True, network_disabled=True,
            labels={"io.hatchway.probe": "1"},
        )  # fmt: skip
        try:
            try:
                exit_code = int(container.wait(timeout=self.seconds).get("StatusCode", -1))
            except requests.exceptions.ConnectionError:  # the docker SDK's read timeout
                exit_code = None
            output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        if MARKER in output and exit_code == 0:
            return None
        return _explain(image, engine, exit_code, output, self.seconds)


def _explain(image: str, engine: str, exit_code: int | None, output: str, seconds: float) -> str:
    """The 422's message for an image that failed its probe."""
    last = next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "")
    where = {"lambda": "as a Lambda function", "batch": "AWS Batch runs", "ecs": "ECS runs"}[engine]
    if engine == "batch" and (exit_code is None or (exit_code == 0 and MARKER not in output)):
        ran = f"was still running after {seconds:g} s" if exit_code is None else "exited 0 without running it"
        return (
            f"the image {image} cannot run {where}: its ENTRYPOINT does not run the command it is given "
            f"(a probe command through it {ran}); Batch cannot override an ENTRYPOINT - remove it, or make "
            'it exec "$@"'
        )
    said = f" ({last[:300]})" if last else ""
    return f"the image {image} cannot run {where}: `{IMPORTS[engine]}` failed in it{said}; {FIXES[engine]}"
