"""The bare-ASGI floor: the least an HTTP endpoint in front of a command, or of a durable queue,
can do - what a do-it-yourself gateway would be before it authenticates, validates, records or
confines anything.

Served by the same uvicorn as ``hatchway serve``, with the options of hatchway's server that apply
(httptools, uvloop where installed else asyncio, one process, no access log, no server or date
header, keep-alive 5 s):

* ``POST /call/<name>``: reads and parses the JSON body, runs the command named ``<name>`` with
  ``subprocess.run`` (output captured, a minimal environment) in the event loop's thread pool - a
  blocking spawn must not stop the loop - and answers its stdout, parsed as JSON, with 200.
* ``POST /runs``: reads and parses the JSON body and records a run - one INSERT of a row with an id,
  a status, a time and the request as JSON - in SQLite (WAL, ``synchronous=NORMAL``: what hatchway's
  store does for an accepted run by default, committed before the answer), from the thread pool
  (one connection per thread, as hatchway's store), and answers 202 with the record.
* ``GET /health``: 200.

``python -m bench.stacks.asgi_floor --port P --db PATH --commands JSON``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.stacks.work import ENV

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RunTable:
    """Runs in one SQLite file, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.local = threading.local()
        with self.connection() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, status TEXT NOT NULL, "
                "created_at INTEGER NOT NULL, data TEXT NOT NULL)"
            )

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self.local.conn = conn
        return conn

    def insert(self, record: dict[str, Any]) -> None:
        self.connection().execute(
            "INSERT INTO runs (id, status, created_at, data) VALUES (?, ?, ?, ?)",
            (record["id"], record["status"], record["created_at"], json.dumps(record)),
        )


def build(commands: dict[str, list[str]], db: Path) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI application."""
    runs = RunTable(db)

    async def answer(send: Send, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        loop = asyncio.get_running_loop()
        if method == "POST" and path.startswith("/call/") and path[6:] in commands:
            json.loads(b"".join(chunks) or b"{}")
            argv = commands[path[6:]]
            done = await loop.run_in_executor(
                None, lambda: subprocess.run(argv, capture_output=True, env=ENV, check=False)
            )
            if done.returncode != 0:
                await answer(send, 502, {"error": f"exited {done.returncode}"})
                return
            await answer(send, 200, json.loads(done.stdout))
        elif method == "POST" and path == "/runs":
            request = json.loads(b"".join(chunks) or b"{}")
            now = int(time.time() * 1000)
            record = {"id": uuid.uuid4().hex, "status": "ENQUEUED", "created_at": now, "request": request}
            await loop.run_in_executor(None, runs.insert, record)
            await answer(send, 202, record)
        elif method == "GET" and path == "/health":
            await answer(send, 200, {"status": "ok"})
        else:
            await answer(send, 404, {"error": "not found"})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the bare-ASGI floor of the peer benchmarks")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--commands", default="{}", help='JSON: {"name": ["argv", ...]}')
    args = parser.parse_args(argv)
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # as hatchway's server: uvloop only where it is installed
        loop = "asyncio"
    config = uvicorn.Config(
        build(json.loads(args.commands), args.db),
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        http="httptools",
        ws="none",
        loop=loop,
        timeout_keep_alive=5,
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
