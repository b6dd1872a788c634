"""Group commit on a real SQLite file: writes that queue while another is under way are committed
together, in one transaction, and each caller still gets its own result or its own error."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.errors import Unavailable
from hatchway.store.sqlite._db import Database
from tests.helpers import wait_until

TABLE = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0)"


class CountingDatabase(Database):
    """A database that counts the commits its connections make (explicit COMMITs and writes in
    autocommit), through SQLite's trace callback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.commits = 0
        self._count = threading.Lock()
        super().__init__(*args, **kwargs)

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = super().conn()

            def trace(statement: str) -> None:
                verb = statement.split(None, 1)[0].upper()
                if verb == "COMMIT" or (verb in ("INSERT", "UPDATE", "DELETE") and not conn.in_transaction):
                    with self._count:
                        self.commits += 1

            conn.set_trace_callback(trace)
        return conn


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CountingDatabase]:
    database = CountingDatabase(tmp_path / "home" / "hatchway.db")
    database.write(TABLE, ())
    database.commits = 0
    try:
        yield database
    finally:
        database.close()


class Callers:
    """Threads that each make one call and keep what it answered or raised."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.answers: dict[str, Any] = {}

    def start(self, name: str, call: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                self.answers[name] = call()
            except Exception as exc:  # the caller's own error is the answer under test
                self.answers[name] = exc

        thread = threading.Thread(target=run, name=name)
        self.threads.append(thread)
        thread.start()

    def join(self) -> dict[str, Any]:
        for thread in self.threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} never answered"
        return self.answers


def hold_the_lead(db: Database, callers: Callers, queued: int) -> None:
    """Start a write that keeps the lead until ``queued`` writes wait behind it, so those are
    committed as one group (no timing: the leader waits for them, the group follows)."""

    leading = threading.Event()

    def body(conn: sqlite3.Connection) -> str:
        leading.set()
        conn.execute("INSERT INTO t(k) VALUES ('leader')")
        wait_until(lambda: db.waiting >= queued, what=f"{queued} writes queued")
        return "led"

    callers.start("leader", lambda: db.tx(body))
    assert leading.wait(timeout=30), "the leader never started"


def one_group(db: Database, *calls: tuple[str, Callable[[], Any]]) -> dict[str, Any]:
    """Make ``calls`` in this order, each from its own thread, as one group behind a held lead;
    what each answered or raised."""
    callers = Callers()
    hold_the_lead(db, callers, queued=len(calls))
    for queued, (name, call) in enumerate(calls, start=1):
        callers.start(name, call)
        wait_until(lambda queued=queued: db.waiting >= queued, what=f"{name} queued")
    return callers.join()


def stored(db: Database) -> dict[str, int]:
    return dict(db.rows("SELECT k, v FROM t", ()))


def test_concurrent_writers_all_commit_in_fewer_commits_than_writes(db: CountingDatabase) -> None:
    # Given a write under way and eight writers arriving while it is
    callers = Callers()
    hold_the_lead(db, callers, queued=8)
    for i in range(8):
        callers.start(f"w{i}", lambda i=i: db.write("INSERT INTO t(k, v) VALUES (?, ?)", (f"k{i}", i)))
    answers = callers.join()
    # Then every write was answered as made, and all nine took two commits: the leader's and the group's
    assert answers == {"leader": "led", **{f"w{i}": 1 for i in range(8)}}
    assert stored(db) == {"leader": 0, **{f"k{i}": i for i in range(8)}}
    assert db.commits == 2


def test_many_threads_writing_at_once_all_commit(db: CountingDatabase) -> None:
    # Given 8 threads each writing 40 rows as fast as they can, with reads between
    def writer(n: int) -> int:
        for i in range(40):
            assert db.write("INSERT INTO t(k, v) VALUES (?, ?)", (f"{n}-{i}", i)) == 1
            key = f"{n}-{i}"
            db.tx(lambda conn, key=key: conn.execute("UPDATE t SET v = v + 1 WHERE k = ?", (key,)).rowcount)
        return n

    callers = Callers()
    for n in range(8):
        callers.start(f"w{n}", lambda n=n: writer(n))
    assert callers.join() == {f"w{n}": n for n in range(8)}
    # Then every row is there, once, with its update
    assert stored(db) == {f"{n}-{i}": i + 1 for n in range(8) for i in range(40)}


def test_a_conflicting_statement_fails_only_its_caller(db: CountingDatabase) -> None:
    db.write("INSERT INTO t(k) VALUES ('taken')", ())
    # Given a group in which one insert breaks the primary key
    answers = one_group(
        db,
        ("a", lambda: db.write("INSERT INTO t(k) VALUES ('a')", ())),
        ("clash", lambda: db.write("INSERT INTO t(k) VALUES ('taken')", ())),
        ("b", lambda: db.write("INSERT INTO t(k) VALUES ('b')", ())),
    )
    # Then that caller alone gets the conflict, and the writes before and after it are committed
    assert isinstance(answers["clash"], sqlite3.IntegrityError)
    assert (answers["a"], answers["b"]) == (1, 1)
    assert stored(db) == {"leader": 0, "taken": 0, "a": 0, "b": 0}


def test_a_block_that_fails_in_a_group_is_undone_alone(db: CountingDatabase) -> None:
    # Given a group with a block of two inserts that raises after both
    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t(k) VALUES ('half1')")
        conn.execute("INSERT INTO t(k) VALUES ('half2')")
        raise ValueError("changed its mind")

    def whole(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t(k) VALUES ('whole1')")
        return conn.execute("INSERT INTO t(k) VALUES ('whole2')").rowcount

    answers = one_group(
        db,
        ("before", lambda: db.tx(whole)),
        ("broken", lambda: db.tx(broken)),
        ("after", lambda: db.write("INSERT INTO t(k) VALUES ('after')", ())),
    )
    # Then its caller gets its own error, none of its rows stay, and the others' are committed
    assert isinstance(answers["broken"], ValueError) and str(answers["broken"]) == "changed its mind"
    assert (answers["before"], answers["after"]) == (1, 1)
    assert stored(db) == {"leader": 0, "whole1": 0, "whole2": 0, "after": 0}
    assert db.commits == 2


def test_read_modify_write_blocks_stay_isolated_in_groups(db: CountingDatabase) -> None:
    # Given 6 threads each adding one to a counter 30 times by reading it and writing it back
    db.write("INSERT INTO t(k, v) VALUES ('counter', 0)", ())

    def add_one(conn: sqlite3.Connection) -> int:
        value: int = conn.execute("SELECT v FROM t WHERE k = 'counter'").fetchone()[0]
        conn.execute("UPDATE t SET v = ? WHERE k = 'counter'", (value + 1,))
        return value + 1

    seen: list[int] = []
    seen_lock = threading.Lock()

    def adder() -> None:
        for _ in range(30):
            got = db.tx(add_one)
            with seen_lock:
                seen.append(got)

    callers = Callers()
    for n in range(6):
        callers.start(f"a{n}", adder)
    callers.join()
    # Then no increment was lost and each block saw a value no other saw
    assert stored(db)["counter"] == 180
    assert sorted(seen) == list(range(1, 181))


def test_returning_rows_go_to_their_own_callers(db: CountingDatabase) -> None:
    callers = Callers()
    hold_the_lead(db, callers, queued=6)
    for i in range(6):
        callers.start(
            f"r{i}", lambda i=i: db.write_row("INSERT INTO t(k, v) VALUES (?, ?) RETURNING k, v * 10", (f"k{i}", i))
        )
    answers = callers.join()
    assert {name: answers[name] for name in answers if name != "leader"} == {
        f"r{i}": (f"k{i}", i * 10) for i in range(6)
    }
    assert db.commits == 2


def test_a_commit_that_fails_fails_the_whole_group_and_leaves_nothing(tmp_path: Path) -> None:
    # Given a database whose COMMIT is refused (a deferred foreign key checked only at COMMIT: the
    # way a full disk or an I/O error refuses it, deterministically)
    class Checked(CountingDatabase):
        def conn(self) -> sqlite3.Connection:
            fresh = getattr(self._local, "conn", None) is None
            conn = super().conn()
            if fresh:
                conn.execute("PRAGMA foreign_keys = ON")
            return conn

    db = Checked(tmp_path / "hatchway.db")
    try:
        db.write(TABLE, ())
        db.write(
            "CREATE TABLE child (k TEXT PRIMARY KEY, parent TEXT REFERENCES t(k) DEFERRABLE INITIALLY DEFERRED)", ()
        )
        answers = one_group(
            db,
            ("fine", lambda: db.write("INSERT INTO t(k) VALUES ('fine')", ())),
            ("orphan", lambda: db.write("INSERT INTO child(k, parent) VALUES ('c', 'nobody')", ())),
            ("block", lambda: db.tx(lambda conn: conn.execute("INSERT INTO t(k) VALUES ('x')").rowcount)),
        )
        # Then every write of the group gets the store's 503, and none of them is in the file
        assert answers["leader"] == "led"
        for name in ("fine", "orphan", "block"):
            assert isinstance(answers[name], Unavailable), (name, answers[name])
            assert "the store is unavailable" in str(answers[name])
        assert stored(db) == {"leader": 0}
        assert db.rows("SELECT * FROM child", ()) == []
        # And the next write goes through
        assert db.write("INSERT INTO t(k) VALUES ('later')", ()) == 1
    finally:
        db.close()


_HOLD = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


def test_writers_get_503_while_another_process_holds_the_database(tmp_path: Path) -> None:
    path = tmp_path / "hatchway.db"
    db = Database(path, busy_timeout_ms=300)
    db.write(TABLE, ())
    # Given another process holding the write lock
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # When several writers of this process try at once
        callers = Callers()
        for i in range(5):
            callers.start(f"w{i}", lambda i=i: db.write("INSERT INTO t(k) VALUES (?)", (f"k{i}",)))
        answers = callers.join()
        # Then each gets the store's 503 (none waits forever), and nothing was written
        for name, answer in answers.items():
            assert isinstance(answer, Unavailable) and "database is locked" in str(answer), (name, answer)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert stored(db) == {}
    assert db.write("INSERT INTO t(k) VALUES ('later')", ()) == 1
    db.close()


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.mark.integration
def test_a_group_on_a_full_disk_fails_whole_and_the_store_recovers(tmp_path: Path) -> None:
    # Given the database on a small tmpfs of its own (a real full disk; needs root and mount)
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)):
        pytest.skip("needs root and permission to mount a tmpfs (a real full disk)")
    db = Database(disk / "hatchway.db")
    try:
        db.write(TABLE, ())
        # ... filled to the last byte, so the group's WAL frames have nowhere to go
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        big = "x" * 200_000

        def insert(i: int) -> Callable[[], Any]:
            return lambda: db.write("INSERT INTO t(k, v) VALUES (?, ?)", (big + str(i), i))

        answers = one_group(
            db,
            *((f"w{i}", insert(i)) for i in range(3)),
            ("block", lambda: db.tx(lambda conn: conn.execute("INSERT INTO t(k) VALUES ('b')").rowcount)),
        )
        # Then every write of the group gets the store's 503 for a full disk, and none is stored
        for name in ("w0", "w1", "w2", "block"):
            assert isinstance(answers[name], Unavailable), (name, answers[name])
            assert "disk is full" in str(answers[name])
        filler.unlink()
        assert stored(db) == {"leader": 0} or stored(db) == {}
        # And once there is room again, writes go through
        assert db.write("INSERT INTO t(k) VALUES ('later')", ()) == 1
        assert "later" in stored(db)
    finally:
        db.close()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
