"""The local HTTP server: each request becomes an API Gateway HTTP API (v2) event for the resolver.

This is the chalice ``LocalGateway`` idea: the laptop runs the production code path. The ASGI
application below builds the same event API Gateway would send to ``handlers/api.py``, calls the
same resolver and turns its answer back into HTTP.

The event loop only moves bytes: every request but ``/health`` is resolved in a thread pool -
reads in one, writes (which may wait: sync calls, runs waited for, idempotent submits, a locked
store) in another, so neither kind can starve the other and a large answer never holds up the
loop. Connections are watched below the ASGI application, in uvicorn's protocol (see
:func:`guarded_protocol`): headers and bodies have deadlines, connections a ceiling, request heads
a size limit, and whatever the server answers on its own is in the API's error shape.
uvicorn is imported only to serve. :func:`run_server` is ``hatchway serve``: the services, their
worker pool and the API in one process.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatchway import wiring
from hatchway.api.errors import dumps, error_answer, unexpected_answer
from hatchway.api.raw import STREAMS
from hatchway.config import Settings
from hatchway.domain.spec import resolve_local_paths
from hatchway.domain.tenants import DEFAULT_ENVIRONMENT, DEFAULT_PROJECT, Principal
from hatchway.errors import BadRequest, HatchwayError, PayloadTooLarge, Unavailable
from hatchway.services import Services

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


#: a large download's chunks, opened when the answer is sent (api.raw.download_answer)
Stream = Callable[[], AbstractContextManager[Iterator[bytes] | None]]
_Answer = tuple[int, dict[str, str], bytes, list[str], Stream | None]


class AsgiGateway:
    """An ASGI application that serves a powertools resolver the way API Gateway would call it."""

    def __init__(
        self,
        resolve: Callable[[dict[str, Any], Any], dict[str, Any]],
        max_body_bytes: int,
        threads: int = 64,
        read_threads: int = 16,
        body_timeout_seconds: float = 60.0,
        on_startup: Callable[[], None] | None = None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.resolve = resolve
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hatchway-http")
        self.read_pool = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="hatchway-read")
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.context = LambdaContext()

    def pool_for(self, method: str, path: str) -> ThreadPoolExecutor | None:
        """Where a request is resolved: None (on the loop) for ``/health`` alone.

        Even a read can take long: a page of large run records is megabytes of JSON to build, which
        holds the interpreter all along - on the loop, every other connection would wait for it.
        Writes may wait longer still (a sync action, an Idempotency-Key held by another request, a
        store locked by another process), so they have threads of their own: a burst of sync calls
        never leaves reads without one, nor the other way round.
        """
        if path == "/health":
            return None
        return self.read_pool if method in ("GET", "HEAD", "OPTIONS") else self.pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            async with asyncio.timeout(self.body_timeout_seconds):
                body = await self._read_body(headers, receive)
        except PayloadTooLarge as exc:
            await self._refuse(send, *error_answer(exc))
            return
        except TimeoutError:
            seconds = f"{self.body_timeout_seconds:g}"
            answer = {"status": "error", "error": "Request timeout", "code": 408,
                      "message": f"the request body did not arrive within {seconds} s"}  # fmt: skip
            await self._refuse(send, 408, answer, {})
            return
        if body is None:
            return  # the client went away before its request was whole: nothing to answer, nothing done
        pool = self.pool_for(scope["method"], scope["path"])
        if pool is None:
            resolved = self._answer(scope, headers, body)
        else:
            resolved = await asyncio.get_running_loop().run_in_executor(pool, self._answer, scope, headers, body)
        code, response_headers, data, cookies, stream = resolved
        if stream is not None:
            await self._stream(send, code, response_headers, stream, pool or self.read_pool)
            return
        await self._send(send, code, response_headers, data, cookies)

    def _answer(self, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes) -> _Answer:
        """Resolve one request into (status, headers, body, cookies, stream); off the loop but for /health."""
        try:
            client = scope.get("client") or ("127.0.0.1", 0)
            query = scope.get("query_string", b"").decode("latin-1")
            event = http_event(
                scope["method"], scope["path"], query, headers, body, client[0], scheme=scope.get("scheme", "http")
            )
            event[STREAMS] = True
            result = self.resolve(event, self.context)
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
            response_headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
            cookies = result.get("cookies") or []
            return int(result["statusCode"]), response_headers, data, cookies, result.get("stream")
        except Exception as exc:  # the resolver answers its own failures; this is the net under it
            code, answer, extra = unexpected_answer(exc)
            return code, {"content-type": "application/json", **extra}, dumps(answer).encode(), [], None

    async def _stream(
        self, send: Send, code: int, headers: dict[str, str], stream: Stream, pool: ThreadPoolExecutor
    ) -> None:
        """A large download, chunk by chunk, each read off the loop: memory stays one chunk whatever
        the size. If the blob went between the answer and its first chunk, the answer is a 404."""
        loop = asyncio.get_running_loop()
        opened = stream()
        chunks = await loop.run_in_executor(pool, opened.__enter__)
        try:
            if chunks is None:
                answer = {"status": "error", "error": "Not found", "code": 404, "message": "the file is gone"}
                await self._send(send, 404, {"content-type": "application/json", "cache-control": "no-store"},
                                 dumps(answer).encode())  # fmt: skip
                return
            raw = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
            await send({"type": "http.response.start", "status": code, "headers": raw})
            while (chunk := await loop.run_in_executor(pool, next, chunks, None)) is not None:
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await loop.run_in_executor(pool, opened.__exit__, None, None, None)

    async def _read_body(self, headers: list[tuple[bytes, bytes]], receive: Receive) -> bytes | None:
        """The request body, or None if the client disconnected before sending all of it."""
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
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise PayloadTooLarge(f"the request body is larger than {self.max_body_bytes // 1048576} MiB")
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _refuse(self, send: Send, code: int, answer: dict[str, Any], extra: dict[str, str]) -> None:
        """An error answer before the request was read whole: the connection closes after it."""
        headers = {"content-type": "application/json", "cache-control": "no-store", "connection": "close", **extra}
        await self._send(send, code, headers, dumps(answer).encode())

    @staticmethod
    async def _send(
        send: Send, code: int, headers: dict[str, str], data: bytes, cookies: list[str] | None = None
    ) -> None:
        raw = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
        if code == 204:  # no content, so neither its length nor its type (RFC 9110 8.6, 15.3.5)
            raw, data = [(k, v) for k, v in raw if k.lower() != b"content-type"], b""
        else:
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
                self.read_pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may take of the server (settings ``HATCHWAY_HTTP_*``)."""

    header_timeout_seconds: float = 10.0
    max_connections: int = 512
    max_header_bytes: int = 32 * 1024


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request head over the limit."""


def error_bytes(code: int, answer: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 error answer in the API's shape, for the protocol to write itself."""
    from http import HTTPStatus

    data = dumps(answer).encode()
    lines = [f"HTTP/1.1 {code} {HTTPStatus(code).phrase}", "content-type: application/json",
             f"content-length: {len(data)}", "cache-control: no-store", "connection: close"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def guarded_protocol(limits: ConnectionLimits) -> type:
    """uvicorn's httptools protocol with deadlines and limits it lacks (uvicorn has a keep-alive
    timeout only once a response went out, and none while a request's head arrives).

    * A request's head (request line and headers) must arrive within ``header_timeout_seconds`` -
      counted from the connection for the first request, from its first byte for later ones - or
      the connection is closed: with a 408 if part of a head came, quietly if nothing did. So
      connections opened and left silent (or fed a byte at a time) do not stay forever.
    * A head larger than ``max_header_bytes`` is a 431 (llhttp sets no limit of its own).
    * Beyond ``max_connections`` open connections, a new one is answered 503 with Retry-After and
      closed at once, before it can hold memory or a file descriptor for long.
    * What uvicorn answers on its own (a request that is not HTTP) is in the API's error shape.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_bytes = 0
            self._is_reading_head = False
            self._is_head_too_large = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self.logger.warning("refused a connection over HATCHWAY_HTTP_MAX_CONNECTIONS")
                self._close_with(*error_answer(Unavailable("the gateway has too many open connections")))
                return
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(limits.header_timeout_seconds, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self._is_reading_head and (self.cycle is None or self.cycle.response_complete):
                message = f"the request's headers did not arrive within {limits.header_timeout_seconds:g} s"
                answer = {"status": "error", "error": "Request timeout", "code": 408, "message": message}
                self._close_with(408, answer, {})
            else:
                self.transport.close()

        def _close_with(self, code: int, answer: dict[str, Any], headers: dict[str, str]) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.transport.write(error_bytes(code, answer, headers))
                self.transport.close()

        # ---- parser callbacks: each request's head is timed and measured ------------------------

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._is_reading_head, self._head_bytes = True, 0
            self._arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > limits.max_header_bytes:
                self._is_head_too_large = True
                raise _HeadTooLarge  # the parser stops; uvicorn answers through send_400_response

        def on_headers_complete(self) -> None:
            self._is_reading_head = False
            self._disarm()
            super().on_headers_complete()

        def send_400_response(self, msg: str) -> None:
            if self._is_head_too_large:
                message = f"the request line and headers are larger than {limits.max_header_bytes} bytes"
                answer = {"status": "error", "error": "Request header fields too large", "code": 431,
                          "message": message}  # fmt: skip
                self._close_with(431, answer, {})
                return
            self._close_with(*error_answer(BadRequest("the request is not valid HTTP/1.1")))

    return GuardedHttpToolsProtocol


def serve(
    app: AsgiGateway,
    host: str,
    port: int,
    log_level: str = "warning",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    graceful_seconds: float = 30.0,
    on_ready: Callable[[], None] | None = None,
    limits: ConnectionLimits | None = None,
    keep_alive_seconds: int = 5,
    trusted_proxies: tuple[str, ...] = (),
    sockets: list[Any] | None = None,
) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM (on ``sockets`` already bound, if given)."""
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
        http=guarded_protocol(limits or ConnectionLimits()),
        ws="none",  # the API has no WebSocket route: an upgrade request is an ordinary request
        loop=loop,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_graceful_shutdown=int(graceful_seconds),
        timeout_keep_alive=keep_alive_seconds,
        # X-Forwarded-For/-Proto name the client and scheme only when a trusted proxy sent them;
        # uvicorn would otherwise believe any local process (its default trusts 127.0.0.1)
        proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies) or None,
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
    server.run(sockets=sockets)


