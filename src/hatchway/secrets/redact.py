"""Replace secret values, in every spelling an action might print them, by ``[hidden]``.

For each secret the redactor knows its raw form, JSON-escaped forms (ASCII-only as Python's
``json.dumps`` writes them, and with non-ASCII kept as JavaScript's ``JSON.stringify`` does),
URL-encoded forms and base64 forms (standard and URL-safe, padded or not). Matching is one
compiled alternation, longest first, so a redacted text never reveals a prefix of a longer
secret. Streams are redacted line by line after the lines are assembled, so a secret split across
two writes of the action is still found.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

HIDDEN = "[hidden]"
#: values shorter than this are not redacted (they would hide ordinary text such as "1" or "true")
MIN_SECRET_LENGTH = 4


def spellings(secret: str) -> set[str]:
    """Every form of ``secret`` the redactor looks for."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }
    raw = secret.encode()
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.add(encoded)
        forms.add(encoded.rstrip("="))
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """Hides a fixed set of secret values in text and in JSON-like data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]
        forms: set[str] = set()
        for secret in self.secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                forms |= spellings(secret)
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))) if forms else None
        )
        self.longest = max((len(f) for f in forms), default=0)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(HIDDEN, value)

    def data(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure (keys included)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


NO_SECRETS = Redactor()


class ActiveSecrets:
    """The secret values of attempts running in this process, so log lines can be redacted too."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._values: dict[int, list[str]] = {}
        self._redactor = NO_SECRETS

    def add(self, values: list[str]) -> int:
        """Register values; returns a handle for :meth:`remove`."""
        with self._lock:
            handle = id(values)
            self._values[handle] = values
            self._rebuild()
        return handle

    def remove(self, handle: int) -> None:
        with self._lock:
            self._values.pop(handle, None)
            self._rebuild()

    def _rebuild(self) -> None:
        self._redactor = Redactor(v for values in self._values.values() for v in values)

    def text(self, value: str) -> str:
        return self._redactor.text(value)


#: every attempt registers its decrypted values here while it runs (see the log formatter)
ACTIVE_SECRETS = ActiveSecrets()
