"""The local Docker engine, as the container executors use it.

Shared by :class:`~hatchway.executors.containers.docker.DockerExecutor` (a ``docker run`` per attempt) and
:class:`~hatchway.executors.containers.lambda_local.LocalLambdaExecutor` (warm container Lambdas):

* **images** - an action's image is its ``image_uri`` (pulled if missing), or its ``docker_config``
  built on this engine and tagged by the digest of the action's effective spec
  (``hatchway-action/<name>:<digest>-<project hash>``; without ``inherits`` that is the version's
  digest).
  Registration builds it (:meth:`DockerEngine.prepare`; a failed build is a 422 with the tail of the
  build log); an attempt that finds it missing builds or pulls it first, and that time does not
  count against the action's limit.
* **confinement** - every container runs as a non-root user, with all capabilities dropped,
  ``no-new-privileges``, a PID limit, ``--memory``/``--cpus`` from ``compute_requirements``, and
  no network unless the action's metadata says ``"network": true`` (as for host processes).
* **ownership** - every container carries labels naming this gateway's home and its owner process
  (boot id, pid, start time). At start-up containers of the same home whose owner is gone - a
  gateway that was SIGKILLed - are removed, so nothing is left behind across a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from hatchway.errors import Unavailable, ValidationFailed
from hatchway.executors.containers.client import DEFAULT_HOST, docker_client
from hatchway.executors.sandbox import allows_network

if TYPE_CHECKING:
    from hatchway.domain.attempts import Invocation
    from hatchway.domain.spec import ActionSpec

log = logging.getLogger("hatchway.docker")

CONTAINER_DATA_DIR = "/hatchway/data"
ACTION_REPOSITORY = "hatchway-action"
LABEL_MANAGED = "io.hatchway.managed"
LABEL_HOME = "io.hatchway.home"
LABEL_OWNER = "io.hatchway.owner"
LABEL_KIND = "io.hatchway.kind"
LABEL_RUN = "io.hatchway.run"
#: the pipeline execution whose filesystem a container mounts
LABEL_EXECUTION = "io.hatchway.execution"
LABEL_RUNTIME = "io.hatchway.runtime"
#: a host directory that belongs to the container (its workspace, its control socket's directory)
LABEL_CLEANUP = "io.hatchway.cleanup"
#: the unprivileged user containers run as when the gateway itself is root ("nobody")
NOBODY = 65534
PIDS_LIMIT = 1024
BUILD_LOG_TAIL = 30
ENGINE_DOWN = "the Docker engine does not answer; nothing was started"
#: a build finished this recently for the same tag is reused (two executors preparing one action)
FRESH_BUILD_SECONDS = 10.0
#: a Dockerfile naming hatchway's base image gets it built on first use (see hatchway.executors.containers.images)
BASE_IMAGE_REF = re.compile(r"hatchway/action-base:([0-9][0-9A-Za-z_.-]*)")


def engine_answers(host: str | None, timeout: float = 1.0) -> bool:
    """True if a Docker engine answers ``/_ping`` at ``host`` (standard library; cheap when absent)."""
    url = urlparse(host or DEFAULT_HOST)
    try:
        if url.scheme == "unix":
            if not Path(url.path).exists():
                return False
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(timeout)
            sock.connect(url.path)
            conn = http.client.HTTPConnection("docker", timeout=timeout)
            conn.sock = sock
        elif url.scheme in ("tcp", "http"):
            conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 2375, timeout=timeout)
        else:  # ssh://, npipe:// ...: let the SDK try
            docker_client(host, timeout).ping()
            return True
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except Exception:  # any failure means: no engine here
        return False


# ---------------------------------------------------------------------------------------------
# owners: which gateway process a container belongs to


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:  # pragma: no cover - not Linux
        return "noboot"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


def owner_token(pid: int | None = None) -> str:
    """Names this process across pid reuse: boot id, pid and the process's start time."""
    pid = pid or os.getpid()
    return f"{_boot_id()}:{pid}:{_start_time(pid)}"


def owner_alive(token: str) -> bool:
    boot, _, rest = token.partition(":")
    pid, _, started = rest.partition(":")
    if boot != _boot_id() or not pid.isdigit():
        return False
    return _start_time(int(pid)) == started


# ---------------------------------------------------------------------------------------------
# images


