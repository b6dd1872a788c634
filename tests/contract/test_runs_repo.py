"""The store contract: every rule of ``store/runs.py``, the same for every backend.

Each test runs once per backend of the ``store`` fixture (SQLite, DynamoDB on moto, DynamoDB on
LocalStack when ``LOCALSTACK_ENDPOINT`` is set). Nothing here knows which backend it talks to.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.domain.runs import (
    SYNC_GATEWAY_LOST,
    LogEntry,
    Mode,
    Run,
    RunError,
    RunStatus,
    new_run_id,
    now_ms,
    preview,
)
from hatchway.domain.spec import digest_of
from hatchway.domain.tenants import Project, TokenRecord
from hatchway.errors import Conflict, NotFound, TransitionConflict, ValidationFailed
from hatchway.store.flat import SingleStore
from hatchway.store.runs import Due
from tests.helpers import wait_until

P, Q = "proj_one", "proj_two"
DEV, PROD = "development", "production"


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "container_parameters": {"command": ["true"]}, **extra}


def register(
    store: SingleStore, document: dict[str, Any], project: str = P, env: str = DEV
) -> tuple[ActionRecord, bool]:
    return store.register_version(project, env, document, digest_of(document))


def make_run(project: str = P, env: str = DEV, **fields: Any) -> Run:
    now = now_ms()
    base: dict[str, Any] = {
        "id": new_run_id(),
        "project_id": project,
        "environment": env,
        "action_name": "act",
        "action_version": 1,
        "action_digest": "sha256:" + "0" * 64,
        "created_at": now,
        "available_at": now,
    }
    base.update(fields)
    return Run(**base)


def in_threads(count: int, target: Any) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads released together; their results (or exceptions)."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def body(index: int) -> None:
        barrier.wait()
        try:
            results[index] = target(index)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# ---------------------------------------------------------------------------------------------
# projects and tokens


def test_projects_are_created_once(store: SingleStore) -> None:
    created = store.create_project(Project(P, "one", 1000))
    assert store.get_project(P) == created
    with pytest.raises(Conflict):
        store.create_project(Project(P, "again", 2000))
    # ensure_project keeps the first one
    assert store.ensure_project(Project(P, "other", 3000)) == Project(P, "one", 1000)
    assert store.get_project("proj_missing") is None


def test_tokens_round_trip_and_stay_in_their_project(store: SingleStore) -> None:
    first = TokenRecord("tok_a", P, "hash-a", ["runs:read"], None, 1000, expires_at=99_000, name="ci")
    second = TokenRecord("tok_b", P, "hash-b", ["admin"], ["development"], 2000)
    other = TokenRecord("tok_c", Q, "hash-c", ["admin"], [], 1500)
    for token in (second, other, first):
        store.put_token(token)
    assert store.get_token("tok_a") == first
    assert store.get_token("tok_c") == other  # an empty environment list is not "all environments"
    assert [t.id for t in store.list_tokens(P)] == ["tok_a", "tok_b"]
    assert store.get_token("tok_missing") is None

    store.touch_token("tok_a", 5000)
    assert store.get_token("tok_a").last_used_at == 5000  # type: ignore[union-attr]
    store.touch_token("tok_missing", 5000)
    assert store.get_token("tok_missing") is None

    # revoking needs the token's own project
    assert store.delete_token(Q, "tok_a") is False
    assert store.get_token("tok_a") is not None
    assert store.delete_token(P, "tok_a") is True
    assert store.delete_token(P, "tok_a") is False
    assert store.get_token("tok_a") is None
    assert [t.id for t in store.list_tokens(P)] == ["tok_b"]


# ---------------------------------------------------------------------------------------------
# actions and versions


def test_registration_numbers_versions_and_identical_specs_are_no_ops(store: SingleStore) -> None:
    v1, created = register(store, spec("act"))
    assert (v1.version, created) == (1, True)
    again, created = register(store, spec("act"))
    assert (again.version, again.digest, created) == (1, v1.digest, False)
    v2, created = register(store, spec("act", description="changed"))
    assert (v2.version, created) == (2, True)
    # going back to the first content is a change from the latest, so a new version
    v3, created = register(store, spec("act"))
    assert (v3.version, v3.digest, created) == (3, v1.digest, True)
    assert v3.spec == spec("act")


def test_get_action_by_latest_version_and_digest(store: SingleStore) -> None:
    v1, _ = register(store, spec("act"))
    v2, _ = register(store, spec("act", description="two"))
    assert store.get_action(P, DEV, "act") == v2
    assert store.get_action(P, DEV, "act", version=1) == v1
    assert store.get_action(P, DEV, "act", digest=v1.digest) == v1
    assert store.get_action(P, DEV, "act", version=1, digest=v1.digest) == v1
    assert store.get_action(P, DEV, "act", version=2, digest=v1.digest) is None
    assert store.get_action(P, DEV, "act", version=9) is None
    assert store.get_action(P, DEV, "act", digest="sha256:" + "f" * 64) is None
    assert store.get_action(P, DEV, "missing") is None
    # the digest finds the newest version with that content
    v3, _ = register(store, spec("act"))
    assert store.get_action(P, DEV, "act", digest=v1.digest) == v3


def test_actions_are_isolated_by_project_and_environment(store: SingleStore) -> None:
    register(store, spec("act"))
    assert store.get_action(Q, DEV, "act") is None
    assert store.get_action(P, PROD, "act") is None
    other, created = register(store, spec("act", description="prod"), env=PROD)
    assert (other.version, created) == (1, True)
    assert store.list_actions(Q, DEV, 50, None).items == []


def test_delete_hides_the_action_but_keeps_its_versions(store: SingleStore) -> None:
    v1, _ = register(store, spec("act"))
    assert store.delete_action(P, DEV, "act") is True
    assert store.delete_action(P, DEV, "act") is False
    assert store.delete_action(P, DEV, "missing") is False
    assert store.get_action(P, DEV, "act") is None
    assert store.list_actions(P, DEV, 50, None).items == []
    with pytest.raises(NotFound):
        store.list_versions(P, DEV, "act", 50, None)
    # runs of a deleted action still resolve their version
    assert store.get_action(P, DEV, "act", version=1, include_deleted=True) == v1
    # registering again continues the numbering and shows the action again
    again, created = register(store, spec("act"))
    assert (again.version, created) == (2, True)
    assert [r.name for r in store.list_actions(P, DEV, 50, None).items] == ["act"]


def test_concurrent_registrations_get_distinct_versions(store: SingleStore) -> None:
    results = in_threads(6, lambda i: register(store, spec("race", description=f"variant {i}")))
    assert not [r for r in results if isinstance(r, Exception)], results
    versions = sorted(record.version for record, created in results)
    assert versions == [1, 2, 3, 4, 5, 6]
    assert store.get_action(P, DEV, "race").version == 6  # type: ignore[union-attr]


def test_a_stale_head_cannot_move(store: SingleStore) -> None:
    register(store, spec("act"))
    document = spec("act", description="late")
    record = ActionRecord(P, DEV, "act", 2, digest_of(document), now_ms(), document)
    head = ActionHead(P, DEV, "act", 2, [], False)
    assert store.actions._put_version(record, head, expected_latest=None) is False  # the head exists
    assert store.actions._put_version(record, head, expected_latest=7) is False  # not the latest
    assert store.actions._put_version(record, head, expected_latest=1) is True
    assert store.get_action(P, DEV, "act").version == 2  # type: ignore[union-attr]


def test_list_actions_pages_by_name_and_filters_by_tag(store: SingleStore) -> None:
    for name in ("delta", "alpha", "echo", "charlie", "bravo"):
        register(store, spec(name, tags=["etl"] if name in ("alpha", "charlie", "echo") else ["ui"]))
    first = store.list_actions(P, DEV, 2, None)
    assert [r.name for r in first.items] == ["alpha", "bravo"]
    second = store.list_actions(P, DEV, 2, first.next)
    assert [r.name for r in second.items] == ["charlie", "delta"]
    third = store.list_actions(P, DEV, 2, second.next)
    assert [r.name for r in third.items] == ["echo"]
    assert third.next is None
    assert store.list_actions(P, DEV, 5, None).next is None

    tagged = store.list_actions(P, DEV, 2, None, tag="etl")
    assert [r.name for r in tagged.items] == ["alpha", "charlie"]
    rest = store.list_actions(P, DEV, 2, tagged.next, tag="etl")
    assert [r.name for r in rest.items] == ["echo"] and rest.next is None
    assert store.list_actions(P, DEV, 10, None, tag="nothing").items == []
    # the page shows the latest version
    register(store, spec("alpha", tags=["etl"], description="v2"))
    assert store.list_actions(P, DEV, 1, None).items[0].version == 2


def test_cursors_are_refused_by_other_lists_and_tenants(store: SingleStore) -> None:
    for name in ("a1", "a2", "a3"):
        register(store, spec(name, tags=["t"]))
    cursor = store.list_actions(P, DEV, 1, None).next
    assert cursor is not None
    for attempt in (
        lambda: store.list_actions(Q, DEV, 1, cursor),
        lambda: store.list_actions(P, PROD, 1, cursor),
        lambda: store.list_actions(P, DEV, 1, cursor, tag="t"),
        lambda: store.list_runs(P, DEV, 1, cursor),
        lambda: store.list_actions(P, DEV, 1, "not-a-cursor!"),
        lambda: store.list_actions(P, DEV, 1, "eyJ4IjoxfQ"),
    ):
        with pytest.raises(ValidationFailed):
            attempt()


def test_list_versions_newest_first_in_pages(store: SingleStore) -> None:
    for index in range(5):
        register(store, spec("act", description=str(index)))
    first = store.list_versions(P, DEV, "act", 2, None)
    assert [r.version for r in first.items] == [5, 4]
    second = store.list_versions(P, DEV, "act", 2, first.next)
    assert [r.version for r in second.items] == [3, 2]
    last = store.list_versions(P, DEV, "act", 2, second.next)
    assert [r.version for r in last.items] == [1] and last.next is None
    register(store, spec("other"))
    with pytest.raises(ValidationFailed):
        store.list_versions(P, DEV, "other", 2, first.next)
    with pytest.raises(NotFound):
        store.list_versions(P, DEV, "missing", 2, None)


# ---------------------------------------------------------------------------------------------
# runs


def test_a_run_round_trips_every_field(store: SingleStore) -> None:
    run = make_run(
        invoked="run",
        max_attempts=3,
        parameters={"a": "1", "#secret": "hwenc:v1:xyz"},
        ret={"nested": [1, 2.5, None, "ü"]},
        exports={"rows": 42},
        os=[LogEntry("stdout", 1, "hello", None, 1), LogEntry("stderr", 2, "bad", {"name": "E", "message": "m"}, 2)],
        error=RunError("application", "boom", "exc_1", 500),
        external_user_id="user-1",
        idempotency_key="key-1",
        timeout_seconds=60,
        retry_interval_seconds=1.5,
        options={"x": True},
        external_id="job-123",
    )
    store.create_run(run)
    assert store.get_run(run.id) == run
    with pytest.raises(Conflict):
        store.create_run(run)


def test_a_large_run_record_round_trips(store: SingleStore) -> None:
    # Given a result of several MiB (a sync action may answer up to 6 MiB)
    big = {"rows": ["x" * 1000 + str(i) for i in range(5000)]}
    run = make_run(status=RunStatus.INPROGRESS)
    store.create_run(run)
    # When it is written and then replaced again
    done = store.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, ret=big)
    assert done.ret == big
    # Then it reads back whole
    assert store.get_run(run.id).ret == big  # type: ignore[union-attr]


def test_runs_are_visible_only_to_their_tenant(store: SingleStore) -> None:
    run = make_run()
    store.create_run(run)
    assert store.get_run(run.id, P, DEV) == run
    assert store.get_run(run.id, Q, DEV) is None
    assert store.get_run(run.id, P, PROD) is None
    assert store.get_run("run_missing") is None
    assert store.list_runs(Q, DEV, 10, None).items == []
    assert store.list_runs(P, PROD, 10, None).items == []


def test_list_runs_newest_first_with_filters_and_pages(store: SingleStore) -> None:
    ids = []
    for index in range(7):
        run = make_run(
            action_name="even" if index % 2 == 0 else "odd",
            status=RunStatus.FAILED if index == 4 else RunStatus.ENQUEUED,
            external_user_id="u1" if index < 3 else None,
        )
        store.create_run(run)
        ids.append(run.id)
    newest_first = list(reversed(ids))
    first = store.list_runs(P, DEV, 3, None)
    assert [r.id for r in first.items] == newest_first[:3]
    second = store.list_runs(P, DEV, 3, first.next)
    assert [r.id for r in second.items] == newest_first[3:6]
    third = store.list_runs(P, DEV, 3, second.next)
    assert [r.id for r in third.items] == newest_first[6:] and third.next is None

    evens = store.list_runs(P, DEV, 2, None, {"action": "even"})
    assert [r.id for r in evens.items] == [ids[6], ids[4]]
    more = store.list_runs(P, DEV, 2, evens.next, {"action": "even"})
    assert [r.id for r in more.items] == [ids[2], ids[0]]
    assert [r.id for r in store.list_runs(P, DEV, 9, None, {"status": "FAILED"}).items] == [ids[4]]
    assert [r.id for r in store.list_runs(P, DEV, 9, None, {"external_user_id": "u1"}).items] == ids[2::-1]
    both = store.list_runs(P, DEV, 9, None, {"action": "odd", "external_user_id": "u1"})
    assert [r.id for r in both.items] == [ids[1]]
    # empty filters are no filters; a cursor is bound to its filters
    assert len(store.list_runs(P, DEV, 9, None, {"action": ""}).items) == 7
    with pytest.raises(ValidationFailed):
        store.list_runs(P, DEV, 2, evens.next, {"action": "odd"})
    with pytest.raises(ValidationFailed):
        store.list_runs(P, DEV, 2, evens.next)


def test_transitions_follow_the_table(store: SingleStore) -> None:
    run = make_run()
    store.create_run(run)
    started = store.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, started_at=5)
    assert (started.status, started.attempt, started.started_at) == (RunStatus.INPROGRESS, 1, 5)
    assert store.get_run(run.id) == started
    # the expected status is checked against the stored one
    with pytest.raises(TransitionConflict) as lost:
        store.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS)
    assert lost.value.actual == "INPROGRESS"
    # a transition outside the table is refused before anything is read
    with pytest.raises(ValueError):
        store.transition(run.id, RunStatus.INPROGRESS, RunStatus.INPROGRESS)
    with pytest.raises(ValueError):
        store.transition(run.id, RunStatus.SUCCESSFUL, RunStatus.FAILED)
    with pytest.raises(TransitionConflict) as missing:
        store.transition("run_missing", RunStatus.ENQUEUED, RunStatus.INPROGRESS)
    assert missing.value.actual is None
    done = store.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, ret={"ok": 1}, finished_at=9)
    assert store.get_run(run.id) == done
    # terminal is terminal
    for dst in (RunStatus.TERMINATING, RunStatus.FAILED, RunStatus.ENQUEUED):
        with pytest.raises(TransitionConflict):
            store.transition(run.id, RunStatus.INPROGRESS, dst)


def test_a_guard_sees_the_current_run(store: SingleStore) -> None:
    run = make_run()
    store.create_run(run)
    with pytest.raises(TransitionConflict):
        store.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, lambda r: r.attempt > 0)
    assert store.get_run(run.id).status == RunStatus.ENQUEUED  # type: ignore[union-attr]
    store.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, lambda r: r.attempt == 0)


def test_update_run_keeps_the_status_and_checks_it(store: SingleStore) -> None:
    run = make_run()
    store.create_run(run)
    updated = store.update_run(run.id, RunStatus.ENQUEUED, external_id="job-9", status_reason="queued remotely")
    assert store.get_run(run.id) == updated
    assert updated.status == RunStatus.ENQUEUED and updated.external_id == "job-9"
    with pytest.raises(TransitionConflict):
        store.update_run(run.id, RunStatus.INPROGRESS, status_reason="x")


def test_only_one_of_racing_transitions_wins(store: SingleStore) -> None:
    run = make_run(status=RunStatus.INPROGRESS)
    store.create_run(run)
    targets = [RunStatus.SUCCESSFUL, RunStatus.TERMINATING, RunStatus.FAILED, RunStatus.ENQUEUED] * 2

    def move(index: int) -> Run:
        return store.transition(run.id, RunStatus.INPROGRESS, targets[index], status_reason=f"by {index}")

    results = in_threads(len(targets), move)
    winners = [r for r in results if isinstance(r, Run)]
    assert len(winners) == 1, results
    assert all(isinstance(r, TransitionConflict) for r in results if not isinstance(r, Run))
    final = store.get_run(run.id)
    assert final is not None and (final.status, final.status_reason) == (winners[0].status, winners[0].status_reason)


def test_a_transition_from_a_known_revision_reads_nothing_and_never_undoes_a_later_change(
    store: SingleStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the run as it is now, read back: by a read, or from the answer of a write that lost (ALL_OLD)
    reads: list[str] = []
    read, replace_run = store.runs._get_run, store.runs._replace_run

    def replaced(run: Run, rev: int) -> tuple[bool, tuple[Run, int] | None]:
        written, current = replace_run(run, rev)
        reads.extend([run.id] if current is not None else [])
        return written, current

    monkeypatch.setattr(store.runs, "_get_run", lambda run_id: reads.append(run_id) or read(run_id))
    monkeypatch.setattr(store.runs, "_replace_run", replaced)
    sync = lambda **f: make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, attempt=1, lease_owner="gw", **f)  # noqa: E731
    # Given a run as it was created (revision 0), the end is written without reading it back
    run = store.create_run(sync(lease_until=now_ms() + 60_000))
    done = store.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(run, 0), ret={"ok": 1})
    assert reads == []
    assert store.get_run(run.id) == done and done.ret == {"ok": 1}
    reads.clear()
    # Given a run renewed since (a newer revision), the change is applied to the run as it is now
    renewed = store.create_run(sync(lease_until=now_ms() + 60_000))
    assert store.heartbeat(renewed.id, "gw", 120) == RunStatus.INPROGRESS
    store.transition(renewed.id, RunStatus.INPROGRESS, RunStatus.FAILED, known=(renewed, 0), status_reason="x")
    assert reads == [renewed.id]
    # Given a run cancelled since, the stale copy loses
    cancelled = store.create_run(sync())
    store.transition(cancelled.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)
    with pytest.raises(TransitionConflict):
        store.transition(cancelled.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(cancelled, 0))
    assert store.get_run(cancelled.id).status == RunStatus.TERMINATING  # type: ignore[union-attr]
    # and a guard that refuses the known copy is not bypassed
    guarded = store.create_run(sync())
    with pytest.raises(TransitionConflict):
        store.transition(guarded.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, lambda _: False, known=(guarded, 0))


# ---------------------------------------------------------------------------------------------
# the queue: claims, leases, sweeps


def test_claim_takes_the_oldest_ready_async_run(store: SingleStore) -> None:
    now = now_ms()
    later = make_run(available_at=now - 1000)
    oldest = make_run(available_at=now - 5000)
    future = make_run(available_at=now + 60_000)
    sync = make_run(mode=Mode.SYNC, available_at=now - 9000)
    remote = make_run(available_at=now - 9000, external_id="job-1")
    running = make_run(status=RunStatus.INPROGRESS, available_at=now - 9000)
    for run in (later, oldest, future, sync, remote, running):
        store.create_run(run)

    claimed = store.claim("worker-a", 30, now=now)
    assert claimed is not None and claimed.id == oldest.id
    assert (claimed.status, claimed.attempt, claimed.lease_owner) == (RunStatus.INPROGRESS, 1, "worker-a")
    assert claimed.lease_until == now + 30_000 and claimed.started_at == now
    assert store.get_run(oldest.id) == claimed
    second = store.claim("worker-b", 30, now=now)
    assert second is not None and second.id == later.id
    assert store.claim("worker-c", 30, now=now) is None
    # the future run becomes claimable when its time comes
    assert store.claim("worker-c", 30, now=now + 61_000).id == future.id  # type: ignore[union-attr]


def test_concurrent_claimers_never_share_a_run(store: SingleStore) -> None:
    runs = [make_run(available_at=now_ms() - 10_000 + i) for i in range(12)]
    for run in runs:
        store.create_run(run)

    def drain(index: int) -> list[str]:
        got = []
        while (claimed := store.claim(f"worker-{index}", 30)) is not None:
            got.append(claimed.id)
        return got

    results = in_threads(6, drain)
    assert not [r for r in results if isinstance(r, Exception)], results
    claimed = Counter(run_id for got in results for run_id in got)
    assert set(claimed) == {run.id for run in runs}
    assert max(claimed.values()) == 1
    assert all(store.get_run(run.id).attempt == 1 for run in runs)  # type: ignore[union-attr]


def test_heartbeats_belong_to_the_lease_owner(store: SingleStore) -> None:
    store.create_run(make_run())
    claimed = store.claim("owner", 5)
    assert claimed is not None
    assert store.heartbeat(claimed.id, "owner", 60) == RunStatus.INPROGRESS
    renewed = store.get_run(claimed.id)
    assert renewed is not None and renewed.lease_until is not None and renewed.lease_until > claimed.lease_until  # type: ignore[operator]
    assert store.heartbeat(claimed.id, "stranger", 60) is None
    # a cancel is seen through the heartbeat
    store.transition(claimed.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)
    assert store.heartbeat(claimed.id, "owner", 60) == RunStatus.TERMINATING
    store.transition(claimed.id, RunStatus.TERMINATING, RunStatus.TERMINATED, lease_owner=None, lease_until=None)
    assert store.heartbeat(claimed.id, "owner", 60) is None
    assert store.heartbeat("run_missing", "owner", 60) is None


def test_sweep_settles_expired_leases(store: SingleStore) -> None:
    now = now_ms()
    lost = make_run()
    exhausted = make_run(lost_attempts=2)
    sync = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, lease_owner="gw", lease_until=now - 10, attempt=1)
    stopping = make_run()
    fresh = make_run()
    for run in (lost, exhausted, stopping, fresh):
        store.create_run(run)
    store.create_run(sync)
    for run in (lost, exhausted, stopping):
        store.transition(
            run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, lease_owner="w", lease_until=now - 10
        )
    store.transition(
        fresh.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, lease_owner="w", lease_until=now + 60_000
    )
    store.transition(stopping.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)

    result = store.sweep(max_lost_attempts=2, now=now)

    assert result.requeued == [lost.id]
    assert sorted(result.failed) == sorted([exhausted.id, sync.id])
    assert result.terminated == [stopping.id]
    requeued = store.get_run(lost.id)
    assert requeued is not None and requeued.status == RunStatus.ENQUEUED
    assert (requeued.lost_attempts, requeued.lease_owner, requeued.lease_until) == (1, None, None)
    failed = store.get_run(exhausted.id)
    assert failed is not None and failed.status == RunStatus.FAILED and failed.error.kind == "platform"  # type: ignore[union-attr]
    assert store.get_run(sync.id).status == RunStatus.FAILED  # type: ignore[union-attr]
    assert store.get_run(stopping.id).status == RunStatus.TERMINATED  # type: ignore[union-attr]
    assert store.get_run(fresh.id).status == RunStatus.INPROGRESS  # type: ignore[union-attr]
    # settled runs are not swept twice, and the requeued run is claimable again
    assert store.sweep(max_lost_attempts=2, now=now).requeued == []
    again = store.claim("w2", 30, now=now)
    assert again is not None and again.id == lost.id and again.attempt == 2


def test_sweep_spares_a_lease_renewed_since_it_listed_it(store: SingleStore) -> None:
    now = now_ms()
    run = make_run()
    store.create_run(run)
    store.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, lease_owner="w", lease_until=now - 10)
    listed = store.runs._due_runs(Due.EXPIRED, now, 10)
    assert [r.id for r in listed] == [run.id]
    store.heartbeat(run.id, "w", 60)
    # Given the sweeper works from the older list, the fresh lease still wins
    original = store.runs._due_runs
    store.runs._due_runs = lambda *_: listed  # type: ignore[method-assign]
    try:
        assert store.sweep(max_lost_attempts=3, now=now).requeued == []
    finally:
        store.runs._due_runs = original  # type: ignore[method-assign]
    assert store.get_run(run.id).status == RunStatus.INPROGRESS  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# sync runs recorded at their end


def test_a_finished_sync_run_is_recorded_with_its_log(store: SingleStore) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.SUCCESSFUL, invoked="check", attempt=1, ret={"ok": True})
    entries = [LogEntry("stderr", 10 + i, f"line {i}") for i in range(3)]
    numbered = store.record_sync_run(run, entries)
    assert [e.seq for e in numbered] == [1, 2, 3]
    assert store.get_run(run.id) == run
    assert [(e.seq, e.msg) for e in store.read_logs(run.id).items] == [(1, "line 0"), (2, "line 1"), (3, "line 2")]
    with pytest.raises(Conflict):
        store.record_sync_run(run, [])
    with pytest.raises(ValueError):
        store.record_sync_run(make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS), [])
    # a later append continues the sequence
    assert [e.seq for e in store.append_logs(run.id, [LogEntry("system", 1, "note")])] == [4]
    empty = make_run(mode=Mode.SYNC, status=RunStatus.FAILED)
    assert store.record_sync_run(empty, []) == []
    assert store.read_logs(empty.id).items == []


def test_a_sync_run_is_on_record_when_it_ends(store: SingleStore) -> None:
    # Given a sync call started the way the backend records it (INPROGRESS now, or nothing yet)
    now = now_ms()
    run = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, invoked="check", attempt=1, started_at=now,
                   lease_owner="node", lease_until=now + 60_000)  # fmt: skip
    revision = store.start_sync(run)
    if revision is not None:
        assert store.get_run(run.id) == run  # a gateway dying mid-call leaves it for the sweeper
    # When it ends
    entries = [LogEntry("stderr", now + i, f"line {i}") for i in range(3)]
    final, numbered = store.finish_sync(
        run, revision, RunStatus.SUCCESSFUL, entries, finished_at=now + 5, ret={"ok": True},
        os=preview(entries), lease_owner=None, lease_until=None,
    )  # fmt: skip
    # Then the run is on record in its final state, and its log numbered from 1
    assert final.status == RunStatus.SUCCESSFUL and final.ret == {"ok": True}
    assert [e.seq for e in numbered] == [1, 2, 3]
    stored = store.get_run(run.id)
    assert stored == final
    assert [e.seq for e in stored.os] == [1, 2, 3]  # type: ignore[union-attr]
    assert [(e.seq, e.msg) for e in store.read_logs(run.id).items] == [(1, "line 0"), (2, "line 1"), (3, "line 2")]


def test_a_sync_run_cancelled_while_it_ran_keeps_its_log(store: SingleStore) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, invoked="check", attempt=1)
    revision = store.start_sync(run)
    entries = [LogEntry("stdout", 1, "before the cancel")]
    try:
        final, _ = store.finish_sync(run, revision, RunStatus.TERMINATED, entries, finished_at=now_ms())
    except TransitionConflict:
        # on record while it ran: whoever cancelled it settles it (the run is still theirs)
        assert revision is not None
        assert store.get_run(run.id).status == RunStatus.INPROGRESS  # type: ignore[union-attr]
    else:
        # nothing was on record: it is written as it ended
        assert revision is None
        assert final.status == RunStatus.TERMINATED == store.get_run(run.id).status  # type: ignore[union-attr]
    assert [e.msg for e in store.read_logs(run.id).items] == ["before the cancel"]


def test_a_sync_run_swept_while_it_ran_is_not_overwritten(store: SingleStore) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, invoked="check", attempt=1, lease_owner="node")
    revision = store.start_sync(run)
    if revision is None:
        pytest.skip("this backend keeps no record while a sync call runs: nothing can sweep it")
    store.transition(run.id, RunStatus.INPROGRESS, RunStatus.FAILED, status_reason=SYNC_GATEWAY_LOST)
    with pytest.raises(TransitionConflict):
        store.finish_sync(run, revision, RunStatus.SUCCESSFUL, [], finished_at=now_ms())
    assert store.get_run(run.id).status_reason == SYNC_GATEWAY_LOST  # type: ignore[union-attr]


def test_a_sync_run_with_a_long_log_is_recorded_whole(store: SingleStore) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.SUCCESSFUL)
    store.record_sync_run(run, [LogEntry("stderr", i, f"line {i}") for i in range(260)])
    page = store.read_logs(run.id, 0, 500)
    assert [e.seq for e in page.items] == list(range(1, 261))
    assert page.items[-1].msg == "line 259"


# ---------------------------------------------------------------------------------------------
# logs


def test_logs_are_numbered_per_run_and_read_in_pages(store: SingleStore) -> None:
    first, other = make_run(), make_run()
    store.create_run(first)
    store.create_run(other)
    err = {"name": "ValueError", "message": "bad", "stack": "..."}
    batch = store.append_logs(first.id, [LogEntry("stdout", 1, "a"), LogEntry("stderr", 2, "b", err)])
    assert [e.seq for e in batch] == [1, 2]
    assert [e.seq for e in store.append_logs(other.id, [LogEntry("stdout", 3, "x")])] == [1]
    assert store.append_logs(first.id, []) == []
    store.append_logs(first.id, [LogEntry("stdout", 4 + i, f"c{i}") for i in range(5)])

    page = store.read_logs(first.id, 0, 3)
    assert [(e.seq, e.k, e.msg) for e in page.items] == [(1, "stdout", "a"), (2, "stderr", "b"), (3, "stdout", "c0")]
    assert page.items[1].err == err and page.items[1].ts == 2
    assert page.next == "3"
    rest = store.read_logs(first.id, int(page.next), 10)
    assert [e.seq for e in rest.items] == [4, 5, 6, 7] and rest.next is None
    assert store.read_logs(first.id, 7, 10).items == []
    assert store.read_logs("run_missing").items == []


def test_a_large_batch_of_log_lines_keeps_its_order(store: SingleStore) -> None:
    run = make_run()
    store.create_run(run)
    store.append_logs(run.id, [LogEntry("stdout", i, "y" * 2000 + str(i)) for i in range(450)])
    entries = []
    after = 0
    while True:
        page = store.read_logs(run.id, after, 200)
        entries += page.items
        if page.next is None:
            break
        after = int(page.next)
    assert [e.seq for e in entries] == list(range(1, 451))
    assert [e.msg[2000:] for e in entries] == [str(i) for i in range(450)]


def test_concurrent_appenders_get_distinct_sequence_numbers(store: SingleStore) -> None:
    run = make_run()
    store.create_run(run)

    def write(index: int) -> list[int]:
        seqs = []
        for batch in range(3):
            entries = store.append_logs(run.id, [LogEntry("stdout", 0, f"{index}-{batch}-{n}") for n in range(2)])
            seqs += [e.seq for e in entries]
        return seqs

    results = in_threads(4, write)
    assert not [r for r in results if isinstance(r, Exception)], results
    seqs = sorted(s for got in results for s in got)
    assert seqs == list(range(1, 25))
    stored = store.read_logs(run.id, 0, 100).items
    assert [e.seq for e in stored] == list(range(1, 25))
    assert len({e.msg for e in stored}) == 24


# ---------------------------------------------------------------------------------------------
# idempotency


def test_an_idempotency_key_is_owned_once_then_replayed(store: SingleStore) -> None:
    first = store.idempotency_begin("scope-1", "hash-a", "run_A", 60, 3600)
    assert first.is_owner and first.record.run_id == "run_A" and first.record.status == "INPROGRESS"
    # a second request while the first is in progress learns about it
    second = store.idempotency_begin("scope-1", "hash-a", "run_B", 60, 3600)
    assert not second.is_owner and second.record.status == "INPROGRESS" and second.record.run_id == "run_A"
    # a different body under the same key is a conflict
    with pytest.raises(Conflict):
        store.idempotency_begin("scope-1", "hash-b", "run_C", 60, 3600)
    store.idempotency_complete(first.record, {"id": "run_A", "status": "ENQUEUED"}, 202, 3600)
    replay = store.idempotency_begin("scope-1", "hash-a", "run_D", 60, 3600)
    assert not replay.is_owner
    assert (replay.record.status, replay.record.response, replay.record.response_code) == (
        "COMPLETED",
        {"id": "run_A", "status": "ENQUEUED"},
        202,
    )
    with pytest.raises(Conflict):
        store.idempotency_begin("scope-1", "hash-b", "run_E", 60, 3600)
    # keys are independent
    assert store.idempotency_begin("scope-2", "hash-a", "run_F", 60, 3600).is_owner


def test_an_abandoned_key_is_taken_over_with_the_first_run_id(store: SingleStore) -> None:
    store.idempotency_begin("scope", "hash", "run_FIRST", 0.05, 3600)
    # When the first request dies and its in-progress time passes
    takeover = wait_until(
        lambda: (o := store.idempotency_begin("scope", "hash", "run_SECOND", 60, 3600)).is_owner and o,
        timeout=5,
        what="the in-progress record to expire",
    )
    # Then the retry owns the key and keeps the first request's run id
    assert takeover.record.run_id == "run_FIRST"
    assert not store.idempotency_begin("scope", "hash", "run_THIRD", 60, 3600).is_owner


def test_completed_keys_expire_and_abandoned_ones_are_released(store: SingleStore) -> None:
    owned = store.idempotency_begin("scope", "hash", "run_1", 60, 3600)
    store.idempotency_complete(owned.record, {"id": "run_1"}, 202, ttl_seconds=0)
    completed_at = now_ms()
    wait_until(lambda: now_ms() > completed_at + 1, what="the completed record's expiry to pass")
    # a new body is fine once the key expired: it starts afresh
    fresh = store.idempotency_begin("scope", "other-hash", "run_2", 60, 3600)
    assert fresh.is_owner
    assert fresh.record.run_id == "run_2"
    store.idempotency_abandon("scope")
    assert store.idempotency_begin("scope", "third", "run_3", 60, 3600).is_owner


def test_racing_requests_with_one_key_have_one_owner(store: SingleStore) -> None:
    results = in_threads(6, lambda i: store.idempotency_begin("race", "hash", f"run_{i}", 60, 3600))
    assert not [r for r in results if isinstance(r, Exception)], results
    owners = [r for r in results if r.is_owner]
    assert len(owners) == 1
    assert {r.record.run_id for r in results} == {owners[0].record.run_id}


# ---------------------------------------------------------------------------------------------
# documents


def doc(
    name: str, body: dict[str, Any] | None = None, project: str = P, env: str = DEV, kind: str = "k", **kw: Any
) -> Any:
    from hatchway.domain.records import Document

    return Document(project, env, kind, name, body if body is not None else {"name": name}, **kw)


def test_documents_are_replaced_and_isolated(store: SingleStore) -> None:
    first = store.put_document(doc("a", {"v": 1}))
    assert first.updated_at > 0
    assert store.get_document(P, DEV, "k", "a") == first
    store.put_document(doc("a", {"v": 2, "nested": {"x": [1, "ü"]}}))
    assert store.get_document(P, DEV, "k", "a").body == {"v": 2, "nested": {"x": [1, "ü"]}}  # type: ignore[union-attr]
    for other in ((Q, DEV, "k"), (P, PROD, "k"), (P, DEV, "other")):
        assert store.get_document(*other, "a") is None
    assert store.delete_document(P, DEV, "k", "a") is True
    assert store.delete_document(P, DEV, "k", "a") is False
    assert store.get_document(P, DEV, "k", "a") is None


def test_expired_documents_are_gone(store: SingleStore) -> None:
    now = now_ms()
    store.put_document(doc("old", expires_at=now - 1))
    store.put_document(doc("fresh", expires_at=now + 60_000))
    store.put_document(doc("forever"))
    assert store.get_document(P, DEV, "k", "old") is None
    assert [d.name for d in store.list_documents(P, DEV, "k", 10).items] == ["forever", "fresh"]
    assert store.get_document(P, DEV, "k", "fresh").expires_at == now + 60_000  # type: ignore[union-attr]


def test_documents_list_by_name_in_pages(store: SingleStore) -> None:
    for name in ("d", "b", "e", "a", "c"):
        store.put_document(doc(name))
    store.put_document(doc("z", kind="another"))
    first = store.list_documents(P, DEV, "k", 2)
    assert [d.name for d in first.items] == ["a", "b"]
    second = store.list_documents(P, DEV, "k", 2, first.next)
    assert [d.name for d in second.items] == ["c", "d"]
    last = store.list_documents(P, DEV, "k", 2, second.next)
    assert [d.name for d in last.items] == ["e"] and last.next is None
    with pytest.raises(ValidationFailed):
        store.list_documents(P, DEV, "another", 2, first.next)
    with pytest.raises(ValidationFailed):
        store.list_documents(Q, DEV, "k", 2, first.next)


def test_a_large_document_round_trips(store: SingleStore) -> None:
    body = {"ret": ["v" * 1000 + str(i) for i in range(4000)]}
    store.put_document(doc("big", body))
    assert store.get_document(P, DEV, "k", "big").body == body  # type: ignore[union-attr]
    store.put_document(doc("big", {"small": True}))
    assert store.get_document(P, DEV, "k", "big").body == {"small": True}  # type: ignore[union-attr]
    assert store.delete_document(P, DEV, "k", "big")
