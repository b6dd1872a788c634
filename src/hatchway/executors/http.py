"""HTTP actions: the gateway makes an HTTP call itself (Ductape-style), no process or container.

The action's ``http`` block is a template filled from the run's parameters and ``input``; the
call goes out through :func:`hatchway.net.guarded_client` (no private, loopback or metadata
destinations, checked on every redirect), is retried on 429 and 5xx with backoff that honours
``Retry-After`` within the attempt's retries and deadline, and answers ``{status, headers, body}``
as ``ret``. An upstream 4xx is a user error, a 5xx or 429 left after the retries an application
error; a refused destination is a user error.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any
from urllib.parse import quote

from hatchway.config import Settings
from hatchway.domain.attempts import AttemptResult, Invocation
from hatchway.domain.runs import Mode
from hatchway.domain.spec import ActionSpec, coerce_str
from hatchway.errors import BadRequest
from hatchway.executors.base import BaseAttemptExecutor
from hatchway.net import DestinationRefused, IPNetwork, allowed_networks, guarded_client, refused_cause
from hatchway.runtime.contract import OutputCollector

PLACEHOLDER = re.compile(r"\{(params|query|body|headers|parameters)\.([^{}]+)\}")
MAX_BODY_BYTES = 6 * 1024 * 1024
MAX_RETRY_AFTER = 30.0
RETRIED = {429, 500, 502, 503, 504}


def _lookup(root: str, path: str, invocation: Invocation) -> Any:
    source: Any = invocation.parameters if root == "parameters" else (invocation.extra_config.get("input") or {})
    if root != "parameters":
        source = source.get(root) or {}
    value = source
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise BadRequest(f"the template {{{root}.{path}}} has no value")
    return value


def fill(template: Any, invocation: Invocation, url_part: bool = False) -> Any:
    """Fill placeholders: a string that is one placeholder keeps the value's type."""
    if isinstance(template, dict):
        return {key: fill(value, invocation, url_part) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, invocation, url_part) for value in template]
    if not isinstance(template, str):
        return template
    whole = PLACEHOLDER.fullmatch(template)
    if whole and not url_part:
        return _lookup(whole.group(1), whole.group(2), invocation)

    def text(match: re.Match[str]) -> str:
        value = coerce_str(_lookup(match.group(1), match.group(2), invocation))
        return quote(value, safe="") if url_part else value

    return PLACEHOLDER.sub(text, template)


class HttpExecutor(BaseAttemptExecutor):
    """Runs HTTP actions from the gateway itself."""

    name = "http"
    #: a sync call's retries are this executor's own (429 and 5xx, honouring Retry-After)
    retries_itself = True

    def __init__(self, allowed: list[IPNetwork] | None = None) -> None:
        self.allowed = allowed or []

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpExecutor:
        return cls(allowed_networks(settings.executors.http_allow))

    def check(self, spec: ActionSpec, invoked: str) -> None:
        if spec.http is None:  # pragma: no cover - the picker sends only HTTP actions here
            raise BadRequest("not an HTTP action")

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult:
        call = invocation.spec.http
        assert call is not None  # noqa: S101 - check() guarantees it
        started = time.monotonic()
        try:
            url = fill(call.url, invocation, url_part=True)
            headers = {k: _header_value(fill(v, invocation)) for k, v in call.headers.items()}
            query = {k: coerce_str(v) for k, v in fill(call.query, invocation).items()}
            body = fill(call.body, invocation) if call.body is not None else None
        except BadRequest as exc:
            collector.system(exc.message)
            return AttemptResult(exit_code=1, duration_ms=0)
        attempts = 1 + max(0, invocation.retries)
        with guarded_client(self.allowed, min(call.timeout_seconds, max(0.1, invocation.seconds_left)),
                            call.follow_redirects) as client:  # fmt: skip
            for attempt in range(1, attempts + 1):
                if cancel.is_set():
                    return AttemptResult(cancelled=True)
                if invocation.seconds_left <= 0:
                    return AttemptResult(timed_out=True)
                outcome = self._once(client, call.method, url, headers, query, body, collector, invocation)
                if isinstance(outcome, AttemptResult):
                    outcome.duration_ms = int((time.monotonic() - started) * 1000)
                    if outcome.exit_code == 0 and invocation.output_mode == Mode.SYNC:
                        collector.feed("stdout", json.dumps(outcome.ret).encode())  # a sync answer is stdout
                    return outcome
                status, retry_after = outcome
                delay = retry_after if retry_after is not None else min(0.5 * 2 ** (attempt - 1), MAX_RETRY_AFTER)
                if attempt == attempts or delay >= invocation.seconds_left:
                    break
                collector.system(f"upstream answered {status}; retrying in {delay:.1f} s")
                if cancel.wait(delay):
                    return AttemptResult(cancelled=True)
        collector.system(f"upstream still answers {status} after {attempts} attempt(s)")
        return AttemptResult(exit_code=2, duration_ms=int((time.monotonic() - started) * 1000))

    def _once(
        self,
        client: Any,
        method: str,
        url: str,
        headers: dict[str, str],
        query: dict[str, str],
        body: Any,
        collector: OutputCollector,
        invocation: Invocation,
    ) -> AttemptResult | tuple[int, float | None]:
        import httpx

        content = None
        if body is not None:
            if isinstance(body, dict | list):
                content = json.dumps(body).encode()
                headers = {"content-type": "application/json", **headers}
            else:
                content = coerce_str(body).encode()
        began = time.monotonic()
        try:
            response = client.request(
                method, url, headers=headers, params=query or None, content=content,
                timeout=max(0.1, invocation.seconds_left),
            )  # fmt: skip
        except httpx.TimeoutException:
            return AttemptResult(timed_out=True)
        except DestinationRefused as exc:
            collector.system(exc.message)
            collector.feed("stderr", (exc.message + "\n").encode())
            return AttemptResult(exit_code=1)
        except httpx.HTTPError as exc:
            refused = refused_cause(exc)
            if refused is not None:
                collector.system(refused.message)
                collector.feed("stderr", (refused.message + "\n").encode())
                return AttemptResult(exit_code=1)
            collector.system(f"the call failed: {type(exc).__name__}")
            return AttemptResult(exit_code=2)
        elapsed = int((time.monotonic() - began) * 1000)
        collector.system(f"{method} {response.url.copy_with(query=None)} -> {response.status_code} in {elapsed} ms")
        if response.status_code in RETRIED:
            return response.status_code, _retry_after(response.headers.get("retry-after"))
        answer = {
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": _body(response),
        }
        if response.status_code >= 400:
            collector.system(f"upstream refused the call: {response.status_code} {response.reason_phrase}")
            collector.feed("stderr", f"upstream answered {response.status_code} {response.reason_phrase}\n".encode())
            return AttemptResult(exit_code=1)
        return AttemptResult(exit_code=0, ret=answer, exports={"status": response.status_code})


def _header_value(value: Any) -> str:
    text = coerce_str(value)
    if "\r" in text or "\n" in text:
        raise BadRequest("a header value may not contain line breaks")
    return text


def _body(response: Any) -> Any:
    data = response.content[:MAX_BODY_BYTES]
    kind = response.headers.get("content-type", "")
    if "json" in kind:
        try:
            return json.loads(data)
        except ValueError:
            pass
    return data.decode(response.encoding or "utf-8", errors="replace")


def _retry_after(header: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (capped), or None."""
    if header:
        try:
            return min(max(float(header), 0.0), MAX_RETRY_AFTER)
        except ValueError:
            return None
    return None