# ---------------------------------------------------------------------------------------------
# `hatchway serve`: the gateway process


def find_examples_dir() -> Path | None:
    """The repository's ``examples/`` (source checkout), else ``./examples``."""
    for candidate in (Path(__file__).resolve().parents[2] / "examples", Path.cwd() / "examples"):
        if candidate.is_dir():
            return candidate
    return None


def register_examples(services: Services, directory: Path) -> list[str]:
    """Register every ``*/action.json`` under ``directory`` in the default project."""
    admin = Principal(None, None, frozenset({"admin"}))
    loaded = []
    for path in sorted(directory.glob("*/action.json")):
        document = resolve_local_paths(json.loads(path.read_text()), path.parent)
        try:
            record = services.actions.register(admin, DEFAULT_PROJECT, DEFAULT_ENVIRONMENT, document).record
        except HatchwayError as err:
            log.warning("example not loaded", extra={"example": path.parent.name, "reason": err.message})
            continue
        loaded.append(f"{record.name}@{record.version}")
    return loaded


def run_server(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    load_examples: bool = False,
    examples_dir: Path | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """``hatchway serve``: the API with a worker pool (``HATCHWAY_WORKERS``) in this process until
    SIGINT/SIGTERM (with ``HATCHWAY_PROCESSES`` above 1, :func:`hatchway.serve_group.run_group` instead)."""
    services, examples = start_home(settings, load_examples, examples_dir)
    lines = startup_banner(settings, services, host, port, tls_cert is not None, examples)
    serve_services(settings, services, host, port, tls_cert, tls_key, lambda: print(lines, flush=True))


def start_home(settings: Settings, load_examples: bool, examples_dir: Path | None) -> tuple[Services, list[str]]:
    """What happens once per start of a gateway on its home: its services, the master key, token
    and default project, what a previous gateway left running stopped, the examples registered."""
    wiring.configure_observability(settings)
    services = wiring.build_services(settings, pool=settings.runs.workers > 0)
    _check_confinement(services)
    wiring.bootstrap(services)
    recovered = wiring.tidy_at_rest(services)
    if recovered:
        log.warning("stopped actions left running by a previous gateway", extra={"count": recovered})
    examples: list[str] = []
    if load_examples:
        directory = examples_dir or find_examples_dir()
        if directory is None:
            log.warning("no examples directory found; pass --examples-dir")
        else:
            examples = register_examples(services, directory)
    return services, examples


def _check_confinement(services: Services) -> None:
    from hatchway.worker import refuse_unconfined

    refuse_unconfined(services)


def startup_banner(
    settings: Settings, services: Services, host: str, port: int, is_tls: bool, examples: list[str]
) -> str:
    """What ``hatchway serve`` prints on stdout once it answers (stderr carries only JSON log lines)."""
    from hatchway.worker import confinement_lines

    scheme = "https" if is_tls else "http"
    workers = f"workers {settings.runs.workers}"
    if settings.server.processes > 1:
        workers += f" shared by {settings.server.processes} processes on the port"
    token_source = "HATCHWAY_BOOTSTRAP_TOKEN" if settings.bootstrap_token else str(settings.token_path)
    lines = [
        f"hatchway serving on {scheme}://{host}:{port} (docs: {scheme}://{host}:{port}/docs)",
        f"  home      {settings.home}",
        f"  backend   {settings.backend}; executor {services.placement.describe()}; {workers}",
        f"  token     admin token in {token_source}",
        *confinement_lines(services),
    ]
    if settings.server.is_console_enabled:
        lines.append(f"  console   {scheme}://{host}:{port}/ui/")
    if examples:
        lines.append(f"  examples  {', '.join(examples)} in {DEFAULT_PROJECT}")
    return "\n".join(lines)


def serve_services(
    settings: Settings,
    services: Services,
    host: str,
    port: int,
    tls_cert: str | None,
    tls_key: str | None,
    on_ready: Callable[[], None],
    sockets: list[Any] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve the API over ``services`` with their worker pool until SIGINT/SIGTERM, then close them
    (``on_stop`` is called at shutdown once the workers stopped)."""
    from hatchway.api import create_app
    from hatchway.worker import WorkerPool

    pool = WorkerPool(services) if settings.runs.workers > 0 else None
    resolver = create_app(services)
    app = AsgiGateway(
        resolver.resolve,
        settings.server.max_body_bytes,
        read_threads=settings.server.http_read_threads,
        body_timeout_seconds=settings.server.http_body_timeout_seconds,
        on_startup=pool.start if pool else None,
        on_shutdown=lambda: _shutdown(services, pool, settings.runs.shutdown_grace_seconds, on_stop),
    )
    limits = ConnectionLimits(
        settings.server.http_header_timeout_seconds,
        settings.server.http_max_connections,
        settings.server.http_max_header_bytes,
    )
    log_level = settings.observability.log_level
    try:
        serve(app, host, port, log_level if log_level == "DEBUG" else "warning",
              tls_cert, tls_key, settings.runs.shutdown_grace_seconds + 5, on_ready=on_ready, limits=limits,
              keep_alive_seconds=settings.server.http_keep_alive_seconds,
              trusted_proxies=settings.server.trusted_proxies, sockets=sockets)  # fmt: skip
    finally:
        services.close()


def _shutdown(services: Services, pool: Any, grace_seconds: float, on_stop: Callable[[], None] | None) -> None:
    """Stop the workers, then the executors (warm containers, reapers). uvicorn re-raises the
    SIGTERM it caught once the app has shut down, so code after ``serve`` may never run."""
    if pool is not None:
        pool.stop(grace_seconds)
    services.placement.close()
    if on_stop is not None:
        on_stop()
