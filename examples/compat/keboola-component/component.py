"""An unmodified Keboola component (keboola.component) that runs on hatchway.

Sync actions (camelCase, as Keboola names them): testConnection, listTables.
The run action writes a table to out/tables/ (it becomes a run artifact) and a state file.
"""

import csv
import logging
import sqlite3
from pathlib import Path

from keboola.component.base import ComponentBase, sync_action
from keboola.component.exceptions import UserException
from keboola.component.sync_actions import SelectElement, ValidationResult


class Component(ComponentBase):
    def _connect(self) -> sqlite3.Connection:
        params = self.configuration.parameters
        database = params.get("db", {}).get("path")
        if not database or not Path(database).is_file():
            raise UserException(f"database {database!r} does not exist")
        if params.get("db", {}).get("#password") != "letmein":
            raise UserException("wrong database password")
        return sqlite3.connect(f"file:{database}?mode=ro", uri=True)

    @sync_action("testConnection")
    def test_connection(self) -> ValidationResult:
        self._connect()
        return ValidationResult("Connection OK")

    @sync_action("listTables")
    def list_tables(self) -> list[SelectElement]:
        rows = self._connect().execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        return [SelectElement(value=name) for (name,) in rows]

    def run(self) -> None:
        table = self.configuration.parameters.get("table", "customers")
        conn = self._connect()
        cursor = conn.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - a sample component
        out = Path(self.tables_out_path) / f"{table}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([d[0] for d in cursor.description])
            count = 0
            for row in cursor:
                writer.writerow(row)
                count += 1
        logging.info("extracted %s rows of %s", count, table)
        self.write_state_file({"last_table": table, "rows": count})


if __name__ == "__main__":
    try:
        Component().execute_action()
    except UserException as exc:
        logging.exception(exc)
        exit(1)
    except Exception as exc:
        logging.exception(exc)
        exit(2)
