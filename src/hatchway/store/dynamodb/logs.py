"""Run logs on DynamoDB, in the run's partition.

log sequence   ``RUN#<p>#<id>`` / ``LSEQ``                  the last number given
log page       ``RUN#<p>#<id>`` / ``L#<last seq:012d>``     consecutive entries, compressed

(``RUN#<id>`` for runs written before keys carried the project.) The methods take the run's
partition key, which the run repository knows.

Entries are numbered by the counter item moved in the same transaction that writes them, in pages
(one item per flush, usually), so a follower never sees a gap that fills in later.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from hatchway.domain.runs import LogEntry
from hatchway.errors import InternalError
from hatchway.store.dynamodb._table import (
    MAX_SEQ,
    TRANSACTION_BYTES,
    TRANSACTION_ITEMS,
    Canceled,
    Table,
    dumps,
    n,
    num,
    s,
)

#: log entries are stored in pages (one item per flush, usually), each under this raw size
LOG_PAGE_BYTES = 256 * 1024
LOG_PAGE_ENTRIES = 5000
#: how many runs' last sequence numbers this process remembers (saves a read per flush)
_REMEMBERED_RUNS = 4096


class LogPages:
    """Writes and reads the log pages of runs; remembers each run's last number it wrote."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._last_seq: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def append(self, pk: str, entries: list[LogEntry]) -> list[LogEntry]:
        """Number and store ``entries`` after the run's last entry."""
        # The sequence counter is its own item; each transaction moves it from the value this
        # process last saw (one write per flush) and re-reads it only when another writer moved it.
        with self._lock:
            last = self._last_seq.get(pk)
        for group in self.transactions(entries, TRANSACTION_ITEMS - 1):
            chunk = [entry for page in group for entry in page]
            for _ in range(50):
                if last is None:
                    item = self.table.get(pk, "LSEQ")
                    last = num(item or {}, "last") or 0
                try:
                    self.table.transact(self.writes(pk, last, chunk))
                except Canceled:
                    last = None
                    continue
                last += len(chunk)
                break
            else:
                self.remember(pk, None)
                raise InternalError("the log of this run is contended")
        self.remember(pk, last)
        return entries

    def read(self, pk: str, after: int, limit: int) -> list[LogEntry]:
        # a page is keyed by its last entry, so the first page at or above after+1 holds after+1
        if after >= MAX_SEQ or limit <= 0:
            return []
        pages = self.table.query(
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":p": s(pk),
                ":lo": s(f"L#{max(after, 0) + 1:012d}"),
                ":hi": s(f"L#{MAX_SEQ:012d}"),
            },
            ConsistentRead=True,
            Limit=8,
        )
        out: list[LogEntry] = []
        for page in pages:
            for seq, k, ts, msg, err in json.loads(zlib.decompress(page["data"]["B"])):
                if seq > after:
                    out.append(LogEntry(seq=seq, k=k, ts=ts, msg=msg, err=err))
                    if len(out) >= limit:
                        return out
        return out

    def transactions(self, entries: list[LogEntry], room: int) -> Iterator[list[list[LogEntry]]]:
        """The pages of ``entries`` in groups that fit one transaction beside
        ``TRANSACTION_ITEMS - room`` other items."""
        group: list[list[LogEntry]] = []
        for page in _pages(entries):
            if len(group) >= room or len(group) * LOG_PAGE_BYTES >= TRANSACTION_BYTES:
                yield group
                group = []
            group.append(page)
        if group:
            yield group

    def writes(self, pk: str, last: int, entries: list[LogEntry]) -> list[dict[str, Any]]:
        """Number ``entries`` after ``last``; the counter move and the page puts that store them."""
        for offset, entry in enumerate(entries, start=1):
            entry.seq = last + offset
        condition = "attribute_not_exists(pk) OR #last = :old" if last == 0 else "#last = :old"
        counter = {
            "Update": {
                "TableName": self.table.name,
                "Key": {"pk": s(pk), "sk": s("LSEQ")},
                "UpdateExpression": "SET #last = :new",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#last": "last"},
                "ExpressionAttributeValues": {":old": n(last), ":new": n(last + len(entries))},
            }
        }
        pages = [{"Put": {"TableName": self.table.name, "Item": _page_item(pk, page)}} for page in _pages(entries)]
        return [counter, *pages]

    def remember(self, pk: str, last: int | None) -> None:
        """The run's last number this process wrote (None: forget it, read it next time)."""
        with self._lock:
            if last is None:
                self._last_seq.pop(pk, None)
                return
            self._last_seq[pk] = last
            self._last_seq.move_to_end(pk)
            while len(self._last_seq) > _REMEMBERED_RUNS:
                self._last_seq.popitem(last=False)


def _page_item(pk: str, page: list[LogEntry]) -> dict[str, Any]:
    rows = [[e.seq, e.k, e.ts, e.msg, e.err] for e in page]
    return {
        "pk": s(pk),
        "sk": s(f"L#{page[-1].seq:012d}"),
        "first": n(page[0].seq),
        "data": {"B": zlib.compress(dumps(rows).encode(), 6)},
    }


def _pages(entries: list[LogEntry]) -> list[list[LogEntry]]:
    """Consecutive entries grouped into items well under DynamoDB's 400 KB."""
    pages: list[list[LogEntry]] = []
    size = 0
    for entry in entries:
        cost = len(entry.msg.encode()) + 64 + (len(dumps(entry.err)) if entry.err else 0)
        if not pages or size + cost > LOG_PAGE_BYTES or len(pages[-1]) >= LOG_PAGE_ENTRIES:
            pages.append([])
            size = 0
        pages[-1].append(entry)
        size += cost
    return pages
