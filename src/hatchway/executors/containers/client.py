"""The Docker SDK client, shared by the engine and the base image builder.

The ``docker`` package (the ``docker`` extra) is imported when a client is made, not before.
"""

from __future__ import annotations

from typing import Any

from hatchway.errors import Unavailable

DEFAULT_HOST = "unix:///var/run/docker.sock"


def docker_client(host: str | None, timeout: float = 60.0) -> Any:
    """A docker SDK client for ``host`` (default: the standard socket)."""
    try:
        import docker
    except ImportError as exc:
        raise Unavailable("the docker executors need the docker package: pip install 'hatchway[docker]'") from exc
    return docker.DockerClient(base_url=host or DEFAULT_HOST, timeout=int(timeout))
