"""The pipeline repository's contract: definition versions and executions, on every backend of
the ``repos`` fixture (``conftest.py``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from hatchway.domain.pipelines.records import Execution, ExecutionStatus, StepState, StepStatus, new_execution_id
from hatchway.errors import Conflict, NotFound, ValidationFailed
from hatchway.store.pipelines import BasePipelineRepo

SPEC: dict[str, Any] = {"name": "etl", "steps": [{"name": "a", "action": "x"}]}


def execution(pipeline: str = "etl", project: str = "proj_a", environment: str = "dev") -> Execution:
    return Execution(
        new_execution_id(), project, environment, pipeline, 1, variables={"K": "v"},
        steps=[StepState("a"), StepState("b")], created_at=1,
    )  # fmt: skip


def test_definitions_are_versioned_and_identical_ones_are_no_ops(pipelines: BasePipelineRepo) -> None:
    first, created = pipelines.register_pipeline("proj_a", "dev", "etl", SPEC, "sha256:1", "arn:one")
    assert created and first.version == 1 and first.engine_ref == "arn:one"
    same, created = pipelines.register_pipeline("proj_a", "dev", "etl", SPEC, "sha256:1")
    assert not created and same.version == 1
    second, created = pipelines.register_pipeline("proj_a", "dev", "etl", {**SPEC, "description": "x"}, "sha256:2")
    assert created and second.version == 2
    latest = pipelines.get_pipeline("proj_a", "dev", "etl")
    assert latest is not None and latest.version == 2 and latest.spec["description"] == "x"
    old = pipelines.get_pipeline("proj_a", "dev", "etl", version=1)
    assert old is not None and old.spec == SPEC
    assert pipelines.get_pipeline("proj_a", "prod", "etl") is None
    assert pipelines.get_pipeline("proj_b", "dev", "etl") is None


def test_delete_hides_a_pipeline_but_keeps_its_versions(pipelines: BasePipelineRepo) -> None:
    pipelines.register_pipeline("proj_a", "dev", "etl", SPEC, "sha256:1")
    assert pipelines.delete_pipeline("proj_a", "dev", "etl")
    assert not pipelines.delete_pipeline("proj_a", "dev", "etl")
    assert pipelines.get_pipeline("proj_a", "dev", "etl") is None
    kept = pipelines.get_pipeline("proj_a", "dev", "etl", 1, include_deleted=True)
    assert kept is not None and kept.version == 1
    again, created = pipelines.register_pipeline("proj_a", "dev", "etl", SPEC, "sha256:1")
    assert created and again.version == 2


def test_concurrent_definitions_get_distinct_versions(pipelines: BasePipelineRepo) -> None:
    versions: list[int] = []

    def define(index: int) -> None:
        record, _ = pipelines.register_pipeline("proj_a", "dev", "etl", SPEC, f"sha256:{index}")
        versions.append(record.version)

    threads = [threading.Thread(target=define, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


def test_pipelines_list_by_name_in_pages(pipelines: BasePipelineRepo) -> None:
    for name in ("c", "a", "b"):
        pipelines.register_pipeline("proj_a", "dev", name, {**SPEC, "name": name}, "sha256:1")
    pipelines.register_pipeline("proj_a", "prod", "z", SPEC, "sha256:1")
    first = pipelines.list_pipelines("proj_a", "dev", 2, None)
    assert [r.name for r in first.items] == ["a", "b"] and first.next
    rest = pipelines.list_pipelines("proj_a", "dev", 2, first.next)
    assert [r.name for r in rest.items] == ["c"] and rest.next is None
    with pytest.raises(ValidationFailed):
        pipelines.list_pipelines("proj_a", "prod", 2, first.next)


def test_executions_change_with_compare_and_set(pipelines: BasePipelineRepo) -> None:
    created = pipelines.create_execution(execution())
    with pytest.raises(Conflict):
        pipelines.create_execution(created)

    def start(current: Execution) -> Execution:
        current.status = ExecutionStatus.INPROGRESS
        current.step("a").status = StepStatus.INPROGRESS
        current.step("a").run_id = "run_1"
        return current

    started = pipelines.update_execution(created.id, start)
    stored = pipelines.get_execution(created.id)
    assert stored == started and stored.step("a").run_id == "run_1"
    assert pipelines.update_execution(created.id, lambda current: None) == started
    assert pipelines.get_execution(created.id, "proj_b") is None
    assert pipelines.get_execution(created.id, "proj_a", "prod") is None
    with pytest.raises(NotFound):
        pipelines.update_execution("pex_missing", start)


def test_concurrent_changes_to_an_execution_are_all_kept(pipelines: BasePipelineRepo) -> None:
    created = pipelines.create_execution(execution())

    def bump(current: Execution) -> Execution:
        current.step("a").attempt += 1
        return current

    threads = [threading.Thread(target=pipelines.update_execution, args=(created.id, bump)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = pipelines.get_execution(created.id)
    assert final is not None and final.step("a").attempt == 8


def test_executions_list_newest_first_by_pipeline_and_status(pipelines: BasePipelineRepo) -> None:
    ids = []
    for index in range(3):
        made = execution("etl" if index < 2 else "other")
        if index == 1:
            made.status = ExecutionStatus.FAILED
        ids.append(pipelines.create_execution(made).id)
    pipelines.create_execution(execution(environment="prod"))
    assert [e.id for e in pipelines.list_executions("proj_a", "dev", "etl", 10, None).items] == [ids[1], ids[0]]
    failed = pipelines.list_executions("proj_a", "dev", "etl", 10, None, "FAILED").items
    assert [e.id for e in failed] == [ids[1]]
    page = pipelines.list_executions("proj_a", "dev", None, 2, None)
    assert [e.id for e in page.items] == [ids[2], ids[1]] and page.next
    assert [e.id for e in pipelines.list_executions("proj_a", "dev", None, 2, page.next).items] == [ids[0]]


def test_active_executions_are_those_not_ended_of_one_engine(pipelines: BasePipelineRepo) -> None:
    running = pipelines.create_execution(execution())
    ended = execution()
    ended.status = ExecutionStatus.SUCCESSFUL
    pipelines.create_execution(ended)
    elsewhere = execution()
    elsewhere.engine = "stepfunctions"
    pipelines.create_execution(elsewhere)
    assert [e.id for e in pipelines.active_executions("local")] == [running.id]

    def finish(current: Execution) -> Execution:
        current.status = ExecutionStatus.TERMINATED
        return current

    pipelines.update_execution(running.id, finish)
    assert pipelines.active_executions("local") == []
