"""Downloads larger than an answer may be (HATCHWAY_MAX_ANSWER_BYTES, API Gateway's 6 MiB): the
embedded server streams them in bounded memory; behind API Gateway they are a 303 to a link that
S3 answers. Small ones stay in the answer."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, LiveServer

PROJECT = "/v1/projects/proj_local"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}
#: an action that leaves a 7 MiB binary artifact (over API Gateway's 6 MiB)
BIG_ARTIFACT = """
import os, sys
os.makedirs("out/files", exist_ok=True)
with open("out/files/big.bin", "wb") as f:
    f.write(bytes(range(256)) * (7 * 4096))
print("{}")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("downloads")
    script = root / "big.py"
    script.write_text(BIG_ARTIFACT)
    server = LiveServer(root / "home").start()
    try:
        with server.client() as hw:
            hw.register_action(
                {"name": "big", "container_parameters": {"entry_point": [sys.executable], "command": [str(script)]}}
            )
        yield server
    finally:
        server.kill()


def call(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=AUTH, timeout=60, **kwargs)


def test_an_artifact_over_six_mib_downloads_whole_from_the_embedded_server(server: LiveServer) -> None:
    # Given a run that left a 7 MiB artifact
    with server.client() as hw:
        run = hw.wait(hw.start_run("big", {})["id"], timeout=60)
    assert run["status"] == "SUCCESSFUL", run
    # When it is downloaded
    with httpx.stream("GET", f"{server.url}{PROJECT}/runs/{run['id']}/artifacts/files/big.bin", headers=AUTH,
                      timeout=60) as answer:  # fmt: skip
        # Then it comes whole, with its length announced and the download headers of a small one
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(7 * 1024 * 1024)
        assert answer.headers["content-type"] == "application/octet-stream"
        assert answer.headers["content-disposition"] == 'attachment; filename="big.bin"'
        data = answer.read()
    assert data == bytes(range(256)) * (7 * 4096)


def test_a_file_over_the_answer_limit_streams_and_a_small_one_stays_in_the_answer(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", HATCHWAY_MAX_ANSWER_BYTES=str(64 * 1024)).start()
    try:
        large, small = os.urandom(1024 * 1024), os.urandom(1024)
        assert call(server, "PUT", f"{PROJECT}/files/in/large.bin", content=large).status_code == 201
        assert call(server, "PUT", f"{PROJECT}/files/in/small.bin", content=small).status_code == 201
        got = call(server, "GET", f"{PROJECT}/files/in/large.bin")
        assert got.status_code == 200 and got.content == large
        assert got.headers["content-length"] == str(len(large))
        assert call(server, "GET", f"{PROJECT}/files/in/small.bin").content == small
        # a file that is not there is a 404 in the error shape, as before
        missing = call(server, "GET", f"{PROJECT}/files/in/none.bin")
        assert missing.status_code == 404 and missing.json()["code"] == 404
    finally:
        server.kill()
