"""The local HTTP server: each request becomes an API Gateway HTTP API (v2) event for the resolver.

This is the chalice ``LocalGateway`` idea: the laptop runs the production code path. The ASGI
application below builds the same event API Gateway would send to ``handlers/api.py``, calls the
same resolver and turns its answer back into HTTP. Reads are resolved on the event loop (they
are a few SQLite statements); writes, which may wait - sync calls, runs waited for, idempotent
submits, a locked store - and any route on the networked aws backend run in a thread pool.
uvicorn is imported only to serve.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hatchway.api.errors import dumps, error_answer
from hatchway.errors import PayloadTooLarge

log = logging.getLogger("hatchway.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class LambdaContext:
    """The little of a Lambda context the resolver reads."""

    function_name = "hatchway-local"
    memory_limit_in_mb = 0
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:hatchway-local"
    aws_request_id = ""

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_event(
    method: str,
    path: str,
    query: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    client: str = "127.0.0.1",
    host: str = "localhost",
    scheme: str = "http",
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event for one request."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        merged[name] = f"{merged[name]},{value}" if name in merged else value
    merged["x-forwarded-proto"] = scheme  # as API Gateway does, whatever the client sent
    params: dict[str, str] = {}
    if query:
        from urllib.parse import parse_qsl

        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
    try:
        text: str | None = body.decode("utf-8") if body else None
        is_b64 = False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode(), True
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": merged,
        "requestContext": {
            "accountId": "local",
            "apiId": "hatchway-local",
            "domainName": merged.get("host", host),
            "domainPrefix": "hatchway-local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": client,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    return event


class AsgiGateway:
    """An ASGI application that serves a powertools resolver the way API Gateway would call it."""

    def __init__(
        self,
        resolve: Callable[[dict[str, Any], Any], dict[str, Any]],
        max_body_bytes: int,
        is_networked: bool = False,
        threads: int = 64,
        on_startup: Callable[[], None] | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.resolve = resolve
        self.max_body_bytes = max_body_bytes
        self.is_networked = is_networked
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hatchway-http")
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.context = LambdaContext()

    def blocks(self, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether a request may wait long enough to stall the event loop.

        Reads are a few statements that never wait for a lock (SQLite in WAL mode). Any write may
        wait - for a sync action, an Idempotency-Key held by another request, or a store locked by
        another process (up to its busy timeout) - and must not hold up ``/health`` meanwhile.
        """
        return self.is_networked or method not in ("GET", "HEAD", "OPTIONS")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            body = await self._read_body(headers, receive)
        except PayloadTooLarge as exc:
            code, answer, extra = error_answer(exc)
            await self._send(send, code, {"content-type": "application/json", "connection": "close", **extra},
                             dumps(answer).encode())  # fmt: skip
            return
        client = scope.get("client") or ("127.0.0.1", 0)
        query = scope.get("query_string", b"").decode("latin-1")
        event = http_event(
            scope["method"], scope["path"], query, headers, body, client[0], scheme=scope.get("scheme", "http")
        )
        if self.blocks(scope["method"], scope["path"], headers):
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self.pool, self.resolve, event, self.context)
        else:
            result = self.resolve(event, self.context)
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        response_headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        await self._send(send, int(result["statusCode"]), response_headers, data, result.get("cookies") or [])

    async def _read_body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes:
        for name, value in headers:
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        raise PayloadTooLarge(f"the request body is larger than {self.max_body_bytes // 1048576} MiB")
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise PayloadTooLarge(f"the request body is larger than {self.max_body_bytes // 1048576} MiB")
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    async def _send(
        send: Send, code: int, headers: dict[str, str], data: bytes, cookies: list[str] | None = None
    ) -> None:
        raw = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(data)).encode()))
        raw.extend((b"set-cookie", c.encode("latin-1")) for c in cookies or [])
        await send({"type": "http.response.start", "status": code, "headers": raw})
        await send({"type": "http.response.body", "body": data})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup:
                        await asyncio.get_running_loop().run_in_executor(None, self.on_startup)
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.on_shutdown:
                    await asyncio.get_running_loop().run_in_executor(None, self.on_shutdown)
                self.pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def serve(
    app: AsgiGateway,
    host: str,
    port: int,
    log_level: str = "warning",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    graceful_seconds: float = 30.0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - optional speed-up
        loop = "asyncio"
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level.lower(),
        log_config=None,  # its loggers write through the gateway's JSON handler (observability.logs)
        access_log=False,
        http="httptools",
        loop=loop,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=int(graceful_seconds),
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            if server.started:
                on_ready()

        server.startup = startup  # type: ignore[method-assign]
    server.run()
