"""Which executor runs what: sync calls and async runs may go to different places (on AWS a
container Lambda answers sync calls while Batch runs the queue).

:class:`Placement` is built by :func:`hatchway.wiring.build_placement` from the settings. HTTP
actions always go to ``http``. ``named`` maps executor names to (sync, run) pairs an action may ask
for in ``metadata.executor``; ``images`` is the pair for actions that have an image when the choice
is automatic (``hatchway serve`` with a Docker engine). ``engines`` makes the run engines by name
(Batch, ECS) for runs an engine other than today's holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from hatchway.domain.runs import Mode, Run, StateChange
from hatchway.domain.spec import ActionSpec, has_image
from hatchway.errors import ValidationFailed
from hatchway.ports import AttemptExecutor


class Executor(AttemptExecutor, Protocol):
    """An executor as the gateway has them today: local ones run attempts; remote ones
    (``is_remote``: Batch, ECS) submit whole runs to their engine (redesign step C2 splits the two
    into :class:`~hatchway.ports.AttemptExecutor` and :class:`~hatchway.ports.RunEngine`)."""

    is_remote: bool

    def submit(self, run: Run, spec: ActionSpec) -> str: ...

    def terminate(self, run: Run, reason: str) -> None: ...


class Engine(Executor, Protocol):
    """A remote executor, as the state-change events and the sweeper use it."""

    def describe(self, external_ids: list[str]) -> dict[str, StateChange | None]: ...

    def lost(self, run_id: str, external_id: str) -> StateChange: ...


def action_executor(spec: ActionSpec) -> str | None:
    """The executor an action asks for in its metadata (``"executor": "docker"``), if any."""
    choice = spec.metadata.get("executor")
    return choice if isinstance(choice, str) else None


class Placement:
    """Picks the executor of each call and run, and speaks for all of them (recover, close)."""

    def __init__(
        self,
        sync: Executor,
        run: Executor | None = None,
        http: Executor | None = None,
        *,
        images: tuple[Executor, Executor] | None = None,
        named: Mapping[str, tuple[Executor, Executor]] | None = None,
        mode: str | None = None,
        engines: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        self.sync = sync
        self.run = run or sync
        self.http = http
        self.images = images
        self.named = dict(named or {})
        self.mode = mode
        self._engines = dict(engines or {})
        self._made: dict[str, Engine] = {}

    def _pair(self, spec: ActionSpec) -> tuple[Executor, Executor]:
        wanted = action_executor(spec)
        if wanted is not None and wanted not in self.named and wanted == self.sync.name:
            return self.sync, self.run
        if wanted is not None:
            if wanted not in self.named:
                offered = ", ".join(self.named) or self.sync.name
                raise ValidationFailed.at(
                    ["body", "metadata", "executor"],
                    f"this gateway cannot run actions with the {wanted} executor (it offers: {offered})",
                    "executor_unavailable",
                )
            return self.named[wanted]
        if self.images is not None and has_image(spec):
            return self.images
        return self.sync, self.run

    def pick(self, spec: ActionSpec, mode: Mode) -> Executor:
        if spec.http is not None:
            if self.http is None:
                raise ValidationFailed.at(["body", "http"], "this gateway runs no HTTP actions", "executor_unavailable")
            return self.http
        sync, run = self._pair(spec)
        return sync if mode == Mode.SYNC else run

    def check(self, spec: ActionSpec, invoked: str, mode: Mode) -> Executor:
        """The executor of ``spec`` in ``mode``, once it has agreed to run ``invoked`` (else 422)."""
        executor = self.pick(spec, mode)
        executor.check(spec, invoked)
        return executor

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        """Let the executors of both modes make what ``spec`` needs (at registration; a refusal stores nothing)."""
        for executor in dict.fromkeys(self.pick(spec, mode) for mode in (Mode.SYNC, Mode.ASYNC)):
            executor.prepare(project_id, spec)

    def engine_named(self, name: str) -> Engine:
        """The run engine ``name`` (the deployment may have moved from Batch to ECS with runs still
        held by the other): today's run executor when it is that one, else one made for the purpose."""
        if self.run.name == name:
            return self.run  # type: ignore[return-value]
        if name not in self._made:
            if name not in self._engines:
                raise ValidationFailed.at(["engine"], f"this gateway has no {name} engine", "executor_unavailable")
            self._made[name] = self._engines[name]()
        return self._made[name]

    def _all(self) -> list[Executor]:
        found: list[Executor] = []
        pairs = [(self.sync, self.run), *([self.images] if self.images else []), *self.named.values()]
        if self.http is not None:
            pairs.append((self.http, self.http))
        for pair in pairs:
            for executor in [*pair]:
                if all(executor is not seen for seen in found):
                    found.append(executor)
        return found

    def describe(self) -> str:
        def pair(sync: Executor, run: Executor) -> str:
            return sync.name if sync is run else f"{sync.name} (sync), {run.name} (runs)"

        text = pair(self.sync, self.run)
        if self.images is not None:
            text = f"{pair(*self.images)} for actions with an image, {text} for the others"
        if self.mode:
            text = f"{self.mode}: {text}"
        return text

    def sandboxes(self) -> list[Any]:
        """The sandboxes of executors that run host processes (each has ``refusal``, ``describe``, ``reach``)."""
        return [executor.sandbox for executor in self._all() if hasattr(executor, "sandbox")]

    def recover(self) -> int:
        """Clean up after a crashed gateway (each executor once)."""
        return sum(executor.recover() for executor in self._all())

    def close(self) -> None:
        for executor in [*self._all(), *self._made.values()]:
            executor.close()
