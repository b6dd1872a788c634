"""Replace secret values, in every spelling an action might print them, by ``[hidden]``.

Standard library only: this module is copied into action images with the rest of the runtime.
The gateway's redactor (:mod:`hatchway.secrets.redact`) is this one with a first pass in native
code; both answer :class:`RedactorLike` and hide exactly the same characters.

For each secret the redactor knows its raw form, JSON-escaped forms (ASCII-only as Python's
``json.dumps`` writes them, and with non-ASCII kept as JavaScript's ``JSON.stringify`` does),
URL-encoded forms, base64 forms (standard and URL-safe, padded or not), and - for a secret of
several lines, such as a PEM key - each of its lines of at least :data:`MIN_LINE_PART` characters.

Every character that belongs to any occurrence of any spelling is hidden: occurrences that overlap
(a secret repeated into itself, two secrets sharing characters) become one ``[hidden]``, so no
part of a secret shows beside a marker. The cost is linear in the text, whatever the secrets:

* a :class:`Finder` says where secrets may occur (here: a cheap test for each spelling's first
  characters; on the gateway: a native multi-pattern automaton, in one pass); a text without any
  is returned as it is;
* there, a pure-Python Aho-Corasick automaton (:class:`Automaton`, built on first need) takes the
  longest spelling that ends at each position, which also finds occurrences that overlap.

Both are built once per set of secrets. A redactor may carry a deadline (:meth:`Redactor.until`):
past it, what is left of a text being searched is hidden whole rather than searched, so redaction
never outlives the call that needs it - it fails closed.

Streams are redacted line by line after the lines are assembled, so a secret split across two
writes of the action is still found. A line longer than the collector's piece size, and a file
(:meth:`Redactor.stream`: artifacts, stashes), are cut with :meth:`Redactor.split`, which looks a
whole spelling past the cut: a secret across it is hidden on both sides, never shown in part.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from array import array
from collections.abc import Iterable, Iterator
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

HIDDEN = "[hidden]"
#: values shorter than this are not redacted (they would hide ordinary text such as "1" or "true")
MIN_SECRET_LENGTH = 4
#: a line of a multi-line secret is looked for on its own from this length (shorter lines - "{",
#: "-----" - would hide ordinary text)
MIN_LINE_PART = 8
#: texts are first tested for the first characters of each spelling when there are at most this
#: many distinct ones
MAX_ANCHORS = 24
#: how many characters of a streamed text (a file) are redacted at a time
STREAM_PIECE = 1 << 20
#: how much text the pure-Python automaton searches between two looks at the clock
_CLOCK_EVERY = 1 << 15

Interval = tuple[int, int]


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
    if "\n" in secret:
        # printed raw, a multi-line secret reaches the log one line at a time
        forms.update(part.strip() for part in secret.splitlines() if len(part.strip()) >= MIN_LINE_PART)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class RedactorLike(Protocol):
    """What the collector, the adapter and the gateway need of a redactor (this module's, or the
    gateway's with its native first pass)."""

    #: the secret values, each once, in the order given
    secrets: list[str]
    #: the longest spelling in UTF-8 bytes: how far a reader must look past a cut
    longest_bytes: int

    def __bool__(self) -> bool: ...  # false: no secret long enough to look for

    def until(self, deadline: float | None) -> RedactorLike: ...

    def text(self, value: str, hidden_prefix: int = 0) -> str: ...

    def split(self, value: str, at: int, hidden_prefix: int = 0, exact: bool = False) -> tuple[str, int, int]: ...

    def stream(self, pieces: Iterable[str], size: int = STREAM_PIECE) -> Iterator[str]: ...

    def data(self, value: Any) -> Any: ...


class Automaton:
    """Aho-Corasick over a few long patterns, in pure Python, compact enough for 64 KiB secrets.

    Patterns are inserted as chains of consecutive node numbers, so a node whose only child is the
    next node (almost every node: spellings are long and rarely share prefixes) costs one entry in
    ``chain`` and nothing else; only nodes with another child get a dict in ``branches``. ``best``
    is the length of the longest pattern that ends at a node or at any node on its failure chain,
    so the search does O(1) work per character, however the patterns overlap.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        chain = [""]  # chain[n]: the character leading from n to n + 1 ("" when none does)
        branches: dict[int, dict[str, int]] = {0: {}}
        best = array("q", [0])
        for pattern in patterns:
            node, i, end = 0, 0, len(pattern)
            while i < end:
                following = self._next(chain, branches, node, pattern[i])
                if following < 0:
                    break
                node, i = following, i + 1
            if i < end:
                first = len(chain)
                children = branches.get(node)
                if children is None and (chain[node] or node != first - 1):
                    children = branches[node] = {chain[node]: node + 1} if chain[node] else {}
                if children is not None:
                    children[pattern[i]] = first
                else:  # the last node made, a leaf: its chain goes on
                    chain[node] = pattern[i]
                chain.extend(pattern[i + 1 :])
                chain.append("")
                best.frombytes(bytes(8 * (end - i)))
                node = len(chain) - 1
            best[node] = max(best[node], end)
        fail = array("q", bytes(8 * len(chain)))
        queue = [0]
        for node in queue:  # breadth first: a node's failure target is settled before its children's
            children = branches.get(node)
            if children is not None:
                edges: Iterable[tuple[str, int]] = children.items()
            else:
                edges = ((chain[node], node + 1),) if chain[node] else ()
            for char, child in edges:
                queue.append(child)
                if node == 0:
                    continue
                target = fail[node]
                while True:
                    following = self._next(chain, branches, target, char)
                    if following >= 0 or target == 0:
                        break
                    target = fail[target]
                fail[child] = max(following, 0)
                best[child] = max(best[child], best[fail[child]])
        self._chain, self._branches, self._fail, self._best = chain, branches, fail, best

    @staticmethod
    def _next(chain: list[str], branches: dict[int, dict[str, int]], node: int, char: str) -> int:
        children = branches.get(node)
        if children is not None:
            return children.get(char, -1)
        return node + 1 if chain[node] == char else -1

    def cover(self, text: str, start: int, end: int, deadline: float | None, out: list[Interval]) -> None:
        """Append to ``out`` the union of the occurrences inside ``text[start:end]``, in order.

        Overlapping occurrences merge; occurrences that only touch stay apart. Past ``deadline``
        the rest of the range is one interval (hidden whole).
        """
        chain, branches, fail, best = self._chain, self._branches, self._fail, self._best
        base = len(out)
        state = 0
        check = start + _CLOCK_EVERY
        for index in range(start, end):
            if index == check:
                check += _CLOCK_EVERY
                if deadline is not None and time.monotonic() > deadline:
                    del out[base:]
                    out.append((start, end))
                    return
            char = text[index]
            while True:
                if chain[state] == char and state not in branches:
                    state += 1
                    break
                children = branches.get(state)
                if children is not None:
                    following = children.get(char)
                    if following is not None:
                        state = following
                        break
                if state == 0:
                    break
                state = fail[state]
            length = best[state]
            if length:
                stop = index + 1
                begin = stop - length
                while len(out) > base and begin < out[-1][1]:
                    begin = min(begin, out[-1][0])
                    out.pop()
                out.append((begin, stop))


class Finder:
    """Where the spellings of one set of secrets occur in a text, built once and shared by every
    view of a redactor: :meth:`zones` narrows the search, the :class:`Automaton` does it."""

    def __init__(self, forms: list[str]) -> None:
        self.forms = forms
        self.longest = len(forms[0])
        self._lock = threading.Lock()
        self._automaton: Automaton | None = None
        anchors = tuple(dict.fromkeys(form[:MIN_SECRET_LENGTH] for form in forms))
        # a pass per anchor is cheap for a few secrets; with many (the lines of a long key), the
        # automaton's own pass over the text is cheaper
        self._anchors = anchors if len(anchors) <= MAX_ANCHORS else ()

    def zones(self, text: str) -> list[list[int]]:
        """The [start, end) ranges of ``text`` where an occurrence may be, in order (none: no secret)."""
        if not self._anchors or any(anchor in text for anchor in self._anchors):
            return [[0, len(text)]]
        return []

    def _automaton_built(self) -> Automaton:
        if self._automaton is None:
            with self._lock:
                if self._automaton is None:
                    self._automaton = Automaton(self.forms)
        return self._automaton

    def intervals(self, text: str, deadline: float | None) -> list[Interval]:
        zones = self.zones(text)
        if not zones:
            return []
        automaton = self._automaton_built()
        out: list[Interval] = []
        for begin, stop in zones:
            automaton.cover(text, begin, stop, deadline, out)
        return out


class Redactor:
    """Hides a fixed set of secret values in text and in JSON-like data (:class:`RedactorLike`)."""

    #: how occurrences are found (the gateway's redactor brings a native first pass)
    finder_class: type[Finder] = Finder

    def __init__(self, secrets: Iterable[str] = (), deadline: float | None = None) -> None:
        self.secrets = list(dict.fromkeys(s for s in secrets if s))
        #: past this ``time.monotonic()`` reading, what is left of a text is hidden, not searched
        self.deadline = deadline
        forms: set[str] = set()
        for secret in self.secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                forms |= spellings(secret)
        self._finder = self.finder_class(sorted(forms, key=len, reverse=True)) if forms else None
        #: the longest spelling, in characters and in UTF-8 bytes (how far a reader must look ahead)
        self.longest = self._finder.longest if self._finder else 0
        self.longest_bytes = max((len(f.encode()) for f in forms), default=0)

    def __bool__(self) -> bool:
        return self._finder is not None

    def until(self, deadline: float | None) -> Redactor:
        """The same redactor (sharing its automata) with another deadline."""
        bounded = copy.copy(self)
        bounded.deadline = deadline
        return bounded

    def intervals(self, text: str) -> list[Interval]:
        """The (start, end) ranges of ``text`` to hide, in order, none overlapping."""
        if self._finder is None or len(text) < MIN_SECRET_LENGTH:
            return []
        return self._finder.intervals(text, self.deadline)

    def text(self, value: str, hidden_prefix: int = 0) -> str:
        """``value`` with every secret hidden; its first ``hidden_prefix`` characters are known to
        be the rest of a secret (see :meth:`split`)."""
        if not value or (self._finder is None and not hidden_prefix):
            return value
        return _render(value, _with_prefix(self.intervals(value), hidden_prefix), len(value))

    def split(self, value: str, at: int, hidden_prefix: int = 0, exact: bool = False) -> tuple[str, int, int]:
        """Redact the head of a text to be cut at ``at``: (the redacted head, how many characters
        of ``value`` it covers, how many characters after them continue a hidden secret - the
        next piece's ``hidden_prefix``).

        A secret that crosses ``at`` is left whole to the next piece (the head ends where it
        starts) unless ``exact`` or it starts the text; then the head ends in a marker and the
        next piece starts with one. ``value`` must reach :attr:`longest` - 1 characters past
        ``at`` (or be the whole text), so an occurrence that crosses the cut is seen whole.
        """
        spans = _with_prefix(self.intervals(value), hidden_prefix)
        for begin, stop in spans:
            if begin < at < stop:
                if begin > 0 and not exact:
                    return _render(value, spans, begin), begin, 0
                return _render(value, spans, at), at, stop - at
        return _render(value, spans, at), at, 0

    def stream(self, pieces: Iterable[str], size: int = STREAM_PIECE) -> Iterator[str]:
        """Redact a text that arrives in pieces (a file), holding about ``size`` characters at a
        time: each is cut with :meth:`split`, looking a whole spelling past the cut."""
        if self._finder is None:
            yield from pieces
            return
        pending, carried = "", 0
        for piece in pieces:
            pending += piece
            if len(pending) < size + self.longest:
                continue
            head, cut, carried = self.split(pending, len(pending) - self.longest + 1, carried)
            yield head
            pending = pending[cut:]
        yield self.text(pending, carried)

    def data(self, value: Any) -> Any:
        """Redact every string inside a JSON-like structure (keys included)."""
        if self._finder is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value


def _with_prefix(spans: list[Interval], hidden_prefix: int) -> list[Interval]:
    if hidden_prefix <= 0:
        return spans
    end = hidden_prefix
    rest = 0
    while rest < len(spans) and spans[rest][0] < end:
        end = max(end, spans[rest][1])
        rest += 1
    return [(0, end), *spans[rest:]]


def _render(value: str, spans: list[Interval], limit: int) -> str:
    """``value[:limit]`` with each span replaced by one marker (a span crossing ``limit`` too)."""
    if not spans:
        return value[:limit]
    parts = []
    position = 0
    for begin, stop in spans:
        if begin >= limit:
            break
        parts.append(value[position:begin])
        parts.append(HIDDEN)
        position = stop
    if position < limit:
        parts.append(value[position:limit])
    return "".join(parts)


NO_SECRETS = Redactor()
