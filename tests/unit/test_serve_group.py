"""What each process of ``hatchway serve --processes N`` gets of the gateway's settings."""

from __future__ import annotations

from pathlib import Path

from hatchway.config import Settings
from hatchway.serve_group import ServeGroup


def group(tmp_path: Path, processes: int, workers: int, budget: int = 30) -> ServeGroup:
    settings = Settings(home=tmp_path).with_(processes=processes, workers=workers, auth_failure_budget=budget)
    return ServeGroup(settings, "127.0.0.1", 8080, None, None)


def test_the_workers_are_shared_out_and_add_up(tmp_path: Path) -> None:
    assert [group(tmp_path, 2, 2).member_settings(i).runs.workers for i in range(2)] == [1, 1]
    assert [group(tmp_path, 3, 5).member_settings(i).runs.workers for i in range(3)] == [2, 2, 1]
    # fewer workers than processes: the last ones serve the API only
    assert [group(tmp_path, 3, 1).member_settings(i).runs.workers for i in range(3)] == [1, 0, 0]


def test_each_process_allows_its_share_of_the_authentication_failure_budget(tmp_path: Path) -> None:
    assert group(tmp_path, 2, 2, budget=30).member_settings(0).server.auth_failure_budget == 15
    assert group(tmp_path, 4, 2, budget=30).member_settings(3).server.auth_failure_budget == 8
    assert group(tmp_path, 2, 2, budget=1).member_settings(1).server.auth_failure_budget == 1


def test_everything_else_is_the_gateways(tmp_path: Path) -> None:
    made = group(tmp_path, 2, 4)
    member = made.member_settings(1)
    assert member.sync.sync_concurrency == made.settings.sync.sync_concurrency  # shared, not split
    assert member.server.processes == 2
    assert member.home == tmp_path
