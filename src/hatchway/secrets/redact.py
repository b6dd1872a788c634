"""The gateway's redactor: the runtime's (:mod:`hatchway.runtime.redact`) with a first pass in
native code, and the redactors of running attempts kept out of the gateway's own log lines.

:class:`NativeRedactor` finds where secrets occur with ``ahocorasick_rs`` (leftmost-longest, one
pass in native code); around each occurrence it found, the runtime's pure-Python automaton takes
the longest spelling that ends at each position, which also finds the occurrences the first pass
skipped because they overlap the one before. It hides exactly what the runtime's redactor hides
(tests/unit/test_redaction.py runs both over the same cases), much faster on long texts.

:class:`ActiveRedaction` (:class:`hatchway.ports.Redaction`) builds an attempt's redactor once and,
while the attempt runs, registers it in :data:`ACTIVE_SECRETS`, which the log formatter applies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import ahocorasick_rs

from hatchway.runtime.redact import Finder, Redactor, RedactorLike


class NativeFinder(Finder):
    """Narrows the automaton's search to the neighbourhood of what ``ahocorasick_rs`` found."""

    def __init__(self, forms: list[str]) -> None:
        super().__init__(forms)
        # the contiguous NFA is built in milliseconds and stays small for long patterns (a DFA
        # over a 64 KiB secret's spellings takes half a second and a quarter of a gigabyte)
        self._native = ahocorasick_rs.AhoCorasick(
            forms,
            matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST,
            implementation=ahocorasick_rs.Implementation.ContiguousNFA,
        )

    def zones(self, text: str) -> list[list[int]]:
        found = self._native.find_matches_as_indexes(text)
        # an occurrence the leftmost-longest pass skipped overlaps the end of one it found, so it
        # lies between that one's start and its end plus the longest spelling
        zones: list[list[int]] = []
        reach = self.longest - 1
        for _, begin, stop in found:
            stop = min(len(text), stop + reach)
            if zones and begin <= zones[-1][1]:
                zones[-1][1] = max(zones[-1][1], stop)
            else:
                zones.append([begin, stop])
        return zones


class NativeRedactor(Redactor):
    """The runtime's redactor with :class:`NativeFinder`: the same answers, in native speed."""

    finder_class = NativeFinder


class ActiveSecrets:
    """The redactors of attempts running in this process, so the gateway's log lines are redacted too.

    Each attempt registers the redactor it already built; nothing is rebuilt when attempts come
    and go, so the cost of a log line is a pass per running attempt that has secrets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._redactors: dict[int, RedactorLike] = {}
        self._current: tuple[RedactorLike, ...] = ()

    def add(self, redactor: RedactorLike) -> int:
        """Register ``redactor``; returns a handle for :meth:`remove`."""
        with self._lock:
            handle = id(redactor)
            if redactor:
                self._redactors[handle] = redactor
                self._current = tuple(self._redactors.values())
        return handle

    def remove(self, handle: int) -> None:
        with self._lock:
            if self._redactors.pop(handle, None) is not None:
                self._current = tuple(self._redactors.values())

    def text(self, value: str) -> str:
        for redactor in self._current:
            value = redactor.text(value)
        return value


#: every attempt registers its redactor here while it runs (see the log formatter)
ACTIVE_SECRETS = ActiveSecrets()


class ActiveRedaction:
    """An attempt's redactor (:class:`hatchway.ports.Redaction`): built once for its secrets and, while
    the attempt runs, registered in :data:`ACTIVE_SECRETS` so the gateway's own log lines hide them too."""

    def __init__(self, active: ActiveSecrets = ACTIVE_SECRETS) -> None:
        self.active = active

    @contextlib.contextmanager
    def open(self, secrets: Iterable[str]) -> Iterator[RedactorLike]:
        redactor = NativeRedactor(secrets)
        handle = self.active.add(redactor)
        try:
            yield redactor
        finally:
            self.active.remove(handle)


if TYPE_CHECKING:  # mypy checks that it answers the port
    from hatchway import ports

    def _implements(redaction: ActiveRedaction) -> ports.Redaction:
        return redaction
