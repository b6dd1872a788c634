"""Which executor runs what: sync calls and async runs may go to different places (on AWS a
container Lambda answers sync calls while Batch runs the queue).

:class:`Placement` is built by :func:`hatchway.wiring.build_placement` from the settings. Attempt
executors (:class:`~hatchway.ports.AttemptExecutor`) run one attempt in this process; a run engine
(:class:`~hatchway.ports.RunEngine`: Batch, ECS) takes whole runs elsewhere. HTTP actions always go
to ``http``. ``named`` maps executor names to (sync, run) pairs an action may ask for in
``metadata.executor``; ``images`` is the pair for actions that have an image when the choice is
automatic (``hatchway serve`` with a Docker engine). ``engines`` makes the run engines by name
(Batch, ECS) for runs an engine other than today's holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hatchway.domain.runs import Mode
from hatchway.domain.spec import ActionSpec, has_image
from hatchway.errors import Unavailable, ValidationFailed
from hatchway.ports import AttemptExecutor, RunEngine


def action_executor(spec: ActionSpec) -> str | None:
    """The executor an action asks for in its metadata (``"executor": "docker"``), if any."""
    choice = spec.metadata.get("executor")
    return choice if isinstance(choice, str) else None


class Placement:
    """Picks the executor or engine of each call and run, and speaks for all of them (recover, close).

    ``sync`` is None where sync calls have no executor (``HATCHWAY_EXECUTOR=batch`` alone); ``run``
    defaults to ``sync``; ``engine``, when given, takes the runs of every action but HTTP ones.
    """

    def __init__(
        self,
        sync: AttemptExecutor | None,
        run: AttemptExecutor | None = None,
        http: AttemptExecutor | None = None,
        *,
        images: tuple[AttemptExecutor, AttemptExecutor] | None = None,
        named: Mapping[str, tuple[AttemptExecutor, AttemptExecutor]] | None = None,
        mode: str | None = None,
        engine: RunEngine | None = None,
        engines: Mapping[str, Callable[[], RunEngine]] | None = None,
    ) -> None:
        self.sync = sync
        self.run = run or sync
        self.http = http
        self.images = images
        self.named = dict(named or {})
        self.mode = mode
        self.engine = engine
        self._engines = dict(engines or {})
        self._made: dict[str, RunEngine] = {}

    @property
    def _sync_name(self) -> str:
        return self.sync.name if self.sync is not None else self.engine.name if self.engine is not None else "none"

    def _pair(self, spec: ActionSpec) -> tuple[AttemptExecutor | None, AttemptExecutor | RunEngine | None]:
        """The (sync, run) pair of a non-HTTP action."""
        wanted = action_executor(spec)
        default = (self.sync, self.engine or self.run)
        if wanted is not None and wanted not in self.named and wanted == self._sync_name:
            return default
        if wanted is not None:
            if wanted not in self.named:
                offered = ", ".join(self.named) or self._sync_name
                raise ValidationFailed.at(
                    ["body", "metadata", "executor"],
                    f"this gateway cannot run actions with the {wanted} executor (it offers: {offered})",
                    "executor_unavailable",
                )
            return self.named[wanted]
        if self.images is not None and has_image(spec):
            return self.images
        return default

    def _chosen(self, spec: ActionSpec, mode: Mode) -> AttemptExecutor | RunEngine | None:
        if spec.http is not None:
            if self.http is None:
                raise ValidationFailed.at(["body", "http"], "this gateway runs no HTTP actions", "executor_unavailable")
            return self.http
        sync, run = self._pair(spec)
        return sync if mode == Mode.SYNC else run

    def pick(self, spec: ActionSpec, mode: Mode) -> AttemptExecutor | RunEngine:
        """What takes ``spec`` in ``mode``: an attempt executor, or the run engine of its runs."""
        chosen = self._chosen(spec, mode)
        if chosen is None:
            raise ValidationFailed.at(
                ["body", "sync_actions"],
                f"the {self._sync_name} engine runs async runs only; this gateway answers no sync calls",
                "executor_unavailable",
            )
        return chosen

    def engine_for(self, spec: ActionSpec) -> RunEngine | None:
        """The run engine that takes the runs of ``spec``; None when this process executes them."""
        if self.engine is None or spec.http is not None:
            return None
        _, run = self._pair(spec)
        return self.engine if run is self.engine else None

    def executor_for(self, spec: ActionSpec, mode: Mode) -> AttemptExecutor:
        """The attempt executor that runs an attempt of ``spec`` in ``mode`` in this process."""
        chosen = self.pick(spec, mode)
        if chosen is self.engine:
            raise Unavailable(f"runs of {spec.name} go to the {chosen.name} engine, not to this process")
        return chosen  # type: ignore[return-value]  # every other choice is an attempt executor

    def check(self, spec: ActionSpec, invoked: str, mode: Mode) -> AttemptExecutor | RunEngine:
        """The executor or engine of ``spec`` in ``mode``, once it has agreed to run ``invoked`` (else 422)."""
        chosen = self.pick(spec, mode)
        chosen.check(spec, invoked)
        return chosen

    def prepare(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        """Let the executors of both modes make what ``spec`` needs (at registration; a refusal stores
        nothing). An executor's optional ``vet(project_id, spec)`` refuses before any of them makes anything.
        A run engine makes its definition for ``environment`` (each has its own task role)."""
        chosen = [self._chosen(spec, mode) for mode in (Mode.SYNC, Mode.ASYNC)]
        unique = list(dict.fromkeys(executor for executor in chosen if executor is not None))
        for executor in unique:
            # checks that make nothing (the AWS engines' image probe) go first: a refusal by the
            # engine of runs leaves no function behind that the one of sync calls made already
            vet = getattr(executor, "vet", None)
            if vet is not None:
                vet(project_id, spec)
        for executor in unique:
            if executor is self.engine:
                self.engine.prepare(project_id, spec, environment)
            else:
                executor.prepare(project_id, spec)  # type: ignore[call-arg]

    def release(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        """Let the executors of both modes remove what they made for a deleted version (a function, a
        job or task definition). Each is asked even when another fails; the first failure is raised."""
        chosen = [self._chosen(spec, mode) for mode in (Mode.SYNC, Mode.ASYNC)]
        failure: Exception | None = None
        for executor in dict.fromkeys(executor for executor in chosen if executor is not None):
            try:
                if executor is self.engine:
                    self.engine.release(project_id, spec, environment)
                else:
                    executor.release(project_id, spec)  # type: ignore[call-arg]
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def release_step(self, project_id: str, environment: str, action_name: str, spec: ActionSpec) -> None:
        """Let the executor of a deleted pipeline's container step (``spec``, its inline action) remove
        what its runs left on it (a Docker engine's setup image); executors that keep nothing have no
        ``release_step``."""
        release = getattr(self._chosen(spec, Mode.ASYNC), "release_step", None)
        if release is not None:
            release(project_id, environment, action_name)

    def engine_named(self, name: str) -> RunEngine:
        """The run engine ``name`` (the deployment may have moved from Batch to ECS with runs still
        held by the other): today's engine when it is that one, else one made for the purpose."""
        if self.engine is not None and self.engine.name == name:
            return self.engine
        if name not in self._made:
            if name not in self._engines:
                raise ValidationFailed.at(["engine"], f"this gateway has no {name} engine", "executor_unavailable")
            self._made[name] = self._engines[name]()
        return self._made[name]

    def _all(self) -> list[AttemptExecutor]:
        """Every attempt executor, once."""
        found: list[AttemptExecutor] = []
        pairs = [(self.sync, self.run), *([self.images] if self.images else []), *self.named.values()]
        if self.http is not None:
            pairs.append((self.http, self.http))
        for pair in pairs:
            for executor in pair:
                if executor is not None and all(executor is not seen for seen in found):
                    found.append(executor)
        return found

    def describe(self) -> str:
        def pair(sync: AttemptExecutor | RunEngine | None, run: AttemptExecutor | RunEngine | None) -> str:
            sync_name = sync.name if sync is not None else "none"
            return sync_name if sync is run else f"{sync_name} (sync), {run.name if run else 'none'} (runs)"

        text = pair(self.sync, self.engine or self.run)
        if self.images is not None:
            text = f"{pair(*self.images)} for actions with an image, {text} for the others"
        if self.mode:
            text = f"{self.mode}: {text}"
        return text

    def sandboxes(self) -> list[Any]:
        """The sandboxes of executors that run host processes (each has ``refusal``, ``describe``, ``reach``)."""
        return [executor.sandbox for executor in self._all() if hasattr(executor, "sandbox")]

    def recover(self) -> int:
        """Clean up after a crashed gateway (each attempt executor once; engines leave nothing here)."""
        return sum(executor.recover() for executor in self._all())

    def close(self) -> None:
        for executor in self._all():
            executor.close()
        engines: list[RunEngine] = [*([self.engine] if self.engine else []), *self._made.values()]
        for engine in dict.fromkeys(engines):
            engine.close()