@dataclass
class ActionImage:
    """An image on the engine and the parts of its config an attempt needs."""

    ref: str
    #: the image ID (``sha256:...``): what ``ref`` named when it was inspected
    id: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    workdir: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def has_runtime(self) -> bool:
        """Built from hatchway's base image (so awslambdaric and the adapter are inside)."""
        return self.labels.get(LABEL_RUNTIME) == "1"

    @classmethod
    def from_attrs(cls, ref: str, attrs: dict[str, Any]) -> ActionImage:
        config = attrs.get("Config") or {}
        return cls(
            ref=ref,
            id=str(attrs.get("Id") or ""),
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            workdir=config.get("WorkingDir") or "",
            labels=dict(config.get("Labels") or {}),
        )


class ImageFailed(Exception):
    """The attempt's image cannot be had (no such image, access denied, a failed build): trying
    again at once will not help. The message is for the run's record."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _is_permanent_pull_failure(exc: Exception, reason: str) -> bool:
    """A pull the registry refused for good (not found, denied), as opposed to one that broke."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    lowered = reason.lower()
    return status in (401, 403, 404) or any(
        word in lowered for word in ("not found", "denied", "manifest unknown", "unauthorized", "invalid reference")
    )


def effective_argv(spec: ActionSpec, image: ActionImage) -> list[str]:
    """What runs, with Docker's rules: ``entry_point`` replaces ENTRYPOINT (and drops CMD), ``command`` CMD."""
    params = spec.container_parameters
    entry = params.entry_point if params and params.entry_point is not None else None
    command = params.command if params and params.command is not None else None
    argv = list(entry) if entry is not None else list(image.entrypoint)
    if command is not None:
        argv += command
    elif entry is None:
        argv += image.cmd
    return argv


def container_workdir(spec: ActionSpec, image: ActionImage) -> str:
    """``workdir`` of the action (relative to the image's WORKDIR), else the image's WORKDIR."""
    base = image.workdir or "/"
    workdir = spec.container_parameters.workdir if spec.container_parameters else None
    if not workdir:
        return base
    return workdir if workdir.startswith("/") else f"{base.rstrip('/')}/{workdir}"


def _component(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned or "action"


def action_image_tag(project_id: str, name: str, digest: str) -> str:
    """The tag of a built action image: by action name and the digest of its (effective) spec,
    distinct per project. The version determines it, so it needs no record of its own.

    The digest covers ``docker_config`` (context path, dockerfile, build args), not the files in
    the context: registering an unchanged action.json after editing its sources rebuilds the image
    under the same tag. The image ID is not recorded in the version (a version is immutable and
    that registration returns it unchanged); each attempt inspects the tag and runs the image it
    names, and warm containers are keyed by that image ID, so none serves a replaced image."""
    tenant = hashlib.sha256(project_id.encode()).hexdigest()[:10]
    return f"{ACTION_REPOSITORY}/{_component(name)}:{digest.removeprefix('sha256:')}-{tenant}"


# ---------------------------------------------------------------------------------------------
# confinement


def container_user() -> tuple[int, int]:
    """The uid:gid actions run as: the gateway's own, or nobody when the gateway is root."""
    uid, gid = os.getuid(), os.getgid()
    return (NOBODY, NOBODY) if uid == 0 else (uid, gid)


def give_to(path: Path, uid: int) -> None:
    """Hand a directory tree prepared by the gateway to the container's user.

    A hard link to a stored file (a staged input) is replaced by a copy first: the store's own
    file keeps its owner.
    """
    if os.getuid() != 0 or uid == 0:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, uid)
        for name in dirs:
            os.chown(Path(root) / name, uid, uid)
        for name in files:
            target = Path(root) / name
            if target.stat(follow_symlinks=False).st_nlink > 1:
                copy = target.with_name(f".{name}.copy")
                shutil.copyfile(target, copy)
                copy.replace(target)
            os.chown(target, uid, uid, follow_symlinks=False)


