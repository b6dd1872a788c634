"""The idempotency repository's contract: a key owned once, replayed, taken over, released.

Each test runs once per backend of the ``repos`` fixture (``conftest.py``); nothing here knows which.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from hatchway.domain.records import IdempotencyRecord
from hatchway.domain.runs import now_ms
from hatchway.errors import Conflict
from hatchway.store.idempotency import BaseIdempotencyRepo
from tests.contract.records import in_threads
from tests.helpers import wait_until


def test_an_idempotency_key_is_owned_once_then_replayed(idempotency: BaseIdempotencyRepo) -> None:
    first = idempotency.idempotency_begin("scope-1", "hash-a", "run_A", 60, 3600)
    assert first.is_owner and first.record.run_id == "run_A" and first.record.status == "INPROGRESS"
    # a second request while the first is in progress learns about it
    second = idempotency.idempotency_begin("scope-1", "hash-a", "run_B", 60, 3600)
    assert not second.is_owner and second.record.status == "INPROGRESS" and second.record.run_id == "run_A"
    # a different body under the same key is a conflict
    with pytest.raises(Conflict):
        idempotency.idempotency_begin("scope-1", "hash-b", "run_C", 60, 3600)
    idempotency.idempotency_complete(first.record, {"id": "run_A", "status": "ENQUEUED"}, 202, 3600)
    replay = idempotency.idempotency_begin("scope-1", "hash-a", "run_D", 60, 3600)
    assert not replay.is_owner
    assert (replay.record.status, replay.record.response, replay.record.response_code) == (
        "COMPLETED",
        {"id": "run_A", "status": "ENQUEUED"},
        202,
    )
    with pytest.raises(Conflict):
        idempotency.idempotency_begin("scope-1", "hash-b", "run_E", 60, 3600)
    # keys are independent
    assert idempotency.idempotency_begin("scope-2", "hash-a", "run_F", 60, 3600).is_owner


def test_an_abandoned_key_is_taken_over_with_the_first_run_id(idempotency: BaseIdempotencyRepo) -> None:
    idempotency.idempotency_begin("scope", "hash", "run_FIRST", 0.05, 3600)
    # When the first request dies and its in-progress time passes
    takeover = wait_until(
        lambda: (o := idempotency.idempotency_begin("scope", "hash", "run_SECOND", 60, 3600)).is_owner and o,
        timeout=5,
        what="the in-progress record to expire",
    )
    # Then the retry owns the key and keeps the first request's run id
    assert takeover.record.run_id == "run_FIRST"
    assert not idempotency.idempotency_begin("scope", "hash", "run_THIRD", 60, 3600).is_owner


def test_completed_keys_expire_and_abandoned_ones_are_released(idempotency: BaseIdempotencyRepo) -> None:
    owned = idempotency.idempotency_begin("scope", "hash", "run_1", 60, 3600)
    idempotency.idempotency_complete(owned.record, {"id": "run_1"}, 202, ttl_seconds=0)
    completed_at = now_ms()
    wait_until(lambda: now_ms() > completed_at + 1, what="the completed record's expiry to pass")
    # a new body is fine once the key expired: it starts afresh
    fresh = idempotency.idempotency_begin("scope", "other-hash", "run_2", 60, 3600)
    assert fresh.is_owner
    assert fresh.record.run_id == "run_2"
    idempotency.idempotency_abandon("scope")
    assert idempotency.idempotency_begin("scope", "third", "run_3", 60, 3600).is_owner


def test_racing_requests_with_one_key_have_one_owner(idempotency: BaseIdempotencyRepo) -> None:
    results = in_threads(6, lambda i: idempotency.idempotency_begin("race", "hash", f"run_{i}", 60, 3600))
    assert not [r for r in results if isinstance(r, Exception)], results
    owners = [r for r in results if r.is_owner]
    assert len(owners) == 1
    assert {r.record.run_id for r in results} == {owners[0].record.run_id}


def test_a_claim_that_loses_answers_the_record_in_its_way(idempotency: BaseIdempotencyRepo) -> None:
    first = idempotency.idempotency_begin("scope", "hash", "run_A", 60, 3600)
    late = IdempotencyRecord("scope", "hash", "run_B", "INPROGRESS", now_ms() + 60_000)
    # a key held (or not yet expired, for a takeover) answers its holder: no second read needed
    assert idempotency._put_idempotency(late, None) == (False, first.record)
    assert idempotency._put_idempotency(late, now_ms()) == (False, first.record)
    assert idempotency._put_idempotency(replace(late, scope="free"), None) == (True, None)


def test_a_duplicate_learns_about_the_first_request_from_its_one_write(
    idempotency: BaseIdempotencyRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = idempotency.idempotency_begin("scope", "hash", "run_A", 60, 3600)
    calls: list[str] = []
    put, get = idempotency._put_idempotency, idempotency._get_idempotency
    monkeypatch.setattr(idempotency, "_put_idempotency", lambda *a: calls.append("put") or put(*a))
    monkeypatch.setattr(idempotency, "_get_idempotency", lambda *a: calls.append("get") or get(*a))
    duplicate = idempotency.idempotency_begin("scope", "hash", "run_B", 60, 3600)
    assert not duplicate.is_owner and duplicate.record == first.record
    assert calls == ["put"]
