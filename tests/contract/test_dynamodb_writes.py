"""What the DynamoDB repositories cost in calls where a write loses: a failed conditional write
answers the item in its way (``ReturnValuesOnConditionCheckFailure="ALL_OLD"``), so the rules go on
from it without a ``GetItem``. (That the answer is right is the contract suite's business.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hatchway.domain.runs import Mode, RunStatus, now_ms
from tests.awsmock import REGION, CallCounter
from tests.contract.backends import drop, dynamodb_store
from tests.contract.records import make_run

pytestmark = pytest.mark.aws


@pytest.fixture
def counted(moto: None) -> Iterator[tuple[Any, CallCounter]]:
    import boto3

    from hatchway.aws.clients import AwsClients

    session = boto3.session.Session(region_name=REGION)
    counter = CallCounter(session)
    store = dynamodb_store(AwsClients(REGION, None, session))
    yield store, counter
    drop(store)


def test_a_transition_that_lost_to_a_heartbeat_is_retried_without_a_read(counted: tuple[Any, CallCounter]) -> None:
    store, calls = counted
    run = store.runs.create_run(make_run(mode=Mode.SYNC, status=RunStatus.INPROGRESS, lease_owner="gw",
                                         lease_until=now_ms() + 60_000))  # fmt: skip
    store.runs.heartbeat(run.id, "gw", 120)  # the run is at revision 1 now
    calls.clear()
    done = store.runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, known=(run, 0), ret={"ok": 1})
    assert done.ret == {"ok": 1} and done.lease_until != run.lease_until  # applied to the renewed run
    assert (calls.count("dynamodb", "PutItem"), calls.count("dynamodb", "GetItem")) == (2, 0)


def test_a_duplicate_idempotency_key_costs_one_write(counted: tuple[Any, CallCounter]) -> None:
    store, calls = counted
    first = store.idempotency.idempotency_begin("scope", "hash", "run_A", 60, 3600)
    calls.clear()
    duplicate = store.idempotency.idempotency_begin("scope", "hash", "run_B", 60, 3600)
    assert not duplicate.is_owner and duplicate.record == first.record
    assert calls.summary() == {"dynamodb.PutItem": 1}