def _context_stamp(context: Path) -> str:
    """Names the state of a build context (paths, sizes, mtimes): an edit between two builds changes it."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(files):
            with contextlib.suppress(OSError):
                info = (Path(root) / name).stat()
                digest.update(f"{root}/{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class DockerEngine:
    """One Docker engine: images, container options, ownership labels and cleanup."""

    def __init__(self, host: str | None, home: Path, client: Any = None) -> None:
        self.host = host or DEFAULT_HOST
        self.home_label = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
        self.owner = owner_token()
        self._client = client
        self._client_lock = threading.Lock()
        self._build_locks: dict[str, threading.Lock] = {}
        self._fresh: dict[str, tuple[float, str]] = {}
        self._locks_guard = threading.Lock()
        self._ncpu: float | None = None
        self._removals = threading.Condition()
        self._pending: list[tuple[float, str, Callable[[], None] | None]] = []
        self._remover: threading.Thread | None = None
        self._in_flight = 0

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = docker_client(self.host)
            return self._client

    def ping(self) -> None:
        """Raise :class:`Unavailable` if the engine does not answer."""
        try:
            self.client.ping()
        except Unavailable:
            raise
        except Exception as exc:
            raise Unavailable(ENGINE_DOWN) from exc

    def down(self) -> Unavailable:
        """The error of an engine found not answering during an attempt; its address goes to the log
        only (a socket's path is a host path, which no client sees)."""
        log.warning("the Docker engine does not answer", extra={"docker_host": self.host})
        return Unavailable(ENGINE_DOWN)

    # ---- labels ------------------------------------------------------------------------------

    def labels(self, kind: str, **extra: str) -> dict[str, str]:
        return {LABEL_MANAGED: "1", LABEL_HOME: self.home_label, LABEL_OWNER: self.owner, LABEL_KIND: kind, **extra}

    def cleanup_orphans(self) -> int:
        """Remove containers whose gateway process is gone; how many were removed.

        Those of this home, and those of any home whose owner ran on this machine (same boot) and
        has exited - a gateway whose home is gone leaves nobody else to clean up after it. An
        owner on another machine sharing the engine is never judged from here.
        """
        removed = 0
        filters = {"label": [f"{LABEL_MANAGED}=1"]}
        for container in self.client.containers.list(all=True, filters=filters, ignore_removed=True):
            owner = container.labels.get(LABEL_OWNER, "")
            if owner == self.owner or owner_alive(owner):
                continue
            is_ours = container.labels.get(LABEL_HOME) == self.home_label
            if not is_ours and owner.partition(":")[0] != _boot_id():
                continue
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
                log.info("removed an orphaned container", extra={"container": container.name})
            leftover = container.labels.get(LABEL_CLEANUP)
            if leftover and Path(leftover).is_absolute():
                shutil.rmtree(leftover, ignore_errors=True)
        return removed

    def own_containers(self, kind: str | None = None) -> list[Any]:
        labels = [f"{LABEL_MANAGED}=1", f"{LABEL_HOME}={self.home_label}", f"{LABEL_OWNER}={self.owner}"]
        if kind:
            labels.append(f"{LABEL_KIND}={kind}")
        return list(self.client.containers.list(all=True, filters={"label": labels}, ignore_removed=True))

    # ---- confinement ---------------------------------------------------------------------------

    def ncpu(self) -> float:
        if self._ncpu is None:
            try:
                self._ncpu = float(self.client.info().get("NCPU") or os.cpu_count() or 1)
            except Exception:
                self._ncpu = float(os.cpu_count() or 1)
        return self._ncpu

    def run_options(self, spec: ActionSpec, kind: str, **labels: str) -> dict[str, Any]:
        """Keyword arguments of ``containers.create`` that confine an action's container."""
        compute = spec.compute_requirements
        uid, gid = container_user()
        cpus = min(compute.vCPU / 1024, self.ncpu())
        return {
            "user": f"{uid}:{gid}",
            "mem_limit": f"{compute.memory}m",
            "memswap_limit": f"{compute.memory}m",
            "nano_cpus": int(cpus * 1e9),
            "pids_limit": PIDS_LIMIT,
            "network_mode": "bridge" if allows_network(spec) else "none",
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "init": True,
            "labels": self.labels(kind, **labels),
            "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        }

    # ---- images --------------------------------------------------------------------------------

    def image_for(self, invocation: Invocation) -> str:
        spec = invocation.spec
        if spec.image_uri:
            return spec.image_uri
        return action_image_tag(invocation.project_id, spec.name, spec.digest())

    def inspect(self, ref: str) -> ActionImage | None:
        import docker.errors

        try:
            image = self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        return ActionImage.from_attrs(ref, image.attrs)

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        """Build a ``docker_config`` action's image at registration (a failure refuses the registration)."""
        if spec.docker_config is not None:
            self.build(spec, action_image_tag(project_id, spec.name, spec.digest()), ["body", "docker_config"])

    def release(self, project_id: str, spec: ActionSpec) -> None:
        """Remove the image a deleted ``docker_config`` version was built into (a container that
        still uses it keeps it; a later attempt of the version builds it again)."""
        if spec.docker_config is None:
            return
        tag = action_image_tag(project_id, spec.name, spec.digest())
        with self.build_lock(tag):
            self._fresh.pop(tag, None)
            try:
                self.client.images.remove(tag)
            except Exception as exc:  # gone already, in use, or the engine does not answer
                log.info("kept a deleted action's image", extra={"image": tag, "error": str(exc).splitlines()[0][:200]})
                return
        log.info("removed a deleted action's image", extra={"image": tag})

    def ensure_image(self, invocation: Invocation) -> ActionImage:
        """The attempt's image, pulled or built first if the engine lacks it.

        Raises :class:`Unavailable` where another try may succeed (the engine does not answer, a
        pull failed on the way), :class:`ImageFailed` where it will not by itself (no such image,
        access denied, a failed build).
        """
        ref = self.image_for(invocation)
        found = self._inspect_answering(ref)
        if found is not None:
            return found
        spec = invocation.spec
        if spec.docker_config is not None:
            try:
                self.build(spec, ref, ["docker_config"])
            except ValidationFailed as exc:
                raise ImageFailed(f"the action's image could not be built: {exc.message}") from None
        else:
            try:
                self.client.images.pull(ref)
            except Exception as exc:
                if not self._answers():
                    raise self.down() from exc
                reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0][:300] if str(exc) else ""
                if _is_permanent_pull_failure(exc, reason):
                    raise ImageFailed(f"the image {ref} could not be pulled ({reason})") from exc
                raise Unavailable(f"the image {ref} could not be pulled ({reason}); nothing was started") from exc
        found = self._inspect_answering(ref)
        if found is None:
            raise ImageFailed(f"the image {ref} is not on the engine")
        return found

    def _inspect_answering(self, ref: str) -> ActionImage | None:
        """:meth:`inspect`; an engine that does not answer is :class:`Unavailable`."""
        try:
            return self.inspect(ref)
        except Exception as exc:
            if self._answers():
                raise
            raise self.down() from exc

    def build(self, spec: ActionSpec, tag: str, loc: list[str | int]) -> None:
        """Build ``docker_config`` into ``tag``; a failure is :class:`ValidationFailed` with the log's tail."""
        config = spec.docker_config
        assert config is not None  # noqa: S101 - callers check
        context = Path(config.context or ".")
        if not context.is_absolute() or not context.is_dir():
            raise ValidationFailed.at(
                [*loc, "context"],
                "docker_config.context must be a directory on the gateway's host "
                "(hatchway actions create --from-file makes it absolute)",
            )
        with self._locks_guard:
            lock = self._build_locks.setdefault(tag, threading.Lock())
        stamp = _context_stamp(context)
        with lock:
            built_at, built_stamp = self._fresh.get(tag, (-1e9, ""))
            if time.monotonic() - built_at < FRESH_BUILD_SECONDS and built_stamp == stamp:
                return
            self._ensure_base_images(context / (config.dockerfile or "Dockerfile"), loc)
            self._build(config.dockerfile, context, config.build_args or {}, tag, loc)
            self._fresh[tag] = (time.monotonic(), stamp)

    def build_lock(self, tag: str) -> threading.Lock:
        """The lock that one build of ``tag`` at a time holds."""
        with self._locks_guard:
            return self._build_locks.setdefault(tag, threading.Lock())

    def _ensure_base_images(self, dockerfile: Path, loc: list[str | int]) -> None:
        """Build hatchway's base image once if the Dockerfile names it and the engine lacks it."""
        try:
            text = dockerfile.read_text(errors="replace")
        except OSError:
            return  # the build reports a missing Dockerfile
        for python in sorted(set(BASE_IMAGE_REF.findall(text))):
            if self.inspect(f"hatchway/action-base:{python}") is not None:
                continue
            from hatchway.executors.containers.images import ensure_base

            log.warning("building the base image once", extra={"image": f"hatchway/action-base:{python}"})
            try:
                ensure_base(self.client, python, log=log.info)
            except Unavailable as exc:
                raise ValidationFailed.at(
                    loc,
                    f"the base image hatchway/action-base:{python} is missing and could not be built "
                    f"({exc.message}); build it with infra/images/build",
                    "base_image_missing",
                ) from None

    def _build(
        self, dockerfile: str | None, context: Path, args: dict[str, str], tag: str, loc: list[str | int]
    ) -> None:
        lines: list[str] = []
        error: str | None = None
        started = time.monotonic()
        try:
            for chunk in self.client.api.build(
                path=str(context),
                dockerfile=dockerfile or "Dockerfile",
                tag=tag,
                buildargs=args,
                network_mode="host",
                rm=True,
                forcerm=True,
                decode=True,
                labels={LABEL_MANAGED: "1"},
            ):
                if "stream" in chunk:
                    lines.extend(line for line in chunk["stream"].splitlines() if line.strip())
                if "error" in chunk:
                    error = str(chunk["error"])
        except Exception as exc:  # docker.errors.APIError/BuildError, a missing Dockerfile, a dead engine
            if not self._answers():
                raise Unavailable(f"the Docker engine at {self.host} does not answer") from exc
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if error is not None:
            tail = "\n".join([*lines[-BUILD_LOG_TAIL:], error])
            tail = tail.replace(str(context), "<context>")
            raise ValidationFailed.at(loc, f"the image build failed:\n{tail}", "build_failed")
        log.info("built an action image", extra={"image": tag, "seconds": round(time.monotonic() - started, 2)})
        self.prune_images()

    def prune_images(self) -> int:
        """Remove hatchway's images that no tag names any more and no container uses; how many went.

        A rebuild under the same tag (an action whose sources changed, re-registered) leaves the
        image it replaces untagged: it goes here, after each build and when a gateway starts. Only
        images built by hatchway are touched, never the user's own: the label :data:`LABEL_MANAGED`
        is the build's, which only its final image carries (never the layers of a build under way).
        """
        try:
            answer = self.client.images.prune(filters={"dangling": True, "label": f"{LABEL_MANAGED}=1"})
        except Exception as exc:  # an engine that does not answer, or a prune already under way
            log.info("could not prune replaced images", extra={"error": str(exc).splitlines()[0] if str(exc) else ""})
            return 0
        gone = [entry for entry in answer.get("ImagesDeleted") or [] if entry.get("Deleted")]
        if gone:
            log.info("removed replaced images", extra={"images": len(gone)})
        return len(gone)

    def _answers(self) -> bool:
        try:
            self.client.ping()
            return True
        except Exception:
            return False

    # ---- removal -------------------------------------------------------------------------------

    def remove_later(self, container_id: str, delay: float = 0.0, then: Callable[[], None] | None = None) -> None:
        """Remove a container (SIGKILL first) after ``delay`` seconds, in the background; then call ``then``."""
        with self._removals:
            self._pending.append((time.monotonic() + delay, container_id, then))
            self._removals.notify()
            if self._remover is None:
                self._remover = threading.Thread(target=self._remove_loop, name="hatchway-docker-remover", daemon=True)
                self._remover.start()

    def _remove_loop(self) -> None:
        while True:
            with self._removals:
                while True:
                    now = time.monotonic()
                    due = [item for item in self._pending if item[0] <= now]
                    if due:
                        self._pending = [item for item in self._pending if item[0] > now]
                        self._in_flight += len(due)
                        break
                    wait = min((item[0] for item in self._pending), default=now + 60) - now
                    self._removals.wait(wait)
            try:
                for _, container_id, then in due:
                    self._remove(container_id, then)
            finally:
                with self._removals:
                    self._in_flight -= len(due)
                    self._removals.notify_all()

    def _remove(self, container_id: str, then: Callable[[], None] | None) -> None:
        self.remove_now(container_id)
        if then is not None:
            with contextlib.suppress(Exception):
                then()

    def remove_now(self, container_id: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            try:
                self.client.api.remove_container(container_id, force=True)
            except docker.errors.APIError as exc:
                if "already in progress" not in str(exc):
                    log.warning("could not remove a container", extra={"container": container_id, "error": str(exc)})

    @property
    def removals_pending(self) -> int:
        with self._removals:
            return len(self._pending)

    def close(self, timeout: float = 60.0) -> None:
        """Remove at once what was scheduled for removal later, and wait for removals under way."""
        with self._removals:
            pending, self._pending = self._pending, []
        for _, container_id, then in pending:
            self._remove(container_id, then)
        deadline = time.monotonic() + timeout
        with self._removals:
            while self._in_flight and time.monotonic() < deadline:
                self._removals.wait(0.1)
