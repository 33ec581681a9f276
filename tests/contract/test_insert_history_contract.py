"""Every insert into workflow_status leaves exactly one status-history row
holding the inserted row's values, whichever way it is made: each of relos's
own insert paths (one row, a few, a bulk batch by COPY on PostgreSQL, a start,
a child, a fork) and plain SQL. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from queue_rows import T0, queued

from relos.store.base import DELAYED, PENDING, RowBatch, StepRow, SystemStore, WorkflowRow

Sql = Callable[..., list[tuple[Any, ...]]]


def history(sql: Sql, store: SystemStore) -> dict[str, list[tuple[Any, ...]]]:
    """Each workflow's history rows: (status, owner, executor_id,
    recovery_attempts, authenticated_user, at), in order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for r in sql(store, "SELECT workflow_id, status, owner, executor_id, recovery_attempts, "
                        "authenticated_user, at FROM {p}workflow_status_history ORDER BY id"):
        found.setdefault(r[0], []).append(tuple(r[1:]))
    return found


def recorded(row: WorkflowRow) -> tuple[Any, ...]:
    return (row.status, row.owner, row.executor_id, row.recovery_attempts,
            row.authenticated_user, row.updated_at)


def varied(prefix: str, n: int) -> list[WorkflowRow]:
    """Rows that differ in every column the history keeps."""
    return [queued(f"{prefix}{i:02}", at=i, owner=f"owner-{i % 3}" if i % 2 else None,
                   executor_id=f"exec-{i % 4}", recovery_attempts=i % 2,
                   authenticated_user="o'brien" if i % 3 == 0 else None,
                   **({"status": DELAYED, "delay_until_epoch_ms": T0 + 9} if i % 5 == 0 else {}))
            for i in range(n)]


@pytest.mark.parametrize("size", [1, 3, 40])
def test_each_enqueued_row_has_one_history_row_with_its_values(
        store: SystemStore, sql: Sql, size: int) -> None:
    """One row (PostgreSQL: the single-row statement), a few (the multi-row
    INSERT) and a bulk batch (COPY) of rows that differ in every kept column."""
    rows = varied("v", size)
    assert store.enqueue(rows) == [None] * size
    assert history(sql, store) == {r.workflow_id: [recorded(r)] for r in rows}


def test_a_bulk_batch_of_one_calls_rows_has_one_history_row_each(
        store: SystemStore, sql: Sql) -> None:
    shared = queued("unused", owner="o", authenticated_user="u", recovery_attempts=1)
    ids = [f"r{i:03}" for i in range(300)]
    assert store.enqueue(RowBatch(shared, ids, [f'{{"args": [{i}]}}' for i in range(300)])) \
        == [None] * 300
    assert history(sql, store) == {i: [recorded(replace(shared, workflow_id=i))] for i in ids}


def test_rows_kept_out_leave_no_history(store: SystemStore, sql: Sql) -> None:
    store.enqueue([queued("taken", at=1)])
    for size in (1, 3, 40):  # (a refused COPY is redone by the INSERT that keeps rows out)
        rows = [queued("taken", at=50)] + [queued(f"k{size}-{i}") for i in range(size - 1)]
        results = store.enqueue(rows)
        assert results[0] is not None and results[1:] == [None] * (size - 1)
    found = history(sql, store)
    assert found["taken"] == [recorded(queued("taken", at=1))]
    assert len(found) == 1 + 2 + 39


def test_started_child_and_forked_workflows_have_one_history_row_each(
        store: SystemStore, sql: Sql, make_workflow: Callable[..., WorkflowRow]) -> None:
    parent = make_workflow("parent", owner="me", authenticated_user="alice")
    assert store.insert_workflow(parent) is None
    assert store.insert_workflow(replace(parent, name="other")) is not None  # (taken)
    child = make_workflow("child", parent_workflow_id="parent")
    step = StepRow("parent", 0, "child", "workflow", '"child"', None, T0, T0)
    assert store.insert_child_workflow(child, step) is None
    fork = make_workflow("fork", status=PENDING, forked_from="parent")
    store.fork_workflow("parent", "fork", 1, fork)
    assert history(sql, store) == {w.workflow_id: [recorded(w)] for w in (parent, child, fork)}


def test_rows_inserted_by_plain_sql_are_recorded_too(store: SystemStore, sql: Sql) -> None:
    """Also on a connection whose earlier transaction was relos's own
    insert (which sets a transaction-local setting for the trigger: the
    caller announces, or, migration 18, the statement wrote its history
    itself and the trigger does not run)."""
    store.enqueue([queued("relos-1")])
    insert = ("INSERT INTO {p}workflow_status (workflow_id, status, name, executor_id, "
              "created_at, updated_at, queue_name, owner) VALUES (?, 'ENQUEUED', 'queued_wf', "
              "'x', 0, 7, 'q', 'someone')")
    sql(store, insert, "plain-1")
    plain = ["plain-1"]
    if store.backend == "postgres":
        # On one connection: relos's single-row statements, each followed by plain SQL.
        from relos.store import queue_sql
        with store.raw_connection() as conn:  # type: ignore[attr-defined]
            for n, own_history in ((2, False), (3, True)):
                statement, params = queue_sql._bulk_insert(  # type: ignore[attr-defined]
                    store.prefix, [queued(f"relos-{n}")], False, own_history)
                assert conn.execute(statement, params).fetchall()[0][0] == f"relos-{n}"
                conn.execute(insert.format(p=store.prefix).replace("?", "%s"),  # type: ignore[attr-defined]
                             (f"plain-{n}",))
                plain.append(f"plain-{n}")
    else:
        store.enqueue([queued("relos-2")])
        sql(store, insert, "plain-2")
        plain.append("plain-2")
    found = history(sql, store)
    for name in plain:
        row = store.get_workflow(name)
        assert row is not None and row.owner == "someone" and row.updated_at == 7
        assert found[name] == [recorded(row)]
    relos_rows = [w for w in found if w.startswith("relos-")]
    assert len(relos_rows) == len(plain)
    for name in relos_rows:
        assert found[name] == [recorded(queued("relos-1"))]


def test_a_single_enqueue_with_its_parents_step_has_one_history_row(
        store: SystemStore, sql: Sql, make_workflow: Callable[..., WorkflowRow]) -> None:
    """A single enqueue from a workflow (its transaction also records the
    parent's step) is recorded by the trigger; one without a step (its own
    transaction) by its statement: one history row each either way."""
    parent = make_workflow("parent")
    assert store.insert_workflow(parent) is None
    step = StepRow("parent", 0, "enqueue", "workflow", '"in-step"', None, T0, T0)
    with_step, alone = queued("in-step", at=3), queued("alone", at=4, owner="o")
    assert store.enqueue([with_step], step) == [None]
    assert store.enqueue([alone]) == [None]
    found = history(sql, store)
    assert found["in-step"] == [recorded(with_step)]
    assert found["alone"] == [recorded(alone)]
