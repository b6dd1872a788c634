"""Where actions run: host processes, Docker, Lambda, Batch, ECS.

The contract they share (invocation, outcome, verdict) is :mod:`hatchway.domain.attempts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.domain.runs import Mode
    from hatchway.domain.spec import ActionSpec
    from hatchway.executors.base import BaseExecutor


def action_executor(spec: ActionSpec) -> str | None:
    """The executor an action asks for in its metadata (``"executor": "docker"``), if any."""
    choice = spec.metadata.get("executor")
    return choice if isinstance(choice, str) else None


def has_image(spec: ActionSpec) -> bool:
    return bool(spec.image_uri or spec.docker_config)


class Executors:
    """Which executor runs what: sync calls and async runs may go to different places
    (on AWS a container Lambda answers sync calls while Batch runs the queue).

    HTTP actions always go to ``http``. ``named`` maps executor names to (sync, run) pairs an
    action may ask for in ``metadata.executor``; ``images`` is the pair for actions that have an
    image when the choice is automatic (``hatchway serve`` with a Docker engine).
    """

    def __init__(
        self,
        sync: BaseExecutor,
        run: BaseExecutor | None = None,
        http: BaseExecutor | None = None,
        *,
        images: tuple[BaseExecutor, BaseExecutor] | None = None,
        named: dict[str, tuple[BaseExecutor, BaseExecutor]] | None = None,
        mode: str | None = None,
    ) -> None:
        self.sync = sync
        self.run = run or sync
        self.http = http
        self.images = images
        self.named = named or {}
        self.mode = mode

    def _pair(self, spec: ActionSpec) -> tuple[BaseExecutor, BaseExecutor]:
        wanted = action_executor(spec)
        if wanted is not None and wanted not in self.named and wanted == self.sync.name:
            return self.sync, self.run
        if wanted is not None:
            if wanted not in self.named:
                from hatchway.errors import ValidationFailed

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

    def pick(self, spec: ActionSpec, mode: Mode) -> BaseExecutor:
        from hatchway.domain.runs import Mode

        if spec.http is not None:
            if self.http is None:
                from hatchway.executors.http import HttpExecutor

                self.http = HttpExecutor()
            return self.http
        sync, run = self._pair(spec)
        return sync if mode == Mode.SYNC else run

    def _all(self) -> list[BaseExecutor]:
        found: list[BaseExecutor] = []
        pairs = [(self.sync, self.run), *([self.images] if self.images else []), *self.named.values()]
        if self.http is not None:
            pairs.append((self.http, self.http))
        for pair in pairs:
            for executor in pair:
                if all(executor is not seen for seen in found):
                    found.append(executor)
        return found

    def describe(self) -> str:
        def pair(sync: BaseExecutor, run: BaseExecutor) -> str:
            return sync.name if sync is run else f"{sync.name} (sync), {run.name} (runs)"

        text = pair(self.sync, self.run)
        if self.images is not None:
            text = f"{pair(*self.images)} for actions with an image, {text} for the others"
        if self.mode:
            text = f"{self.mode}: {text}"
        return text

    def sandboxes(self) -> list[Any]:
        """The sandboxes of executors that run host processes (:class:`hatchway.executors.sandbox.Sandbox`)."""
        return [executor.sandbox for executor in self._all() if hasattr(executor, "sandbox")]

    def recover(self) -> int:
        """Clean up after a crashed gateway (each executor once)."""
        return sum(executor.recover() for executor in self._all())

    def close(self) -> None:
        for executor in self._all():
            executor.close()
