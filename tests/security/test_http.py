"""Issue 15, part 7: connections and brute force against a real ``hatchway serve``.

* Connections that never finish their request (opened and left silent, or fed part of a head, a
  byte at a time) are closed by the server after ``HATCHWAY_HTTP_HEADER_TIMEOUT_SECONDS`` (10 s),
  with a 408 in the error shape when part of a request came; ``/health`` answers meanwhile.
* Heads over ``HATCHWAY_HTTP_MAX_HEADER_BYTES`` are a 431, bodies that stall a 408, connections
  beyond ``HATCHWAY_HTTP_MAX_CONNECTIONS`` a 503 with Retry-After.
* Failed authentications have a budget per client address (``HATCHWAY_AUTH_FAILURE_BUDGET``, 30):
  past it, 429 with Retry-After in the error shape; other clients are unaffected, and a spoofed
  X-Forwarded-For counts for nothing unless ``HATCHWAY_TRUSTED_PROXIES`` names the sender.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, LiveServer, wait_until

P = "/v1/projects/proj_local"
HEADER_TIMEOUT = 10.0  # the default
PARTIAL_HEAD = b"GET /v1/projects/proj_local/runs HTTP/1.1\r\nHost: hatchway\r\nX-Slow: "


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("http") / "home").start()
    yield live
    live.kill()


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with small limits, for what the defaults make slow to test."""
    live = LiveServer(
        tmp_path_factory.mktemp("tight") / "home",
        HATCHWAY_HTTP_BODY_TIMEOUT_SECONDS="1",
        HATCHWAY_HTTP_MAX_CONNECTIONS="20",
        HATCHWAY_AUTH_FAILURE_BUDGET="3",
        HATCHWAY_TRUSTED_PROXIES="127.0.0.1",
    ).start()
    yield live
    live.kill()


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(answer: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def assert_shape(code: int, headers: dict[str, str], body: dict[str, Any], expected: int) -> None:
    assert code == expected and headers["content-type"] == "application/json", (code, headers, body)
    assert body["status"] == "error" and body["code"] == expected and body["message"], body


# ---- connections --------------------------------------------------------------------------------


def test_two_hundred_half_open_connections_are_closed_after_the_header_timeout(server: LiveServer) -> None:
    # Given 100 connections that say nothing and 100 that stop in the middle of their headers
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    partial = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    for sock in partial:
        sock.sendall(PARTIAL_HEAD)
    opened = time.monotonic()
    received: dict[socket.socket, bytearray] = {sock: bytearray() for sock in silent + partial}
    selector = selectors.DefaultSelector()
    try:
        # Then the server still answers others meanwhile
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        # And closes every one of them once the header timeout has passed
        for sock in received:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)

        def all_closed() -> bool:
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                chunk = sock.recv(65536)
                received[sock] += chunk
                if not chunk:
                    selector.unregister(sock)
            return not selector.get_map()

        wait_until(all_closed, HEADER_TIMEOUT + 20, 0, "the server to close the half-open connections")
        assert time.monotonic() - opened >= HEADER_TIMEOUT - 1  # by the timeout, not at once
    finally:
        selector.close()
        for sock in received:
            sock.close()
    # the silent ones quietly, the others with a 408 in the error shape
    assert all(received[sock] == b"" for sock in silent)
    for sock in partial:
        assert_shape(*parse(bytes(received[sock])), 408)


def test_a_silent_connection_gets_no_answer_and_a_half_head_gets_a_408(server: LiveServer) -> None:
    with (
        socket.create_connection(("127.0.0.1", server.port)) as quiet,
        socket.create_connection(("127.0.0.1", server.port)) as half,
    ):
        half.sendall(PARTIAL_HEAD)
        got_half = read_until_closed(half, HEADER_TIMEOUT + 20)
        got_quiet = read_until_closed(quiet, HEADER_TIMEOUT + 20)
    assert got_quiet == b""  # nothing was asked: nothing is answered (a browser's spare connection)
    assert_shape(*parse(got_half), 408)


