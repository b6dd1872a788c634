"""The client's retries against a scripted HTTP server on a real socket: which answers are retried,
how long it waits (``Retry-After`` first), and that a POST without an Idempotency-Key is sent once."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hatchway.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    HatchwayError,
    NotFound,
    Retry,
    TooManyRequests,
    Unavailable,
)
from tests.helpers import free_port

RUN = {"id": "run_01KBX3Y8M4ZQ7W2N5V6T9R0PAB", "project_id": "proj_local", "environment": "development",
       "action": {"name": "etl", "version": 1, "digest": "sha256:" + "0" * 64}, "invoked": "run", "mode": "async",
       "status": "ENQUEUED", "attempt": 1, "max_attempts": 1, "parameters": {}, "ret": None, "exports": {},
       "os": [], "error": None, "created_at": "2026-12-07T04:48:04Z"}  # fmt: skip


class Script:
    """The answers the server gives, in order (then 200 with RUN), and the requests it saw."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[str, str, str | None]] = []


@pytest.fixture
def script() -> Iterator[tuple[Script, str]]:
    plan = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            plan.seen.append((self.command, self.path, self.headers.get("idempotency-key")))
            status, headers = plan.answers.pop(0) if plan.answers else (200, {})
            body = RUN if status == 200 else {"status": "error", "error": "x", "code": status, "message": "busy"}
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's names

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield plan, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def client(url: str, slept: list[float], retries: int = 3) -> Client:
    return Client(url, "t", retries=Retry(retries, backoff=0.5, max_backoff=4.0), sleep=slept.append)


def test_429_and_503_are_retried_after_retry_after(script: tuple[Script, str]) -> None:
    plan, url = script
    plan.answers = [(429, {"retry-after": "2"}), (503, {"retry-after": "1"}), (503, {})]
    slept: list[float] = []
    with client(url, slept) as hw:
        run = hw.get_run(RUN["id"])
    assert run.id == RUN["id"] and len(plan.seen) == 4
    assert slept[:2] == [2.0, 1.0] and 1.0 <= slept[2] <= 2.0  # the third try: a backoff of 2 s, jittered


def test_retries_end_with_the_typed_error(script: tuple[Script, str]) -> None:
    plan, url = script
    plan.answers = [(503, {})] * 3
    slept: list[float] = []
    with client(url, slept, retries=2) as hw, pytest.raises(Unavailable) as failed:
        hw.get_run(RUN["id"])
    assert len(plan.seen) == 3 and len(slept) == 2 and failed.value.status_code == 503
    assert isinstance(failed.value, HatchwayError) and failed.value.message == "busy"


def test_a_post_without_an_idempotency_key_is_sent_once(script: tuple[Script, str]) -> None:
    plan, url = script
    plan.answers = [(429, {"retry-after": "1"})]
    slept: list[float] = []
    with client(url, slept) as hw, pytest.raises(TooManyRequests) as refused:
        hw.start_run("etl")
    assert len(plan.seen) == 1 and slept == [] and refused.value.retry_after == 1.0
    # with a key the same request is retried, with its key each time
    plan.answers = [(503, {"retry-after": "0"})]
    with client(url, slept) as hw:
        assert hw.start_run("etl", idempotency_key="k-1").status == "ENQUEUED"
    assert plan.seen[1:] == [("POST", "/v1/projects/proj_local/actions/etl/runs", "k-1")] * 2


def test_a_key_still_in_progress_is_asked_again_after_retry_after(script: tuple[Script, str]) -> None:
    plan, url = script
    plan.answers = [(409, {"retry-after": "4"})]
    slept: list[float] = []
    with client(url, slept) as hw:
        assert hw.start_run("etl", idempotency_key="k-2").id == RUN["id"]
    assert slept == [4.0] and len(plan.seen) == 2
    # a 409 without Retry-After (the key reused with another body) is final
    plan.answers = [(409, {})]
    with client(url, slept) as hw, pytest.raises(Conflict):
        hw.start_run("etl", idempotency_key="k-2")
    assert len(plan.seen) == 3


def test_errors_that_retrying_cannot_fix_are_not_retried(script: tuple[Script, str]) -> None:
    plan, url = script
    plan.answers = [(404, {})]
    with client(url, []) as hw, pytest.raises(NotFound):
        hw.get_run(RUN["id"])
    assert len(plan.seen) == 1


def test_no_server_is_a_connection_failure_retried_then_raised() -> None:
    slept: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    with client(url, slept, retries=2) as hw, pytest.raises(ConnectionFailed) as failed:
        hw.get_run(RUN["id"])
    assert len(slept) == 2 and failed.value.url == url and failed.value.reason == "ConnectError"
    assert isinstance(failed.value.__cause__, Exception)  # the httpx error is kept as the cause


def test_the_async_client_retries_the_same_way(script: tuple[Script, str]) -> None:
    plan, url = script
    plan.answers = [(503, {"retry-after": "3"})]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> str:
        async with AsyncClient(url, "t", sleep=sleep) as hw:
            return (await hw.get_run(RUN["id"])).status

    assert asyncio.run(main()) == "ENQUEUED" and slept == [3.0] and len(plan.seen) == 2
