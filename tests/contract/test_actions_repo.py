"""The action repository's contract: versions behind a head, digests, deletion, pages and cursors.

Each test runs once per backend of the ``repos`` fixture (``conftest.py``); nothing here knows which.
"""

from __future__ import annotations

import pytest

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.domain.runs import now_ms
from hatchway.domain.spec import digest_of
from hatchway.errors import NotFound, ValidationFailed
from hatchway.store.actions import BaseActionRepo
from hatchway.store.runs import BaseRunRepo
from tests.contract.records import DEV, PROD, P, Q, in_threads, register, spec


def test_registration_numbers_versions_and_identical_specs_are_no_ops(actions: BaseActionRepo) -> None:
    v1, created = register(actions, spec("act"))
    assert (v1.version, created) == (1, True)
    again, created = register(actions, spec("act"))
    assert (again.version, again.digest, created) == (1, v1.digest, False)
    v2, created = register(actions, spec("act", description="changed"))
    assert (v2.version, created) == (2, True)
    # going back to the first content is a change from the latest, so a new version
    v3, created = register(actions, spec("act"))
    assert (v3.version, v3.digest, created) == (3, v1.digest, True)
    assert v3.spec == spec("act")


def test_get_action_by_latest_version_and_digest(actions: BaseActionRepo) -> None:
    v1, _ = register(actions, spec("act"))
    v2, _ = register(actions, spec("act", description="two"))
    assert actions.get_action(P, DEV, "act") == v2
    assert actions.get_action(P, DEV, "act", version=1) == v1
    assert actions.get_action(P, DEV, "act", digest=v1.digest) == v1
    assert actions.get_action(P, DEV, "act", version=1, digest=v1.digest) == v1
    assert actions.get_action(P, DEV, "act", version=2, digest=v1.digest) is None
    assert actions.get_action(P, DEV, "act", version=9) is None
    assert actions.get_action(P, DEV, "act", digest="sha256:" + "f" * 64) is None
    assert actions.get_action(P, DEV, "missing") is None
    # the digest finds the newest version with that content
    v3, _ = register(actions, spec("act"))
    assert actions.get_action(P, DEV, "act", digest=v1.digest) == v3


def test_actions_are_isolated_by_project_and_environment(actions: BaseActionRepo) -> None:
    register(actions, spec("act"))
    assert actions.get_action(Q, DEV, "act") is None
    assert actions.get_action(P, PROD, "act") is None
    other, created = register(actions, spec("act", description="prod"), env=PROD)
    assert (other.version, created) == (1, True)
    assert actions.list_actions(Q, DEV, 50, None).items == []


def test_delete_hides_the_action_but_keeps_its_versions(actions: BaseActionRepo) -> None:
    v1, _ = register(actions, spec("act"))
    assert actions.delete_action(P, DEV, "act") is True
    assert actions.delete_action(P, DEV, "act") is False
    assert actions.delete_action(P, DEV, "missing") is False
    assert actions.get_action(P, DEV, "act") is None
    assert actions.list_actions(P, DEV, 50, None).items == []
    with pytest.raises(NotFound):
        actions.list_versions(P, DEV, "act", 50, None)
    # runs of a deleted action still resolve their version
    assert actions.get_action(P, DEV, "act", version=1, include_deleted=True) == v1
    # registering again continues the numbering and shows the action again
    again, created = register(actions, spec("act"))
    assert (again.version, created) == (2, True)
    assert [r.name for r in actions.list_actions(P, DEV, 50, None).items] == ["act"]


def test_concurrent_registrations_get_distinct_versions(actions: BaseActionRepo) -> None:
    results = in_threads(6, lambda i: register(actions, spec("race", description=f"variant {i}")))
    assert not [r for r in results if isinstance(r, Exception)], results
    versions = sorted(record.version for record, created in results)
    assert versions == [1, 2, 3, 4, 5, 6]
    assert actions.get_action(P, DEV, "race").version == 6  # type: ignore[union-attr]


def test_a_stale_head_cannot_move(actions: BaseActionRepo) -> None:
    register(actions, spec("act"))
    document = spec("act", description="late")
    record = ActionRecord(P, DEV, "act", 2, digest_of(document), now_ms(), document)
    head = ActionHead(P, DEV, "act", 2, [], False)
    assert actions._put_version(record, head, expected_latest=None) is False  # the head exists
    assert actions._put_version(record, head, expected_latest=7) is False  # not the latest
    assert actions._put_version(record, head, expected_latest=1) is True
    assert actions.get_action(P, DEV, "act").version == 2  # type: ignore[union-attr]


def test_list_actions_pages_by_name_and_filters_by_tag(actions: BaseActionRepo) -> None:
    for name in ("delta", "alpha", "echo", "charlie", "bravo"):
        register(actions, spec(name, tags=["etl"] if name in ("alpha", "charlie", "echo") else ["ui"]))
    first = actions.list_actions(P, DEV, 2, None)
    assert [r.name for r in first.items] == ["alpha", "bravo"]
    second = actions.list_actions(P, DEV, 2, first.next)
    assert [r.name for r in second.items] == ["charlie", "delta"]
    third = actions.list_actions(P, DEV, 2, second.next)
    assert [r.name for r in third.items] == ["echo"]
    assert third.next is None
    assert actions.list_actions(P, DEV, 5, None).next is None

    tagged = actions.list_actions(P, DEV, 2, None, tag="etl")
    assert [r.name for r in tagged.items] == ["alpha", "charlie"]
    rest = actions.list_actions(P, DEV, 2, tagged.next, tag="etl")
    assert [r.name for r in rest.items] == ["echo"] and rest.next is None
    assert actions.list_actions(P, DEV, 10, None, tag="nothing").items == []
    # the page shows the latest version
    register(actions, spec("alpha", tags=["etl"], description="v2"))
    assert actions.list_actions(P, DEV, 1, None).items[0].version == 2


def test_cursors_are_refused_by_other_lists_and_tenants(actions: BaseActionRepo, runs: BaseRunRepo) -> None:
    for name in ("a1", "a2", "a3"):
        register(actions, spec(name, tags=["t"]))
    cursor = actions.list_actions(P, DEV, 1, None).next
    assert cursor is not None
    for attempt in (
        lambda: actions.list_actions(Q, DEV, 1, cursor),
        lambda: actions.list_actions(P, PROD, 1, cursor),
        lambda: actions.list_actions(P, DEV, 1, cursor, tag="t"),
        lambda: runs.list_runs(P, DEV, 1, cursor),
        lambda: actions.list_actions(P, DEV, 1, "not-a-cursor!"),
        lambda: actions.list_actions(P, DEV, 1, "eyJ4IjoxfQ"),
    ):
        with pytest.raises(ValidationFailed):
            attempt()


def test_list_versions_newest_first_in_pages(actions: BaseActionRepo) -> None:
    for index in range(5):
        register(actions, spec("act", description=str(index)))
    first = actions.list_versions(P, DEV, "act", 2, None)
    assert [r.version for r in first.items] == [5, 4]
    second = actions.list_versions(P, DEV, "act", 2, first.next)
    assert [r.version for r in second.items] == [3, 2]
    last = actions.list_versions(P, DEV, "act", 2, second.next)
    assert [r.version for r in last.items] == [1] and last.next is None
    register(actions, spec("other"))
    with pytest.raises(ValidationFailed):
        actions.list_versions(P, DEV, "other", 2, first.next)
    with pytest.raises(NotFound):
        actions.list_versions(P, DEV, "missing", 2, None)
