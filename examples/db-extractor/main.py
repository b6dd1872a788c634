"""db-extractor: a Keboola-style extractor over SQLite, for hatchway.

Sync actions (answer within 30 s, JSON on stdout):
  test-connection  open the database and count its tables
  list-tables      tables with their columns and row counts
Run action:
  extract the chosen tables to CSV files in out/tables/ and report what was written.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from urllib.parse import quote

from hatchway import runtime as hw


def connect(ctx: hw.Context) -> sqlite3.Connection:
    path = Path(ctx.require("database"))
    if not path.is_file():
        raise hw.UserError(f"database {str(path)!r} does not exist")
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise hw.UserError(f"cannot open {path.name}: {exc}") from None
    return conn


def table_names(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    return [row[0] for row in rows]


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@hw.sync_action("test-connection")
def test_connection(ctx: hw.Context) -> dict[str, object]:
    conn = connect(ctx)
    return {"status": "success", "tables": len(table_names(conn))}


@hw.sync_action("list-tables")
def list_tables(ctx: hw.Context) -> list[dict[str, object]]:
    conn = connect(ctx)
    out = []
    for name in table_names(conn):
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({ident(name)})")]
        rows = conn.execute(f"SELECT count(*) FROM {ident(name)}").fetchone()[0]
        out.append({"name": name, "columns": columns, "rows": rows})
    return out


@hw.run_action
def run(ctx: hw.Context) -> dict[str, object]:
    conn = connect(ctx)
    available = table_names(conn)
    wanted = [t.strip() for t in (ctx.param("tables") or "").split(",") if t.strip()] or available
    missing = sorted(set(wanted) - set(available))
    if missing:
        raise hw.UserError(f"no such table(s): {', '.join(missing)}")
    preview_rows = ctx.param("preview_rows", 3, int)
    target = ctx.out_dir / "tables"
    target.mkdir(parents=True, exist_ok=True)
    report = []
    total = 0
    for name in wanted:
        cursor = conn.execute(f"SELECT * FROM {ident(name)}")
        columns = [d[0] for d in cursor.description]
        preview: list[list[object]] = []
        count = 0
        with (target / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in cursor:
                writer.writerow(row)
                if len(preview) < preview_rows:
                    preview.append(list(row))
                count += 1
        print(f"extracted {name}: {count} rows")
        total += count
        report.append({"name": name, "columns": columns, "rows": count, "preview": preview})
    hw.export("tables_extracted", len(report))
    hw.export("rows_extracted", total)
    return {"tables": report}


if __name__ == "__main__":
    hw.main()
