"""A Run Docker container step's ``setup_commands``: the step's image, customised once.

Buddy runs them "only on the first run": here they run in an image built ``FROM`` the step's
image, tagged by that image's ID, the script and the step (of a pipeline of an environment of a
project), so later runs find it and skip them. A step has one such image: building a new one (its
commands or its image changed) removes the step's earlier ones, and deleting the pipeline removes
them all (:func:`remove_step_images`), unless a container still uses them.

The commands run as root (they install packages), on the engine's default network (not the host's:
they are the tenant's commands), and see no variables (the image outlives any one value).

The step's timeout covers them, and a cancel stops them: a watchdog kills the build's running
container (labelled with the build's key, which the classic builder's intermediate containers
inherit), so a silent command stops at once too; the read timeout of the build's connection is
the last resort.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from hatchway.domain.attempts import Invocation
from hatchway.executors.containers.engine import (
    ACTION_REPOSITORY,
    LABEL_KIND,
    LABEL_MANAGED,
    ActionImage,
    DockerEngine,
    ImageFailed,
)

#: the label of a setup build's containers (and of the image it makes)
LABEL_SETUP = "io.hatchway.setup"
#: the label of a setup image that names its step (a digest of project, environment and step)
LABEL_SETUP_STEP = "io.hatchway.setup.step"
#: the classic builder's own lines ("Step 2/3 : ...", " ---> 1a2b...", "Successfully built ...")
_BUILD_NOISE = re.compile(r"^(Step \d+/\d+ : | ---> |Successfully (built|tagged) |Removing intermediate container )")


class SetupStopped(Exception):
    """The setup commands were stopped: past the step's timeout, or the run was cancelled."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("cancelled" if cancelled else "timed out")
        self.cancelled = cancelled


def step_key(project_id: str, environment: str, action_name: str) -> str:
    """The value of :data:`LABEL_SETUP_STEP` for a step (its action name, ``pipeline:<p>/<s>``)."""
    return hashlib.sha256(f"{project_id}\0{environment}\0{action_name}".encode()).hexdigest()[:32]


def remove_step_images(engine: DockerEngine, step: str, keep: str | None = None) -> None:
    """Remove the setup images of ``step`` but ``keep`` (an image ID); those a container uses stay.

    Only tagged ones, the images builds made: the layers of a build still under way (of another
    version of the step) carry the step's label too, untagged, and must not go from under it. What
    a stopped build left (untagged, metadata only: no file system of its own) stays.
    """
    try:
        images = engine.client.images.list(filters={"label": f"{LABEL_SETUP_STEP}={step}"})
    except Exception:
        return
    for image in images:
        if image.id != keep and image.tags:
            with contextlib.suppress(Exception):
                engine.client.images.remove(image.id)
    engine.prune_images()


def setup_image(
    engine: DockerEngine,
    invocation: Invocation,
    base: ActionImage,
    setup: dict[str, str],
    on_line: Callable[[str], None],
    seconds: float,
    cancel: threading.Event,
) -> ActionImage:
    """``base`` customised by ``setup`` (``shell``, ``script``), built if the engine lacks it.

    Output goes to ``on_line``. Raises :class:`ImageFailed` if a command fails,
    :class:`SetupStopped` past ``seconds`` or on ``cancel``, :class:`~hatchway.errors.Unavailable`
    if the engine does not answer.
    """
    step = step_key(invocation.project_id, invocation.environment, invocation.action_name)
    key = hashlib.sha256(f"{base.id}\0{setup['shell']}\0{setup['script']}\0{step}".encode()).hexdigest()
    tenant = hashlib.sha256(invocation.project_id.encode()).hexdigest()[:10]
    tag = f"{ACTION_REPOSITORY}/setup:{key[:40]}-{tenant}"
    with engine.build_lock(tag):
        found = engine._inspect_answering(tag)
        if found is not None:
            return found
        dockerfile = (
            f"FROM {base.id or base.ref}\nLABEL {LABEL_SETUP}={key} {LABEL_SETUP_STEP}={step}\nUSER root\n"
            f"RUN {json.dumps([setup['shell'], '-c', setup['script']])}\n"
        )
        stop, expired = threading.Event(), threading.Event()
        watchdog = threading.Thread(
            target=_watch, args=(engine, key, time.monotonic() + seconds, cancel, stop, expired), daemon=True,
            name="hatchway-setup-watchdog",
        )  # fmt: skip
        watchdog.start()
        try:
            error = _build(engine, dockerfile, tag, on_line, seconds)
        except Exception as exc:
            if not engine._answers():
                raise engine.down() from exc
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            stop.set()
            watchdog.join()
        if cancel.is_set() or expired.is_set():
            raise SetupStopped(cancelled=cancel.is_set())
        if error is not None:
            raise ImageFailed(f"the setup commands failed: {error[:300]}")
        found = engine._inspect_answering(tag)
        if found is None:
            raise ImageFailed("the setup commands made no image")
        remove_step_images(engine, step, keep=found.id)
        return found


def _build(
    engine: DockerEngine, dockerfile: str, tag: str, on_line: Callable[[str], None], seconds: float
) -> str | None:
    """Build ``dockerfile`` into ``tag``; the build's error, or None."""
    error: str | None = None
    chunks: Any = engine.client.api.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="default", rm=True, forcerm=True, decode=True,
        labels={LABEL_MANAGED: "1"}, timeout=max(1.0, seconds),
    )  # fmt: skip
    try:
        for chunk in chunks:
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip() and not _BUILD_NOISE.match(line):
                    on_line(line)
            if "error" in chunk:
                error = str(chunk["error"]).strip()
    finally:
        with contextlib.suppress(Exception):
            chunks.close()  # drops the connection if the build is still going: the engine stops it
    return error


def _watch(
    engine: DockerEngine, key: str, deadline: float, cancel: threading.Event, stop: threading.Event,
    expired: threading.Event,
) -> None:  # fmt: skip
    """From ``deadline`` (setting ``expired``) or ``cancel`` on, kill the build's containers until
    ``stop`` (the build has ended)."""
    while not stop.wait(0.2):
        if not cancel.is_set() and time.monotonic() < deadline:
            continue
        if not cancel.is_set():
            expired.set()
        with contextlib.suppress(Exception):
            for container in engine.client.containers.list(filters={"label": f"{LABEL_SETUP}={key}"}):
                if LABEL_KIND not in container.labels:  # a step's container of the built image: not ours
                    container.kill()
