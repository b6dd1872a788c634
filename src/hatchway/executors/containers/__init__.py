"""Wire the container executors of one gateway: one engine shared by ``docker`` and ``lambda-local``.

``HATCHWAY_EXECUTOR=docker`` runs everything with ``docker run``; ``lambda-local`` answers sync
calls with warm container Lambdas and runs the queue with ``docker run``; ``auto`` (the default
of ``hatchway serve`` when an engine answers) does the latter for actions that have an image and
runs the others as host processes. An action may ask for one of them by name in
``metadata.executor``.
"""

from __future__ import annotations

from hatchway.config import Settings
from hatchway.errors import Unavailable
from hatchway.executors import Executor, Executors
from hatchway.executors.containers.docker import DockerExecutor
from hatchway.executors.containers.engine import DockerEngine
from hatchway.executors.containers.lambda_local import LocalLambdaExecutor, find_rie


def container_executors(settings: Settings, name: str) -> Executors:
    """The executors for ``name`` (auto, docker or lambda-local) over one Docker engine."""
    engine = DockerEngine(settings.docker_host, settings.home)
    engine.ping()
    docker = DockerExecutor(engine, settings.work_dir, settings.kill_grace_seconds)
    named: dict[str, tuple[Executor, Executor]] = {"docker": (docker, docker)}
    rie = find_rie(settings.lambda_rie_path)
    if rie is not None:
        warm = LocalLambdaExecutor(engine, docker, rie, settings.lambda_pool_size, settings.lambda_idle_seconds)
        named["lambda-local"] = (warm, docker)
    elif name == "lambda-local":
        raise Unavailable(
            "the lambda-local executor needs the Lambda Runtime Interface Emulator: install aws-sam-cli "
            "(its `sam` on PATH) or set HATCHWAY_LAMBDA_RIE"
        )
    images = named.get("lambda-local") or named["docker"]
    where = f"Docker engine at {engine.host}"
    if name == "auto":
        from hatchway.executors.process import ProcessExecutor

        process = ProcessExecutor.from_settings(settings)
        named["process"] = (process, process)
        return Executors(process, images=images, named=named, mode=f"auto ({where})")
    return Executors(*named[name], named=named, mode=where)
