"""A separate application database for ``@DBOS.transaction`` functions.

Only used when ``application_database_url`` names a database other than the
system database. relos adds one table there, ``transaction_outputs``, written
in the same transaction as the user's writes (see :mod:`relos.runtime.transactions`).
"""

from __future__ import annotations

from typing import Any

from relos.config import Config
from relos.store import open_store
from relos.store.base import StepRow
from relos.store.sql import SQLStore

_TABLE = """CREATE TABLE IF NOT EXISTS {p}transaction_outputs (
    workflow_id  TEXT NOT NULL,
    function_id  INTEGER NOT NULL,
    output       TEXT,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, function_id)
)"""


def open_app_store(config: Config) -> SQLStore:
    store = open_store(
        config.application_database_url, sqlite_synchronous=config.sqlite_synchronous,
        sqlite_busy_timeout=config.sqlite_busy_timeout_seconds,
        schema=config.system_database_schema, pool_size=config.database_pool_size,
    )
    assert isinstance(store, SQLStore)
    with store._errors(), store._tx() as conn:
        if store.backend == "postgres":
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {store.prefix.rstrip('.')}")
        conn.execute(_TABLE.format(p=store.prefix))
    return store


def record_output_in(store: SQLStore, conn: Any, row: StepRow) -> None:
    conn.execute(
        f"INSERT INTO {store.prefix}transaction_outputs "
        f"(workflow_id, function_id, output, error, created_at) VALUES "
        f"({store._ph('w')}, {store._ph('f')}, {store._ph('o')}, {store._ph('e')}, "
        f"{store._ph('t')})",
        {"w": row.workflow_id, "f": row.function_id, "o": row.output, "e": row.error,
         "t": row.completed_at},
    )


def get_output(store: SQLStore, workflow_id: str, function_id: int
               ) -> tuple[str | None, str | None] | None:
    """(output, error) recorded for the transaction, or None if it never committed."""
    r = store._one(
        f"SELECT output, error FROM {store.prefix}transaction_outputs "
        f"WHERE workflow_id = {store._ph('w')} AND function_id = {store._ph('f')}",
        {"w": workflow_id, "f": function_id},
    )
    return None if r is None else (r[0], r[1])