def test_a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_header_timeout(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        began = time.monotonic()
        answer = b""
        sock.settimeout(0.3)
        for byte in PARTIAL_HEAD + b"x" * 1000:  # one byte every 0.3 s would take five minutes
            try:
                sock.sendall(bytes([byte]))
                if chunk := sock.recv(65536):
                    answer += chunk
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if time.monotonic() - began > HEADER_TIMEOUT + 20:
                pytest.fail("the server let the head trickle on")
        sock.settimeout(10)
        with_rest = answer + read_until_closed(sock, 10)
    assert_shape(*parse(with_rest), 408)


def test_a_head_larger_than_the_limit_is_a_431(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert_shape(*parse(read_until_closed(sock, 20)), 431)


def test_a_body_that_stalls_is_a_408(tight: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", tight.port)) as sock:
        sock.sendall(
            f"POST {P}/encrypt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"value":'.encode()
        )
        code, headers, body = parse(read_until_closed(sock, 20))
    assert_shape(code, headers, body, 408)
    assert "body" in body["message"]


def test_connections_over_the_limit_are_answered_503_and_closed(tight: LiveServer) -> None:
    # Given as many open connections as the server takes (20 here)
    held = [socket.create_connection(("127.0.0.1", tight.port)) for _ in range(20)]
    try:
        # When one more connects
        with socket.create_connection(("127.0.0.1", tight.port)) as extra:
            answer = read_until_closed(extra, 20)
        # Then it is told to come back later, in the error shape
        code, headers, body = parse(answer)
        assert_shape(code, headers, body, 503)
        assert int(headers["retry-after"]) >= 1
    finally:
        for sock in held:
            sock.close()
    # And once they are gone, connections are served again
    wait_until(
        lambda: httpx.get(f"{tight.url}/health", timeout=5).status_code == 200, 20, 0.1, "connections to be accepted"
    )


# ---- failed authentication ------------------------------------------------------------------------


def from_address(server: LiveServer, address: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token}"},
        transport=httpx.HTTPTransport(local_address=address),
        timeout=30,
    )


def test_a_client_guessing_tokens_gets_429_and_others_are_not_affected(server: LiveServer) -> None:
    with from_address(server, "127.0.0.1", "hw_wrongwrongwrong_guess") as guesser:
        # When one client tries 40 wrong tokens (each claiming another X-Forwarded-For)
        codes = [guesser.get(f"{P}/runs", headers={"X-Forwarded-For": f"10.9.8.{n}"}).status_code for n in range(40)]
        # Then the first 30 are 401 and the rest 429 - the spoofed addresses count for nothing
        assert codes == [401] * 30 + [429] * 10, codes
        refused = guesser.get(f"{P}/runs")
        body = refused.json()
        assert refused.status_code == 429 and body["status"] == "error" and body["code"] == 429, body
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 300
        # even a right token from that address waits (or the budget would not slow guessing)
        assert guesser.get(f"{P}/runs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 429
        assert guesser.post("/v1/oauth/token", json={"client_id": "x", "client_secret": "y"}).status_code == 429
        assert guesser.get("/health").status_code == 200  # what needs no token is not refused
    # And another client is not affected: its right token works, its wrong one is a plain 401
    with from_address(server, "127.0.0.2", ADMIN_TOKEN) as other:
        assert other.get(f"{P}/runs").status_code == 200
        assert other.get(f"{P}/runs", headers={"Authorization": "Bearer nope"}).status_code == 401
    # And once Retry-After has passed, the first client's right token works again
    with from_address(server, "127.0.0.1", ADMIN_TOKEN) as again:
        wait_until(lambda: again.get(f"{P}/runs").status_code == 200, retry_after + 20, 0.5, "the budget to refill")


def test_oauth_client_secrets_spend_the_same_budget(tight: LiveServer) -> None:
    with from_address(tight, "127.0.0.3", "unused") as guesser:
        codes = [
            guesser.post(
                "/v1/oauth/token", json={"client_id": "hatchway-admin", "client_secret": f"guess-{n}"}
            ).status_code
            for n in range(5)
        ]
    assert codes == [401, 401, 401, 429, 429], codes


def test_behind_a_trusted_proxy_the_forwarded_address_has_the_budget(tight: LiveServer) -> None:
    # Given a server that trusts the proxy at 127.0.0.1, and a client behind it guessing tokens
    with from_address(tight, "127.0.0.1", "hw_wrongwrongwrong_guess") as proxy:
        guessed = [proxy.get(f"{P}/runs", headers={"X-Forwarded-For": "203.0.113.7"}).status_code for _ in range(5)]
        assert guessed == [401, 401, 401, 429, 429], guessed
        # Then another client behind the same proxy is not affected
        right = proxy.get(
            f"{P}/runs", headers={"X-Forwarded-For": "203.0.113.8", "Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert right.status_code == 200, right.text


def test_many_guessers_at_once_leave_the_server_answering(server: LiveServer) -> None:
    # 600 wrong tokens from 4 threads as fast as they go: refused, and /health is fine throughout
    codes: list[int] = []
    lock = threading.Lock()

    def guess() -> None:
        with from_address(server, "127.0.0.4", "hw_wrongwrongwrong_guess") as guesser:
            for _ in range(150):
                code = guesser.get(f"{P}/runs").status_code
                with lock:
                    codes.append(code)

    threads = [threading.Thread(target=guess) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    for thread in threads:
        thread.join(timeout=120)
    assert len(codes) == 600 and set(codes) == {401, 429}
    assert codes.count(401) <= 30 + 4 * 16  # the budget, and at most the requests in flight when it ran out
