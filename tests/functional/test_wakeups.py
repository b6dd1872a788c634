"""Processes on one SQLite store wake each other's idle workers: a run queued by a gateway without
workers (or by a CLI command) is claimed by a worker pool of another process at once, not at its
next poll. Two processes' services in one interpreter, each with its own doorbell, over one home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.config import Settings
from hatchway.domain.runs import RunStatus
from hatchway.services import Services
from hatchway.wiring import build_services
from hatchway.worker import WorkerPool
from tests.contract.records import make_run
from tests.helpers import wait_until

claims: list[Any] = []


@pytest.fixture
def idle_pool(services: Services) -> Iterator[WorkerPool]:
    """A pool that would poll only every minute: whatever it claims sooner, it was woken for."""
    claims.clear()
    runs = services.repos.runs
    claim = runs.claim_known

    def counted(*args: Any, **kwargs: Any) -> Any:
        found = claim(*args, **kwargs)
        claims.append(found)
        return found

    runs.claim_known = counted  # type: ignore[method-assign]
    workers = WorkerPool(services, size=1, poll_seconds=60)
    workers.start()
    yield workers
    workers.stop(grace_seconds=2)


def test_a_run_queued_in_another_process_wakes_an_idle_worker(
    settings: Settings, services: Services, idle_pool: WorkerPool
) -> None:
    # Given the pool idle (its first claim found nothing and it waits for a minute)
    wait_until(lambda: None in claims, what="a claim that found nothing")
    other = build_services(settings)  # a gateway without workers, or a CLI command
    try:
        dispatcher = other.attempts.dispatcher
        assert dispatcher is not services.attempts.dispatcher
        # When the other process queues a run
        run = other.repos.runs.create_run(make_run(project="proj_local", env="development"))
        dispatcher.created(run)
        # Then this pool claims it (and ends it: no such action) well before its next poll
        done = wait_until(lambda: services.repos.runs.get_run(run.id).status != RunStatus.ENQUEUED, timeout=20)  # type: ignore[union-attr]
        assert done
    finally:
        other.close()


def test_a_stopped_pool_leaves_no_doorbell_behind(settings: Settings, services: Services) -> None:
    workers = WorkerPool(services, size=1)
    workers.start()
    wake = Path(str(settings.db_path) + ".wake")
    assert [p.name for p in wake.iterdir()] == [services.queue.doorbell.name]  # type: ignore[union-attr]
    workers.stop(grace_seconds=2)
    assert list(wake.iterdir()) == []
