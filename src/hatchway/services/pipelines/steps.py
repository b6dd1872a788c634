"""A pipeline's inline steps as actions: ``pipeline:<pipeline>/<step>`` resolves to the action a
"Run Docker container" step describes, so its runs are ordinary runs of a derived action."""

from __future__ import annotations

from hatchway.domain.actions import ActionRecord, Resolved
from hatchway.domain.pipelines import inline
from hatchway.domain.pipelines.spec import StepType, spec_of
from hatchway.errors import NotFound
from hatchway.ports import PipelineRepo


class InlineActions:
    """The :class:`~hatchway.ports.ActionSource` of the ``pipeline`` prefix."""

    def __init__(self, repo: PipelineRepo) -> None:
        self.repo = repo

    def resolve(
        self, project_id: str, environment: str, name: str, version: int | None, digest: str | None
    ) -> Resolved:
        parsed = inline.parse_action_name(name)
        if parsed is None:
            raise NotFound(f"no action {name}")
        pipeline, step_name = parsed
        record = self.repo.get_pipeline(project_id, environment, pipeline, version, include_deleted=True)
        spec = spec_of(record) if record else None
        step = spec.step(step_name) if spec else None
        if record is None or spec is None or step is None or step.kind != StepType.RUN_DOCKER_CONTAINER:
            raise NotFound(f"no action {name}")
        action = inline.inline_spec(spec, step)
        action_digest = action.digest()
        if digest is not None and digest != action_digest:
            raise NotFound(f"no action {name} with digest {digest}")
        normal = action.normalised()
        return Resolved(
            ActionRecord(project_id, environment, name, record.version, action_digest, record.created_at, normal),
            action,
        )
