"""Regenerate sample.db, the small database the example's README calls use."""

import sqlite3
from pathlib import Path

path = Path(__file__).with_name("sample.db")
path.unlink(missing_ok=True)
conn = sqlite3.connect(path)
conn.executescript(
    """
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL);
    CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total REAL NOT NULL, placed TEXT);
    """
)
conn.executemany(
    "INSERT INTO customers VALUES (?, ?, ?)",
    [(1, "Ada", "UK"), (2, "Grace", "US"), (3, "Linus", "FI"), (4, "Margaret", "US")],
)
conn.executemany(
    "INSERT INTO orders VALUES (?, ?, ?, ?)",
    [(i, 1 + i % 4, round(10 + i * 3.75, 2), f"2026-10-{1 + i % 28:02d}") for i in range(1, 26)],
)
conn.commit()
conn.close()
