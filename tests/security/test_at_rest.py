"""No secret at rest (issue 15, part 6), against a real `hatchway serve` with default settings.

A canary passed as a ``#`` parameter is written by the action everywhere an action can write:
stdout, stderr, ``out/files``, Keboola's ``out/tables``, its file stash (TMPDIR), ``result.json``
and ``exports.json``. Afterwards no file under the home - blobs, the SQLite database and its WAL,
the server's log - holds it in any spelling, and what the API hands back is redacted, except a
binary artifact's bytes, which no search can redact (kept encrypted on disk all the same).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hatchway.blobs import MAGIC
from tests.functional.test_secrets import spellings
from tests.helpers import ADMIN_TOKEN, LiveServer

CANARY = "Canary-at-rest-5e1d/+=?&"
PROJECT = "/v1/projects/proj_local"
#: the action: the canary everywhere an action writes, and what its stash held before
SCRIPT = r"""
import base64, json, os, sys
from urllib.parse import quote
data = os.environ["HATCHWAY_DATA_DIR"]
config = json.load(open(os.path.join(data, "config.json")))
secret = config["parameters"]["#canary"]
tmp = os.environ["TMPDIR"]
kept = os.path.join(tmp, "kept.txt")
previous = open(kept).read() if os.path.exists(kept) else None
with open(kept, "w") as out:
    out.write(f"token={secret}\n" + "filler " * 40000 + base64.b64encode(secret.encode()).decode())
with open(os.path.join(tmp, "state.bin"), "wb") as out:
    out.write(b"\xff\xfe" + secret.encode())
print("stderr", secret, quote(secret, safe=""), file=sys.stderr)
answer = {"secret": secret, "previous": previous}
if config["action"] != "run":
    print(json.dumps(answer))
    sys.exit(0)
print("stdout", secret, json.dumps(secret), flush=True)
files = os.path.join(data, "out", "files", "deep")
tables = os.path.join(data, "out", "tables")
os.makedirs(files)
os.makedirs(tables)
with open(os.path.join(files, "report.txt"), "w") as out:
    out.write(("x" * 700000 + secret + "\n") * 3)  # secrets beyond the first piece of the stream
with open(os.path.join(tables, "t.csv"), "w") as out:
    out.write(f"id,value\n1,{secret}\n2,{quote(secret, safe='')}\n3,\u00e4{secret}\u6f22\n")
with open(os.path.join(data, "out", "files", "raw.bin"), "wb") as out:
    out.write(b"\x00\xff" + secret.encode())
