"""Celery on Redis, as the peer benchmarks use it (client and ``celery worker``).

``task_acks_late``: a message is acknowledged after its task ran, so a worker that dies mid-task
leaves it to be delivered again - at least once, as hatchway (Celery's default acknowledges before
running: at most once). No result backend: nothing records a task's outcome but the task's own
marker line. Everything else is Celery's default (JSON messages, prefetch multiplier 4). The broker
is ``BENCH_REDIS_URL`` (the Redis the benchmark started), or set ``app.conf.broker_url`` before use.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.stacks import work

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL"), set_as_current=False)
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)


@app.task(name="true_and_mark")  # type: ignore[untyped-decorator]
def true_and_mark(marker: str, index: int) -> None:
    work.true_and_mark(marker, index)
