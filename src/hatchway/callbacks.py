"""Run callbacks: the final run record POSTed to a URL the request named, signed and retried.

Each project has a signing secret (kept encrypted; an admin reads or rotates it through the API).
A delivery carries ``X-Hatchway-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256 over ``"<t>.<body>"``, so a receiver can check both origin and freshness. Deliveries
go through :func:`hatchway.net.guarded_client` (the same destination rules as HTTP actions) from a
background thread, retried with exponential backoff on network errors and 5xx/429 answers. They
are kept in memory: a gateway that dies loses the callbacks it had not delivered yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hatchway.domain.records import Document
from hatchway.errors import ValidationFailed
from hatchway.net import IPNetwork, guarded_client, refused_cause
from hatchway.secrets.box import SecretBox
from hatchway.store.flat import SingleStore

log = logging.getLogger("hatchway.callbacks")
KIND = "secret"
NAME = "callback-signing"
ATTEMPTS = 6
TIMEOUT_SECONDS = 10.0


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise ValidationFailed.at(["body", "callback_url"], "an http(s) URL")
    return url


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass
class _Delivery:
    url: str
    body: bytes
    project_id: str
    environment: str
    run_id: str
    attempt: int = 0
    due: float = 0.0


class Callbacks:
    """Signing secrets and the delivery queue."""

    def __init__(self, store: SingleStore, secret_box: Any, allowed: list[IPNetwork]) -> None:
        self.store = store
        self._secret_box = secret_box
        self.allowed = allowed
        self._queue: queue.Queue[_Delivery] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0

    @property
    def box(self) -> SecretBox:
        box: SecretBox = self._secret_box() if callable(self._secret_box) else self._secret_box
        return box

    # ---- secrets ---------------------------------------------------------------------------

    def secret(self, project_id: str, rotate: bool = False) -> str:
        """The project's signing secret, created on first use."""
        document = self.store.get_document(project_id, "*", KIND, NAME)
        if document is not None and not rotate:
            plain: str = self.box.decrypt(document.body["ciphertext"], project_id, "*", "callbacks")
            return plain
        fresh = "whsec_" + secrets.token_urlsafe(32)
        ciphertext = self.box.encrypt(fresh, project_id, "*", "callbacks")
        self.store.put_document(Document(project_id, "*", KIND, NAME, {"ciphertext": ciphertext}))
        return fresh

    # ---- delivery --------------------------------------------------------------------------

    def enqueue(self, url: str, record: dict[str, Any], project_id: str, environment: str) -> None:
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
        self._queue.put(_Delivery(url, body, project_id, environment, record["id"]))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hatchway-callbacks", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        waiting: list[_Delivery] = []
        while True:
            timeout = max(0.0, min((d.due for d in waiting), default=time.monotonic() + 1.0) - time.monotonic())
            with contextlib.suppress(queue.Empty):
                waiting.append(self._queue.get(timeout=min(timeout, 1.0)))
            now = time.monotonic()
            due, waiting = [d for d in waiting if d.due <= now], [d for d in waiting if d.due > now]
            for delivery in due:
                if not self._send(delivery):
                    delivery.attempt += 1
                    if delivery.attempt < ATTEMPTS:
                        delivery.due = time.monotonic() + min(2.0**delivery.attempt, 300.0)
                        waiting.append(delivery)
                    else:
                        log.warning("callback given up", extra={"run_id": delivery.run_id})

    def _send(self, delivery: _Delivery) -> bool:
        try:
            secret = self.secret(delivery.project_id)
            headers = {
                "content-type": "application/json",
                "user-agent": "hatchway-callback",
                "x-hatchway-run-id": delivery.run_id,
                "x-hatchway-signature": signature(secret, delivery.body, int(time.time())),
            }
            with guarded_client(self.allowed, TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = client.post(delivery.url, content=delivery.body, headers=headers)
        except Exception as exc:
            refused = refused_cause(exc)
            if refused is not None:
                log.warning("callback refused", extra={"run_id": delivery.run_id, "reason": refused.message})
                delivery.attempt = ATTEMPTS
            else:
                log.info("callback failed; will retry", extra={"run_id": delivery.run_id, "error": type(exc).__name__})
            return False
        if response.status_code >= 500 or response.status_code == 429:
            return False
        self.delivered += 1
        return True
