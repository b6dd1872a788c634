"""The run repository's contract: records, the lifecycle's transitions, the queue with its leases
and sweeps, sync calls recorded at their end, logs, and the runs remote engines hold.

Each test runs once per backend of the ``repos`` fixture (``conftest.py``); nothing here knows which.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import pytest

from hatchway.domain.runs import (
    SYNC_GATEWAY_LOST,
    LogEntry,
    Mode,
    Run,
    RunError,
    RunStatus,
    now_ms,
    preview,
    run_id_floor,
)
from hatchway.errors import Conflict, TransitionConflict, ValidationFailed
from hatchway.store.runs import BaseRunRepo, Due, claim_changes
from tests.contract.records import DEV, PROD, P, Q, in_threads, make_run


def test_a_run_round_trips_every_field(runs: BaseRunRepo) -> None:
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
    runs.create_run(run)
    assert runs.get_run(run.id) == run
    with pytest.raises(Conflict):
        runs.create_run(run)


def test_a_large_run_record_round_trips(runs: BaseRunRepo) -> None:
    # Given a result of several MiB (a sync action may answer up to 6 MiB)
    big = {"rows": ["x" * 1000 + str(i) for i in range(5000)]}
    run = make_run(status=RunStatus.INPROGRESS)
    runs.create_run(run)
    # When it is written and then replaced again
    done = runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, ret=big)
    assert done.ret == big
    # Then it reads back whole
    assert runs.get_run(run.id).ret == big  # type: ignore[union-attr]


def test_runs_are_visible_only_to_their_tenant(runs: BaseRunRepo) -> None:
    run = make_run()
    runs.create_run(run)
    assert runs.get_run(run.id, P, DEV) == run
    assert runs.get_run(run.id, Q, DEV) is None
    assert runs.get_run(run.id, P, PROD) is None
    assert runs.get_run("run_missing") is None
    assert runs.list_runs(Q, DEV, 10, None).items == []
    assert runs.list_runs(P, PROD, 10, None).items == []


def test_list_runs_newest_first_with_filters_and_pages(runs: BaseRunRepo) -> None:
    ids = []
    for index in range(7):
        run = make_run(
            action_name="even" if index % 2 == 0 else "odd",
            status=RunStatus.FAILED if index == 4 else RunStatus.ENQUEUED,
            external_user_id="u1" if index < 3 else None,
        )
        runs.create_run(run)
        ids.append(run.id)
    newest_first = list(reversed(ids))
    first = runs.list_runs(P, DEV, 3, None)
    assert [r.id for r in first.items] == newest_first[:3]
    second = runs.list_runs(P, DEV, 3, first.next)
    assert [r.id for r in second.items] == newest_first[3:6]
    third = runs.list_runs(P, DEV, 3, second.next)
    assert [r.id for r in third.items] == newest_first[6:] and third.next is None

    evens = runs.list_runs(P, DEV, 2, None, {"action": "even"})
    assert [r.id for r in evens.items] == [ids[6], ids[4]]
    more = runs.list_runs(P, DEV, 2, evens.next, {"action": "even"})
    assert [r.id for r in more.items] == [ids[2], ids[0]]
    assert [r.id for r in runs.list_runs(P, DEV, 9, None, {"status": "FAILED"}).items] == [ids[4]]
    assert [r.id for r in runs.list_runs(P, DEV, 9, None, {"external_user_id": "u1"}).items] == ids[2::-1]
    both = runs.list_runs(P, DEV, 9, None, {"action": "odd", "external_user_id": "u1"})
    assert [r.id for r in both.items] == [ids[1]]
    # empty filters are no filters; a cursor is bound to its filters
    assert len(runs.list_runs(P, DEV, 9, None, {"action": ""}).items) == 7
    with pytest.raises(ValidationFailed):
        runs.list_runs(P, DEV, 2, evens.next, {"action": "odd"})
    with pytest.raises(ValidationFailed):
        runs.list_runs(P, DEV, 2, evens.next)


def test_transitions_follow_the_table(runs: BaseRunRepo) -> None:
    run = make_run()
    runs.create_run(run)
    started = runs.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, started_at=5)
    assert (started.status, started.attempt, started.started_at) == (RunStatus.INPROGRESS, 1, 5)
    assert runs.get_run(run.id) == started
    # the expected status is checked against the stored one
    with pytest.raises(TransitionConflict) as lost:
        runs.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS)
    assert lost.value.actual == "INPROGRESS"
    # a transition outside the table is refused before anything is read
    with pytest.raises(ValueError):
        runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.INPROGRESS)
    with pytest.raises(ValueError):
        runs.transition(run.id, RunStatus.SUCCESSFUL, RunStatus.FAILED)
    with pytest.raises(TransitionConflict) as missing:
        runs.transition("run_missing", RunStatus.ENQUEUED, RunStatus.INPROGRESS)
    assert missing.value.actual is None
    done = runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, ret={"ok": 1}, finished_at=9)
    assert runs.get_run(run.id) == done
    # terminal is terminal
    for dst in (RunStatus.TERMINATING, RunStatus.FAILED, RunStatus.ENQUEUED):
        with pytest.raises(TransitionConflict):
            runs.transition(run.id, RunStatus.INPROGRESS, dst)


def test_a_guard_sees_the_current_run(runs: BaseRunRepo) -> None:
    run = make_run()
    runs.create_run(run)
    with pytest.raises(TransitionConflict):
        runs.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, lambda r: r.attempt > 0)
    assert runs.get_run(run.id).status == RunStatus.ENQUEUED  # type: ignore[union-attr]
    runs.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, lambda r: r.attempt == 0)


def test_update_run_keeps_the_status_and_checks_it(runs: BaseRunRepo) -> None:
    run = make_run()
    runs.create_run(run)
    updated = runs.update_run(run.id, RunStatus.ENQUEUED, external_id="job-9", status_reason="queued remotely")
    assert runs.get_run(run.id) == updated
    assert updated.status == RunStatus.ENQUEUED and updated.external_id == "job-9"
    with pytest.raises(TransitionConflict):
        runs.update_run(run.id, RunStatus.INPROGRESS, status_reason="x")


def test_only_one_of_racing_transitions_wins(runs: BaseRunRepo) -> None:
    run = make_run(status=RunStatus.INPROGRESS)
    runs.create_run(run)
    targets = [RunStatus.SUCCESSFUL, RunStatus.TERMINATING, RunStatus.FAILED, RunStatus.ENQUEUED] * 2

    def move(index: int) -> Run:
        return runs.transition(run.id, RunStatus.INPROGRESS, targets[index], status_reason=f"by {index}")

    results = in_threads(len(targets), move)
    winners = [r for r in results if isinstance(r, Run)]
    assert len(winners) == 1, results
    assert all(isinstance(r, TransitionConflict) for r in results if not isinstance(r, Run))
    final = runs.get_run(run.id)
    assert final is not None and (final.status, final.status_reason) == (winners[0].status, winners[0].status_reason)


def test_a_transition_from_a_known_revision_reads_nothing_and_never_undoes_a_later_change(
    runs: BaseRunRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the run as it is now, read back: by a read, or from the answer of a write that lost (ALL_OLD)
    reads: list[str] = []
    read, replace_run = runs._get_run, runs._replace_run

    def replaced(run: Run, rev: int) -> tuple[bool, tuple[Run, int] | None]:
        written, current = replace_run(run, rev)
        reads.extend([run.id] if current is not None else [])
        return written, current

    monkeypatch.setattr(runs, "_get_run", lambda run_id, *more: reads.append(run_id) or read(run_id, *more))
    monkeypatch.setattr(runs, "_replace_run", replaced)
    sync = lambda **f: make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, attempt=1, lease_owner="gw", **f)  # noqa: E731
    # Given a run as it was created (revision 0), the end is written without reading it back
    run = runs.create_run(sync(lease_until=now_ms() + 60_000))
    done = runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(run, 0), ret={"ok": 1})
    assert reads == []
    assert runs.get_run(run.id) == done and done.ret == {"ok": 1}
    reads.clear()
    # Given a run renewed since (a newer revision), the change is applied to the run as it is now
    renewed = runs.create_run(sync(lease_until=now_ms() + 60_000))
    assert runs.heartbeat(renewed.id, "gw", 120) == RunStatus.INPROGRESS
    runs.transition(renewed.id, RunStatus.INPROGRESS, RunStatus.FAILED, known=(renewed, 0), status_reason="x")
    assert reads == [renewed.id]
    # Given a run cancelled since, the stale copy loses
    cancelled = runs.create_run(sync())
    runs.transition(cancelled.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)
    with pytest.raises(TransitionConflict):
        runs.transition(cancelled.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(cancelled, 0))
    assert runs.get_run(cancelled.id).status == RunStatus.TERMINATING  # type: ignore[union-attr]
    # and a guard that refuses the known copy is not bypassed
    guarded = runs.create_run(sync())
    with pytest.raises(TransitionConflict):
        runs.transition(guarded.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, lambda _: False, known=(guarded, 0))


# ---------------------------------------------------------------------------------------------
# the queue: claims, leases, sweeps


def test_claim_takes_the_oldest_ready_async_run(runs: BaseRunRepo) -> None:
    now = now_ms()
    later = make_run(available_at=now - 1000)
    oldest = make_run(available_at=now - 5000)
    future = make_run(available_at=now + 60_000)
    sync = make_run(mode=Mode.SYNC, available_at=now - 9000)
    remote = make_run(available_at=now - 9000, external_id="job-1")
    running = make_run(status=RunStatus.INPROGRESS, available_at=now - 9000)
    for run in (later, oldest, future, sync, remote, running):
        runs.create_run(run)

    claimed = runs.claim("worker-a", 30, now=now)
    assert claimed is not None and claimed.id == oldest.id
    assert (claimed.status, claimed.attempt, claimed.lease_owner) == (RunStatus.INPROGRESS, 1, "worker-a")
    assert claimed.lease_until == now + 30_000 and claimed.started_at == now
    assert runs.get_run(oldest.id) == claimed
    second = runs.claim("worker-b", 30, now=now)
    assert second is not None and second.id == later.id
    assert runs.claim("worker-c", 30, now=now) is None
    # the future run becomes claimable when its time comes
    assert runs.claim("worker-c", 30, now=now + 61_000).id == future.id  # type: ignore[union-attr]


def test_a_claim_applies_the_rules_to_a_queued_again_run_and_keeps_everything_else(runs: BaseRunRepo) -> None:
    # Given a run back in the queue after a failed attempt (started, with a reason, odd values)
    now = now_ms()
    run = make_run(
        attempt=1, started_at=now - 9000, status_reason="attempt 1 failed (x); retrying in 1 s",
        available_at=now - 10, parameters={"ü": "é\u2028", "n": 2.5, "deep": [1, None, {"k": "v"}]},
        ret={"r": 1}, os=[LogEntry("stdout", 1, "line \"quoted\"", None, 1)], lost_attempts=1, max_attempts=3,
    )  # fmt: skip
    runs.create_run(run)
    # When a worker claims it, it is the rules' claim of that run and nothing else moved
    claimed = runs.claim("worker-a", 30, now=now)
    expected = replace(run, status=RunStatus.INPROGRESS, **claim_changes(run, "worker-a", now + 30_000, now))
    assert claimed == expected
    assert runs.get_run(run.id) == expected
    assert (expected.attempt, expected.started_at, expected.status_reason) == (2, now - 9000, None)


def test_the_backends_claim_agrees_with_the_rules_claim(runs: BaseRunRepo) -> None:
    # Given the same queue claimed once the backend's way and once through transition() (the rules)
    now = now_ms()
    queued = [make_run(available_at=now - 5000 + i, external_id="job-1" if i == 0 else None) for i in range(4)]
    for run in queued:
        runs.create_run(run)
    ours = runs.claim("w", 30, now=now)
    runs.takes_in_one_write = False  # type: ignore[misc]
    generic = runs.claim("w", 30, now=now)
    # Then both skip the run a remote engine holds and take the oldest of the rest, the same way
    assert ours is not None and generic is not None
    assert [ours.id, generic.id] == [queued[1].id, queued[2].id]
    assert replace(ours, id=generic.id, created_at=generic.created_at, available_at=generic.available_at) == generic


def test_a_claims_revision_saves_the_read_while_nobody_moved_the_run(runs: BaseRunRepo) -> None:
    runs.create_run(make_run())
    claimed = runs.claim_known("owner", 30)
    assert claimed is not None
    run, revision = claimed
    if revision is None:
        pytest.skip("this backend does not tell the revision a claim wrote")
    # When the attempt ends with the claim's revision, the run is not read again
    reads: list[str] = []
    original = runs._get_run
    runs._get_run = lambda run_id, *more: reads.append(run_id) or original(run_id, *more)  # type: ignore[method-assign,func-returns-value]
    done = runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(run, revision), finished_at=1)
    assert reads == [] and done.status == RunStatus.SUCCESSFUL
    assert runs.get_run(run.id) == done
    reads.clear()
    # and a heartbeat since the claim moves the revision: the end is then written after a read
    runs.create_run(make_run())
    again = runs.claim_known("owner", 30)
    assert again is not None and again[1] is not None
    assert runs.heartbeat(again[0].id, "owner", 60) == RunStatus.INPROGRESS
    ended = runs.transition(again[0].id, RunStatus.INPROGRESS, RunStatus.FAILED, known=(again[0], again[1]))
    assert reads == [again[0].id] and ended.status == RunStatus.FAILED
    assert ended.lease_until is not None and ended.lease_until > again[0].lease_until  # type: ignore[operator]


def test_concurrent_claimers_never_share_a_run(runs: BaseRunRepo) -> None:
    queued = [make_run(available_at=now_ms() - 10_000 + i) for i in range(12)]
    for run in queued:
        runs.create_run(run)

    def drain(index: int) -> list[str]:
        got = []
        while (claimed := runs.claim(f"worker-{index}", 30)) is not None:
            got.append(claimed.id)
        return got

    results = in_threads(6, drain)
    assert not [r for r in results if isinstance(r, Exception)], results
    claimed = Counter(run_id for got in results for run_id in got)
    assert set(claimed) == {run.id for run in queued}
    assert max(claimed.values()) == 1
    assert all(runs.get_run(run.id).attempt == 1 for run in queued)  # type: ignore[union-attr]


def test_heartbeats_belong_to_the_lease_owner(runs: BaseRunRepo) -> None:
    runs.create_run(make_run())
    claimed = runs.claim("owner", 5)
    assert claimed is not None
    assert runs.heartbeat(claimed.id, "owner", 60) == RunStatus.INPROGRESS
    renewed = runs.get_run(claimed.id)
    assert renewed is not None and renewed.lease_until is not None and renewed.lease_until > claimed.lease_until  # type: ignore[operator]
    assert runs.heartbeat(claimed.id, "stranger", 60) is None
    # a cancel is seen through the heartbeat
    runs.transition(claimed.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)
    assert runs.heartbeat(claimed.id, "owner", 60) == RunStatus.TERMINATING
    runs.transition(claimed.id, RunStatus.TERMINATING, RunStatus.TERMINATED, lease_owner=None, lease_until=None)
    assert runs.heartbeat(claimed.id, "owner", 60) is None
    assert runs.heartbeat("run_missing", "owner", 60) is None


def test_sweep_settles_expired_leases(runs: BaseRunRepo) -> None:
    now = now_ms()
    lost = make_run()
    exhausted = make_run(lost_attempts=2)
    sync = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, lease_owner="gw", lease_until=now - 10, attempt=1)
    stopping = make_run()
    fresh = make_run()
    for run in (lost, exhausted, stopping, fresh):
        runs.create_run(run)
    runs.create_run(sync)
    for run in (lost, exhausted, stopping):
        runs.transition(
            run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, lease_owner="w", lease_until=now - 10
        )
    runs.transition(
        fresh.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, lease_owner="w", lease_until=now + 60_000
    )
    runs.transition(stopping.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)

    result = runs.sweep(max_lost_attempts=2, now=now)

    assert result.requeued == [lost.id]
    assert sorted(result.failed) == sorted([exhausted.id, sync.id])
    assert result.terminated == [stopping.id]
    requeued = runs.get_run(lost.id)
    assert requeued is not None and requeued.status == RunStatus.ENQUEUED
    assert (requeued.lost_attempts, requeued.lease_owner, requeued.lease_until) == (1, None, None)
    failed = runs.get_run(exhausted.id)
    assert failed is not None and failed.status == RunStatus.FAILED and failed.error.kind == "platform"  # type: ignore[union-attr]
    assert runs.get_run(sync.id).status == RunStatus.FAILED  # type: ignore[union-attr]
    assert runs.get_run(stopping.id).status == RunStatus.TERMINATED  # type: ignore[union-attr]
    assert runs.get_run(fresh.id).status == RunStatus.INPROGRESS  # type: ignore[union-attr]
    # settled runs are not swept twice, and the requeued run is claimable again
    assert runs.sweep(max_lost_attempts=2, now=now).requeued == []
    again = runs.claim("w2", 30, now=now)
    assert again is not None and again.id == lost.id and again.attempt == 2


def test_sweep_spares_a_lease_renewed_since_it_listed_it(runs: BaseRunRepo) -> None:
    now = now_ms()
    run = make_run()
    runs.create_run(run)
    runs.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=1, lease_owner="w", lease_until=now - 10)
    listed = runs._due_runs(Due.EXPIRED, now, 10)
    assert [r.id for r in listed] == [run.id]
    runs.heartbeat(run.id, "w", 60)
    # Given the sweeper works from the older list, the fresh lease still wins
    original = runs._due_runs
    runs._due_runs = lambda *_: listed  # type: ignore[method-assign]
    try:
        assert runs.sweep(max_lost_attempts=3, now=now).requeued == []
    finally:
        runs._due_runs = original  # type: ignore[method-assign]
    assert runs.get_run(run.id).status == RunStatus.INPROGRESS  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# sync runs recorded at their end


def test_a_finished_sync_run_is_recorded_with_its_log(runs: BaseRunRepo) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.SUCCESSFUL, invoked="check", attempt=1, ret={"ok": True})
    entries = [LogEntry("stderr", 10 + i, f"line {i}") for i in range(3)]
    numbered = runs.record_sync_run(run, entries)
    assert [e.seq for e in numbered] == [1, 2, 3]
    assert runs.get_run(run.id) == run
    assert [(e.seq, e.msg) for e in runs.read_logs(run.id).items] == [(1, "line 0"), (2, "line 1"), (3, "line 2")]
    with pytest.raises(Conflict):
        runs.record_sync_run(run, [])
    with pytest.raises(ValueError):
        runs.record_sync_run(make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS), [])
    # a later append continues the sequence
    assert [e.seq for e in runs.append_logs(run.id, [LogEntry("system", 1, "note")])] == [4]
    empty = make_run(mode=Mode.SYNC, status=RunStatus.FAILED)
    assert runs.record_sync_run(empty, []) == []
    assert runs.read_logs(empty.id).items == []


def test_a_sync_run_is_on_record_when_it_ends(runs: BaseRunRepo) -> None:
    # Given a sync call started the way the backend records it (INPROGRESS now, or nothing yet)
    now = now_ms()
    run = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, invoked="check", attempt=1, started_at=now,
                   lease_owner="node", lease_until=now + 60_000)  # fmt: skip
    revision = runs.start_sync(run)
    if revision is not None:
        assert runs.get_run(run.id) == run  # a gateway dying mid-call leaves it for the sweeper
    # When it ends
    entries = [LogEntry("stderr", now + i, f"line {i}") for i in range(3)]
    final, numbered = runs.finish_sync(
        run, revision, RunStatus.SUCCESSFUL, entries, finished_at=now + 5, ret={"ok": True},
        os=preview(entries), lease_owner=None, lease_until=None,
    )  # fmt: skip
    # Then the run is on record in its final state, and its log numbered from 1
    assert final.status == RunStatus.SUCCESSFUL and final.ret == {"ok": True}
    assert [e.seq for e in numbered] == [1, 2, 3]
    stored = runs.get_run(run.id)
    assert stored == final
    assert [e.seq for e in stored.os] == [1, 2, 3]  # type: ignore[union-attr]
    assert [(e.seq, e.msg) for e in runs.read_logs(run.id).items] == [(1, "line 0"), (2, "line 1"), (3, "line 2")]


def test_a_sync_run_cancelled_while_it_ran_keeps_its_log(runs: BaseRunRepo) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, invoked="check", attempt=1)
    revision = runs.start_sync(run)
    entries = [LogEntry("stdout", 1, "before the cancel")]
    try:
        final, _ = runs.finish_sync(run, revision, RunStatus.TERMINATED, entries, finished_at=now_ms())
    except TransitionConflict:
        # on record while it ran: whoever cancelled it settles it (the run is still theirs)
        assert revision is not None
        assert runs.get_run(run.id).status == RunStatus.INPROGRESS  # type: ignore[union-attr]
    else:
        # nothing was on record: it is written as it ended
        assert revision is None
        assert final.status == RunStatus.TERMINATED == runs.get_run(run.id).status  # type: ignore[union-attr]
    assert [e.msg for e in runs.read_logs(run.id).items] == ["before the cancel"]


def test_a_sync_run_swept_while_it_ran_is_not_overwritten(runs: BaseRunRepo) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, invoked="check", attempt=1, lease_owner="node")
    revision = runs.start_sync(run)
    if revision is None:
        pytest.skip("this backend keeps no record while a sync call runs: nothing can sweep it")
    runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.FAILED, status_reason=SYNC_GATEWAY_LOST)
    with pytest.raises(TransitionConflict):
        runs.finish_sync(run, revision, RunStatus.SUCCESSFUL, [], finished_at=now_ms())
    assert runs.get_run(run.id).status_reason == SYNC_GATEWAY_LOST  # type: ignore[union-attr]


def test_a_sync_run_with_a_long_log_is_recorded_whole(runs: BaseRunRepo) -> None:
    run = make_run(mode=Mode.SYNC, status=RunStatus.SUCCESSFUL)
    runs.record_sync_run(run, [LogEntry("stderr", i, f"line {i}") for i in range(260)])
    page = runs.read_logs(run.id, 0, 500)
    assert [e.seq for e in page.items] == list(range(1, 261))
    assert page.items[-1].msg == "line 259"


# ---------------------------------------------------------------------------------------------
# logs


def test_an_attempts_end_carries_its_last_log_lines(runs: BaseRunRepo) -> None:
    # Given a claimed run whose earlier lines are stored already
    runs.create_run(make_run())
    claimed = runs.claim_known("w", 30)
    assert claimed is not None
    run, revision = claimed
    runs.append_logs(run.id, [LogEntry("stdout", 1, "early")])
    # When its end is written with the last lines (with the claim's revision, if the backend told it)
    last = [LogEntry("stdout", 2, "late"), LogEntry("stderr", 3, "done")]
    known = (run, revision) if revision is not None else None
    done = runs.transition(
        run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=known, logs=last, os=preview(last), finished_at=5
    )
    # Then the lines follow the stored ones, numbered before the record that shows them was written
    assert [e.seq for e in last] == [2, 3]
    assert [(e.seq, e.msg) for e in runs.read_logs(run.id).items] == [(1, "early"), (2, "late"), (3, "done")]
    stored = runs.get_run(run.id)
    assert stored == done and [e.seq for e in stored.os] == [2, 3]  # type: ignore[union-attr]


def test_last_log_lines_are_kept_once_whatever_becomes_of_the_end(runs: BaseRunRepo) -> None:
    # Given a run cancelled while its attempt ran
    runs.create_run(make_run())
    claimed = runs.claim_known("w", 30)
    assert claimed is not None
    run, revision = claimed
    runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.TERMINATING)
    # When the attempt writes its end from its stale copy, the transition is refused...
    with pytest.raises(TransitionConflict):
        runs.transition(
            run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(run, revision or 0),
            logs=[LogEntry("stdout", 1, "one")], finished_at=5,
        )  # fmt: skip
    # ...and its lines are stored once; a write that loses a race on the revision and then wins
    # after a read does not store them twice
    runs.create_run(make_run())
    again = runs.claim_known("w", 30)
    assert again is not None
    runs.heartbeat(again[0].id, "w", 60)  # moves the revision the claim wrote
    runs.transition(
        again[0].id, RunStatus.INPROGRESS, RunStatus.FAILED, known=(again[0], again[1] or 0),
        logs=[LogEntry("stderr", 1, "a"), LogEntry("stderr", 2, "b")],
    )  # fmt: skip
    assert [e.msg for e in runs.read_logs(run.id).items] == ["one"]
    assert [(e.seq, e.msg) for e in runs.read_logs(again[0].id).items] == [(1, "a"), (2, "b")]
    assert runs.get_run(again[0].id).status == RunStatus.FAILED  # type: ignore[union-attr]


def test_logs_are_numbered_per_run_and_read_in_pages(runs: BaseRunRepo) -> None:
    first, other = make_run(), make_run()
    runs.create_run(first)
    runs.create_run(other)
    err = {"name": "ValueError", "message": "bad", "stack": "..."}
    batch = runs.append_logs(first.id, [LogEntry("stdout", 1, "a"), LogEntry("stderr", 2, "b", err)])
    assert [e.seq for e in batch] == [1, 2]
    assert [e.seq for e in runs.append_logs(other.id, [LogEntry("stdout", 3, "x")])] == [1]
    assert runs.append_logs(first.id, []) == []
    runs.append_logs(first.id, [LogEntry("stdout", 4 + i, f"c{i}") for i in range(5)])

    page = runs.read_logs(first.id, 0, 3)
    assert [(e.seq, e.k, e.msg) for e in page.items] == [(1, "stdout", "a"), (2, "stderr", "b"), (3, "stdout", "c0")]
    assert page.items[1].err == err and page.items[1].ts == 2
    assert page.next == "3"
    rest = runs.read_logs(first.id, int(page.next), 10)
    assert [e.seq for e in rest.items] == [4, 5, 6, 7] and rest.next is None
    assert runs.read_logs(first.id, 7, 10).items == []
    assert runs.read_logs("run_missing").items == []


def test_a_large_batch_of_log_lines_keeps_its_order(runs: BaseRunRepo) -> None:
    run = make_run()
    runs.create_run(run)
    runs.append_logs(run.id, [LogEntry("stdout", i, "y" * 2000 + str(i)) for i in range(450)])
    entries = []
    after = 0
    while True:
        page = runs.read_logs(run.id, after, 200)
        entries += page.items
        if page.next is None:
            break
        after = int(page.next)
    assert [e.seq for e in entries] == list(range(1, 451))
    assert [e.msg[2000:] for e in entries] == [str(i) for i in range(450)]


def test_concurrent_appenders_get_distinct_sequence_numbers(runs: BaseRunRepo) -> None:
    run = make_run()
    runs.create_run(run)

    def write(index: int) -> list[int]:
        seqs = []
        for batch in range(3):
            entries = runs.append_logs(run.id, [LogEntry("stdout", 0, f"{index}-{batch}-{n}") for n in range(2)])
            seqs += [e.seq for e in entries]
        return seqs

    results = in_threads(4, write)
    assert not [r for r in results if isinstance(r, Exception)], results
    seqs = sorted(s for got in results for s in got)
    assert seqs == list(range(1, 25))
    stored = runs.read_logs(run.id, 0, 100).items
    assert [e.seq for e in stored] == list(range(1, 25))
    assert len({e.msg for e in stored}) == 24


# ---------------------------------------------------------------------------------------------
# runs a remote engine (Batch, ECS) holds, which the remote sweeper reconciles

_serial = itertools.count()


def remote_run(runs: BaseRunRepo, created: int, **changes: object) -> Run:
    # an id of that time whatever ids this process made before (new_run_id never goes back in time)
    run = Run(
        id=f"{run_id_floor(created)}{next(_serial):016d}", project_id="proj_a", environment="development",
        action_name="etl", action_version=1, action_digest="sha256:" + "0" * 64, mode=Mode.ASYNC,
        status=RunStatus.ENQUEUED, created_at=created, available_at=created, external_id=f"job-{created}",
    )  # fmt: skip
    return runs.create_run(replace(run, **changes))  # type: ignore[arg-type]


def test_remote_runs_are_the_old_unfinished_ones_with_an_engine_oldest_first(runs: BaseRunRepo) -> None:
    now = now_ms()
    queued = remote_run(runs, now - 3_600_000)
    running = remote_run(runs, now - 1_800_000, status=RunStatus.INPROGRESS, lease_owner="ecs/task-1")
    stopping = remote_run(runs, now - 1_700_000, status=RunStatus.TERMINATING, lease_owner="ecs/task-2")
    remote_run(runs, now - 1_600_000, status=RunStatus.SUCCESSFUL, finished_at=now)  # ended
    remote_run(runs, now - 1_500_000, external_id=None)  # in the gateway's own queue
    remote_run(runs, now - 1_400_000, external_id=None, status=RunStatus.INPROGRESS, lease_owner="w",
               lease_until=now + 30_000)  # fmt: skip
    remote_run(runs, now - 60_000)  # too recent: its events may still be on their way
    found = runs.remote_runs(now - 600_000)
    assert [run.id for run in found] == [queued.id, running.id, stopping.id]
    assert found[1].external_id == running.external_id and found[1].status == RunStatus.INPROGRESS
    assert [run.id for run in runs.remote_runs(now - 600_000, limit=1)] == [queued.id]
    # once a run ends it is no longer listed
    runs.transition(running.id, RunStatus.INPROGRESS, RunStatus.FAILED, finished_at=now)
    assert [run.id for run in runs.remote_runs(now - 600_000)] == [queued.id, stopping.id]


def test_remote_runs_page_after_the_last_id_of_the_previous_page(runs: BaseRunRepo) -> None:
    # the sweeper reads every stale remote run in pages, however many run for a long time
    now = now_ms()
    made = [remote_run(runs, now - 3_600_000 + index * 1000) for index in range(5)]
    first = runs.remote_runs(now - 600_000, limit=2)
    second = runs.remote_runs(now - 600_000, limit=2, after=first[-1].id)
    third = runs.remote_runs(now - 600_000, limit=2, after=second[-1].id)
    assert [run.id for run in first + second + third] == [run.id for run in made]
    assert runs.remote_runs(now - 600_000, limit=2, after=made[-1].id) == []
    # a cursor past the bound finds nothing (and is no error)
    assert runs.remote_runs(now - 3_600_000, after=made[-1].id) == []


def test_a_swap_that_loses_answers_the_run_as_it_is_now_or_nothing(runs: BaseRunRepo) -> None:
    # Given a run moved on since a writer read it (revision 0 -> 1)
    run = runs.create_run(make_run())
    moved = runs.transition(run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, lease_owner="w", lease_until=1)
    # When the writer swaps its stale copy
    written, current = runs._replace_run(replace(run, status_reason="stale"), 0)
    # Then nothing is written, and what it learns is the run as it is now (or nothing: it reads)
    assert not written
    assert current is None or current == runs._get_run(run.id)
    assert runs.get_run(run.id) == moved
    assert runs._replace_run(replace(moved, status_reason="fresh"), 1) == (True, None)
