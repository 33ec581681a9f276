"""Fixtures and helpers for the store contract suite.

Every test here runs once per backend (the ``backend`` / ``db_url`` fixtures of
``tests/conftest.py``). Helpers are exposed as fixtures so test modules never
import this file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest

from relos.store import SystemStore, open_store
from relos.store.base import PENDING, StepRow, WorkflowRow

#: A fixed clock origin (ms since the epoch) so every test is deterministic.
T0 = 1_700_000_000_000


def build_workflow(workflow_id: str = "wf-1", **overrides: Any) -> WorkflowRow:
    """A PENDING WorkflowRow with sensible defaults; any field may be overridden."""
    fields: dict[str, Any] = {
        "workflow_id": workflow_id,
        "status": PENDING,
        "name": "example_workflow",
        "executor_id": "exec-a",
        "created_at": T0,
        "updated_at": T0,
        "inputs": '{"args": [], "kwargs": {}}',
    }
    fields.update(overrides)
    if "updated_at" not in overrides and "created_at" in overrides:
        fields["updated_at"] = fields["created_at"]
    return WorkflowRow(**fields)


def build_step(workflow_id: str, function_id: int, **overrides: Any) -> StepRow:
    """A successful StepRow for ``workflow_id`` / ``function_id``; fields may be overridden."""
    fields: dict[str, Any] = {
        "workflow_id": workflow_id,
        "function_id": function_id,
        "function_name": f"step_{function_id}",
        "kind": "step",
        "output": f'"output {function_id}"',
        "error": None,
        "started_at": T0 + function_id,
        "completed_at": T0 + function_id + 1,
        "executor_id": "exec-a",
    }
    fields.update(overrides)
    return StepRow(**fields)


def placeholder(store: SystemStore) -> str:
    """The positional parameter marker of the store's driver."""
    return "%s" if store.backend == "postgres" else "?"


@contextmanager
def raw_connection(store: SystemStore) -> Iterator[Any]:
    """A direct autocommit connection to the store's database, closed (on
    PostgreSQL) afterwards; SQLite hands out the calling thread's own one."""
    conn = store.raw_connection()  # type: ignore[attr-defined]  # both backends provide it
    try:
        yield conn
    finally:
        if store.backend == "postgres":
            conn.close()


def run_sql(store: SystemStore, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` outside the store's API and return its rows (empty when none).

    ``{p}`` in ``sql`` is the table prefix and ``?`` a positional parameter.
    """
    text = sql.format(p=getattr(store, "prefix", "")).replace("?", placeholder(store))
    with raw_connection(store) as conn:
        cur = conn.execute(text, params)
        if cur.description is None:
            return []
        return [tuple(r) for r in cur.fetchall()]


def run_concurrently(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Call ``fn(0) .. fn(n-1)`` on ``n`` threads released together by a barrier;
    return the results in index order, re-raising the first exception."""
    barrier = threading.Barrier(n)

    def task(i: int) -> Any:
        barrier.wait(timeout=30)
        return fn(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(task, i) for i in range(n)]
        return [f.result(timeout=60) for f in futures]


def count(store: SystemStore, table: str, where: str = "", *params: Any) -> int:
    """Number of rows of ``table`` (optionally filtered by ``where``)."""
    sql = f"SELECT COUNT(*) FROM {{p}}{table}" + (f" WHERE {where}" if where else "")
    return int(run_sql(store, sql, *params)[0][0])


@pytest.fixture
def store(db_url: str) -> Iterator[SystemStore]:
    """A migrated store on a fresh, empty database; closed after the test."""
    s = open_store(db_url)
    try:
        s.migrate()
        yield s
    finally:
        s.close()


@pytest.fixture
def make_workflow() -> Callable[..., WorkflowRow]:
    return build_workflow


@pytest.fixture
def make_step() -> Callable[..., StepRow]:
    return build_step


@pytest.fixture
def sql() -> Callable[..., list[tuple[Any, ...]]]:
    """``sql(store, "SELECT ... FROM {p}table WHERE x = ?", value)`` -> rows."""
    return run_sql


@pytest.fixture
def rows_in() -> Callable[..., int]:
    """``rows_in(store, "table", "col = ?", value)`` -> row count."""
    return count


@pytest.fixture
def concurrently() -> Callable[[int, Callable[[int], Any]], list[Any]]:
    return run_concurrently