json.dump(answer, open(os.path.join(data, "out", "result.json"), "w"))
json.dump({"s": secret}, open(os.path.join(data, "out", "exports.json"), "w"))
"""


def holding_the_canary(home: Path) -> list[str]:
    """Every file under ``home`` whose bytes hold a spelling of the canary."""
    found = []
    for path in sorted(home.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path.relative_to(home)}: {form!r}" for form in spellings(CANARY) if form in data]
    return found


@dataclass
class Exercised:
    """A home after a stopped server saw the canary in every way, and what its API answered."""

    home: Path
    results: dict[str, Any]


@pytest.fixture(scope="module")
def exercised(tmp_path_factory: pytest.TempPathFactory) -> Exercised:
    root = tmp_path_factory.mktemp("at-rest")
    script = root / "canary.py"
    script.write_text(SCRIPT)
    home = root / "home"
    # a file kept in the clear by a version before blobs were encrypted
    legacy = home / "blobs" / "files" / "proj_local" / "development" / "legacy.txt"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"kept before encryption: " + CANARY.encode())
    server = LiveServer(home).start()
    try:
        with server.client() as hw:
            hw.register_action(
                {
                    "name": "canary",
                    "parameters": [{"name": "#canary"}],
                    "sync_actions": ["check"],
                    "container_parameters": {"entry_point": [sys.executable], "command": [str(script)]},
                }
            )
        results = _exercise(server)
    finally:
        assert server.stop() is not None
    return Exercised(home, results)


def _call(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
    answer = httpx.request(method, server.url + path, headers=headers, timeout=60, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer


def _exercise(server: LiveServer) -> dict[str, Any]:
    """Every way the canary reaches the gateway; what the API answered, kept for the tests."""
    results: dict[str, Any] = {}
    connect = {"id": "canary", "external_user_id": "u-1", "configured_props": {"#canary": CANARY}}
    first = _call(server, "POST", "/v1/connect/proj_local/actions/run", json={**connect, "stash_id": "NEW"}).json()
    again = _call(server, "POST", "/v1/connect/proj_local/actions/run",
                  json={**connect, "stash_id": first["stash_id"]}).json()  # fmt: skip
    results["connect"] = [first, again]
    results["sync"] = _call(server, "POST", f"{PROJECT}/actions/canary/sync/check",
                            json={"parameters": {"#canary": CANARY}}).json()  # fmt: skip
    runs = _call(server, "GET", f"{PROJECT}/runs", params={"limit": 50}).json()["items"]
    results["runs"] = runs
    run_id = next(r["id"] for r in runs if r["invoked"] == "run")
    results["logs"] = [_call(server, "GET", f"{PROJECT}/runs/{r['id']}/logs").json() for r in runs]
    listed = _call(server, "GET", f"{PROJECT}/runs/{run_id}/artifacts").json()
    results["artifacts"] = {
        item["path"]: _call(server, "GET", f"{PROJECT}/runs/{run_id}/artifacts/{item['path']}").content
        for item in listed["items"]
    }
    results["listed"] = listed["items"]
    _call(server, "PUT", f"{PROJECT}/files/uploads/mine.txt", content=b"the user's own " + CANARY.encode())
    results["upload"] = _call(server, "GET", f"{PROJECT}/files/uploads/mine.txt").content
    results["legacy"] = _call(server, "GET", f"{PROJECT}/files/legacy.txt").content
    return results


def test_no_file_under_the_home_holds_the_canary(exercised: Exercised) -> None:
    home = exercised.home
    # Given every way an action can write the canary, and a server that has stopped
    # Then no file of its home - blobs, database, WAL, log - holds any spelling of it
    assert (home / "hatchway.db").is_file() and list((home / "blobs").rglob("*.csv"))
    assert holding_the_canary(home) == []
    # And no attempt left its files behind in the clear
    assert not [p for p in (home / "work").rglob("*") if p.is_file() and "journal" not in p.name]


def test_every_blob_on_disk_is_encrypted(exercised: Exercised) -> None:
    blobs = [p for p in (exercised.home / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) >= 6  # artifacts, a stash's files, an upload, the legacy file
    for path in blobs:
        assert path.read_bytes().startswith(MAGIC), path


def test_answers_and_logs_are_redacted(exercised: Exercised) -> None:
    results = exercised.results
    first, again = results["connect"]
    assert first["ret"] == {"secret": "[hidden]", "previous": None}
    assert first["exports"] == {"s": "[hidden]"}
    # the stash was kept redacted: the next call of the action finds the marker, not the secret
    assert again["ret"]["previous"].startswith("token=[hidden]\nfiller") and again["ret"]["previous"].endswith(
        "filler [hidden]"
    )
    assert results["sync"]["ret"] == {"secret": "[hidden]", "previous": None}
    messages = [entry["msg"] for page in results["logs"] for entry in page["items"]]
    assert 'stdout [hidden] "[hidden]"' in messages and "stderr [hidden] [hidden]" in messages
    blob = json.dumps(results["connect"]) + json.dumps(results["sync"]) + json.dumps(results["runs"])
    assert not [form for form in spellings(CANARY) if form in (blob + json.dumps(messages)).encode()]


def test_text_artifacts_are_downloaded_redacted_and_binary_ones_as_they_were(exercised: Exercised) -> None:
    artifacts = exercised.results["artifacts"]
    assert set(artifacts) == {"files/deep/report.txt", "files/raw.bin", "tables/t.csv"}
    # text (valid UTF-8): every occurrence hidden, everything else byte for byte
    assert artifacts["files/deep/report.txt"] == ("x" * 700000 + "[hidden]\n").encode() * 3
    assert artifacts["tables/t.csv"] == "id,value\n1,[hidden]\n2,[hidden]\n3,\u00e4[hidden]\u6f22\n".encode()
    # binary: kept as the action wrote it (a search cannot redact it reliably), encrypted on disk
    assert artifacts["files/raw.bin"] == b"\x00\xff" + CANARY.encode()
    sizes = {item["path"]: item["size"] for item in exercised.results["listed"]}
    assert sizes == {path: len(data) for path, data in artifacts.items()}


def test_files_come_back_as_they_were_uploaded_and_blobs_kept_in_the_clear_are_readable(
    exercised: Exercised,
) -> None:
    results = exercised.results
    # an upload is the user's own data: encrypted at rest, never altered
    assert results["upload"] == b"the user's own " + CANARY.encode()
    # a blob written before blobs were encrypted is read as it is, and was encrypted in place at start
    assert results["legacy"] == b"kept before encryption: " + CANARY.encode()
    legacy = exercised.home / "blobs" / "files" / "proj_local" / "development" / "legacy.txt"
    assert legacy.read_bytes().startswith(MAGIC)
