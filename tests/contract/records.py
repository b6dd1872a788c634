"""Records and helpers the repository contract tests share."""

from __future__ import annotations

import threading
from typing import Any

from hatchway.domain.actions import ActionRecord
from hatchway.domain.runs import Run, new_run_id, now_ms
from hatchway.domain.spec import digest_of
from hatchway.store.actions import BaseActionRepo

P, Q = "proj_one", "proj_two"
DEV, PROD = "development", "production"


def spec(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "container_parameters": {"command": ["true"]}, **extra}


def register(
    actions: BaseActionRepo, document: dict[str, Any], project: str = P, env: str = DEV
) -> tuple[ActionRecord, bool]:
    return actions.register_version(project, env, document, digest_of(document))


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
