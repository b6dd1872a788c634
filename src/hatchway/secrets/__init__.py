"""Secrets: envelope encryption (``box.py``) and redaction (``redact.py``); the box a process uses
is picked by :func:`hatchway.wiring.build_secret_box`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hatchway import ports


class LazySecretBox:
    """A secret box made on first use: a damaged key file or an unreachable KMS fails the request
    that needs a secret (503), not the start of the process, and a process that never touches a
    secret never loads the Encryption SDK."""

    def __init__(self, make: Callable[[], ports.SecretBox]) -> None:
        self._make = make
        self._box: ports.SecretBox | None = None
        self._lock = threading.Lock()

    @property
    def box(self) -> ports.SecretBox:
        if self._box is None:
            with self._lock:
                if self._box is None:
                    self._box = self._make()
        return self._box

    def encrypt(self, plaintext: str, project_id: str, environment: str, action: str | None = None) -> str:
        return self.box.encrypt(plaintext, project_id, environment, action)

    def decrypt(self, ciphertext: str, project_id: str, environment: str, action: str) -> str:
        return self.box.decrypt(ciphertext, project_id, environment, action)

    def check(self) -> None:
        self.box.check()


if TYPE_CHECKING:  # mypy checks that the adapter answers the port

    def _implements(box: LazySecretBox) -> ports.SecretBox:
        return box
