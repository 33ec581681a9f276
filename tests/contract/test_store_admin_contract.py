"""The SystemStore contract, continued (see test_store_contract.py): listing
workflows, the recovery scan, executors, the status history, garbage
collection, unknown workflows and the SQLite connection settings, checked on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from dbhelpers import event_history, status_history
from relos import errors
from relos.store.base import (
    CANCELLED,
    ENQUEUED,
    ERROR,
    PENDING,
    SUCCESS,
    ExecutorRow,
    ListFilter,
    WorkflowRow,
)

T0 = 1_700_000_000_000
STORE_TABLES = ("workflow_status", "operation_outputs", "workflow_status_history",
                "notifications", "workflow_events", "workflow_events_history", "streams")
# The column naming the workflow in each table above.
WF_COLUMN = {t: ("destination_id" if t == "notifications" else "workflow_id")
             for t in STORE_TABLES}


# --- list_workflows ---------------------------------------------------------------------


@pytest.fixture
def listed(store, make_workflow):
    """Six workflows created 1 s apart (w0 oldest), with varied attributes."""
    specs = [
        ("w0", "alpha", PENDING, "e1", "v1", None),
        ("w1", "beta", SUCCESS, "e1", "v1", None),
        ("w2", "alpha", ERROR, "e2", "v2", "w0"),
        ("w3", "alpha", SUCCESS, "e2", "v2", "w0"),
        ("w4", "beta", CANCELLED, "e1", "v2", None),
        ("w5", "alpha", ENQUEUED, "e3", "v1", None),
    ]
    rows = []
    # Insert out of order so the ordering cannot come from insertion order.
    for wid, name, status, ex, ver, parent in reversed(specs):
        row = make_workflow(wid, name=name, status=status, executor_id=ex,
                            application_version=ver, parent_workflow_id=parent,
                            created_at=T0 + 1000 * int(wid[1]), inputs=f'"in {wid}"',
                            output=f'"out {wid}"', error=f'"err {wid}"')
        store.insert_workflow(row)
        rows.append(row)
    return {r.workflow_id: r for r in rows}


def ids(rows: list[WorkflowRow]) -> list[str]:
    return [r.workflow_id for r in rows]


def test_list_workflows_without_filters_orders_by_created_at_then_id(
    store, listed, make_workflow
):
    rows = store.list_workflows(ListFilter())
    assert ids(rows) == ["w0", "w1", "w2", "w3", "w4", "w5"]
    assert rows == [listed[w] for w in ids(rows)]
    assert ids(store.list_workflows(ListFilter(sort_desc=True))) == [
        "w5", "w4", "w3", "w2", "w1", "w0"]

    for wid in ("b", "c", "a"):  # created at the same time as w1
        store.insert_workflow(make_workflow(wid, created_at=T0 + 1000))
    assert ids(store.list_workflows(ListFilter())) == [
        "w0", "a", "b", "c", "w1", "w2", "w3", "w4", "w5"]
    assert ids(store.list_workflows(ListFilter(sort_desc=True))) == [
        "w5", "w4", "w3", "w2", "w1", "c", "b", "a", "w0"]


FILTER_CASES = [
    (ListFilter(status=[SUCCESS]), ["w1", "w3"]),
    (ListFilter(status=[SUCCESS, ERROR, CANCELLED]), ["w1", "w2", "w3", "w4"]),
    (ListFilter(name="alpha"), ["w0", "w2", "w3", "w5"]),
    (ListFilter(name="gamma"), []),
    (ListFilter(start_time=T0 + 1500), ["w2", "w3", "w4", "w5"]),
    (ListFilter(end_time=T0 + 2500), ["w0", "w1", "w2"]),
    (ListFilter(start_time=T0 + 1500, end_time=T0 + 3500), ["w2", "w3"]),
    (ListFilter(executor_id="e2"), ["w2", "w3"]),
    (ListFilter(application_version="v1"), ["w0", "w1", "w5"]),
    (ListFilter(parent_workflow_id="w0"), ["w2", "w3"]),
    (ListFilter(workflow_ids=["w4", "w1", "nope"]), ["w1", "w4"]),
    (ListFilter(workflow_ids=[]), []),
    (ListFilter(name="alpha", status=[SUCCESS, PENDING], application_version="v1"), ["w0"]),
    (ListFilter(name="alpha", start_time=T0 + 500, sort_desc=True), ["w5", "w3", "w2"]),
]


def test_list_workflows_filters(store, listed):
    for flt, expected in FILTER_CASES:
        assert ids(store.list_workflows(flt)) == expected, flt


def test_list_workflows_with_empty_status_list_matches_nothing(store, listed):
    assert store.list_workflows(ListFilter(status=[])) == []


PAGE_CASES = [
    (2, None, False, ["w0", "w1"]),
    (2, 1, False, ["w1", "w2"]),
    (None, 4, False, ["w4", "w5"]),
    (3, 2, True, ["w3", "w2", "w1"]),
    (10, 5, False, ["w5"]),
    (2, 6, False, []),
    (0, None, False, []),
]


def test_list_workflows_limit_and_offset(store, listed):
    for limit, offset, desc, expected in PAGE_CASES:
        flt = ListFilter(limit=limit, offset=offset, sort_desc=desc)
        assert ids(store.list_workflows(flt)) == expected, flt


def test_list_workflows_without_values(store, listed):
    rows = store.list_workflows(ListFilter(load_values=False))
    assert ids(rows) == ["w0", "w1", "w2", "w3", "w4", "w5"]
    for r in rows:
        assert (r.inputs, r.output, r.error) == (None, None, None)
        assert r == replace(listed[r.workflow_id], inputs=None, output=None, error=None)


# --- find_recoverable -------------------------------------------------------------------


def test_find_recoverable_returns_pending_workflows_of_the_executors(store, make_workflow):
    store.insert_workflow(make_workflow("p1", executor_id="e1", owner="inst-1", created_at=T0,
                                        application_version="v1"))
    store.insert_workflow(make_workflow("p2", executor_id="e2", owner=None, created_at=T0 + 1))
    store.insert_workflow(make_workflow("p3", executor_id="e3", owner="inst-3"))
    store.insert_workflow(make_workflow("done", executor_id="e1", status=SUCCESS))
    store.insert_workflow(make_workflow("queued", executor_id="e1", status=ENQUEUED))
    store.insert_workflow(make_workflow("cancelled", executor_id="e2", status=CANCELLED))

    assert store.find_recoverable(["e1", "e2"]) == [("p1", "inst-1", "v1"), ("p2", None, None)]
    assert store.find_recoverable(["e3"]) == [("p3", "inst-3", None)]
    assert store.find_recoverable(["nobody"]) == []
    assert store.find_recoverable([]) == []


def test_find_recoverable_leaves_out_one_owners_workflows_when_asked(store, make_workflow):
    store.insert_workflow(make_workflow("mine", executor_id="e1", owner="me", created_at=T0))
    store.insert_workflow(make_workflow("dead", executor_id="e1", owner="gone",
                                        created_at=T0 + 1))
    store.insert_workflow(make_workflow("ownerless", executor_id="e1", owner=None,
                                        created_at=T0 + 2))

    assert [r[0] for r in store.find_recoverable(["e1"], not_owned_by="me")] == [
        "dead", "ownerless"]
    assert [r[0] for r in store.find_recoverable(["e1"])] == ["mine", "dead", "ownerless"]


# --- executors --------------------------------------------------------------------------


def executor(instance_id: str, **kw: Any) -> ExecutorRow:
    fields: dict[str, Any] = {
        "instance_id": instance_id, "executor_id": "exec-a", "application_version": "v1",
        "hostname": "host-1", "pid": 4242, "started_at": T0, "heartbeat_at": T0,
    }
    fields.update(kw)
    return ExecutorRow(**fields)


def test_the_database_clock_runs_in_epoch_milliseconds(store):
    """(The test's database server runs on this host: its clock is this host's.)"""
    import time

    before = int(time.time() * 1000)
    first = store.clock_ms()
    time.sleep(0.02)
    second = store.clock_ms()
    after = int(time.time() * 1000)
    assert isinstance(first, int)
    assert before - 1_000 <= first < second <= after + 1_000
    assert second - first >= 15  # the time now, not a transaction's start


def test_register_heartbeat_deregister_executors(store):
    a = executor("inst-a", started_at=T0)
    b = executor("inst-b", started_at=T0 + 1, executor_id="exec-b", application_version=None)
    store.register_executor(a)
    store.register_executor(b)
    assert store.get_executors() == [a, b]
    assert store.get_executors(["inst-b"]) == [b]
    assert store.get_executors(["inst-b", "unknown"]) == [b]
    assert store.get_executors([]) == []

    store.heartbeat("inst-a", T0 + 500)
    assert store.get_executors(["inst-a"]) == [replace(a, heartbeat_at=T0 + 500)]
    assert store.get_executors(["inst-b"]) == [b]

    store.deregister_executor("inst-b", T0 + 900)
    stopped = store.get_executors(["inst-b"])
    assert len(stopped) == 1  # kept as history
    assert stopped[0].stopped_at == T0 + 900
    assert stopped[0].instance_id == "inst-b"
    assert store.get_executors(["inst-a"])[0].stopped_at is None

    # Heartbeats and deregistrations of unknown executors create nothing.
    store.heartbeat("ghost", T0)
    store.deregister_executor("ghost", T0)
    assert [e.instance_id for e in store.get_executors()] == ["inst-a", "inst-b"]


def test_register_executor_again_revives_it(store):
    store.register_executor(executor("inst-a"))
    store.deregister_executor("inst-a", T0 + 10)
    store.register_executor(executor("inst-a", heartbeat_at=T0 + 20))
    [row] = store.get_executors()
    assert row.stopped_at is None
    assert row.heartbeat_at == T0 + 20


def test_register_executor_replaces_existing_row(store):
    store.register_executor(executor("inst-a"))
    newer = executor("inst-a", executor_id="exec-z", application_version="v2",
                     hostname="host-2", pid=99, started_at=T0 + 50, heartbeat_at=T0 + 50)
    store.register_executor(newer)
    assert store.get_executors() == [newer]


# --- workflow_status_history ------------------------------------------------------------


def test_status_history_records_inserts_and_status_or_owner_changes_only(
    store, make_workflow, sql
):
    store.insert_workflow(make_workflow("wf", owner=None))
    assert status_history(sql, store, "wf") == [(PENDING, None)]

    store.insert_workflow(make_workflow("wf", status=SUCCESS))  # existing: no insert
    assert store.claim_workflow("wf", None, "inst-1", "exec-a", T0 + 1) is not None
    # Updates that change neither status nor owner add no row:
    assert store.set_workflow_status("wf", PENDING, T0 + 2)
    assert store.claim_workflow("wf", "inst-1", "inst-1", "exec-b", T0 + 3) is not None
    assert store.complete_workflow("wf", SUCCESS, '"r"', None, T0 + 4)
    assert not store.complete_workflow("wf", ERROR, None, '"e"', T0 + 5)
    assert store.set_workflow_status("wf", SUCCESS, T0 + 6, error='"note"')
    assert store.set_workflow_status("wf", CANCELLED, T0 + 7)
    assert store.resume_workflow("wf", T0 + 8)
    assert store.resume_workflow("wf", T0 + 9)  # already PENDING, owner already NULL

    assert status_history(sql, store, "wf") == [
        (PENDING, None),
        (PENDING, "inst-1"),
        (SUCCESS, "inst-1"),
        (CANCELLED, "inst-1"),
        (PENDING, None),
    ]
    rows = sql(store, "SELECT at, recovery_attempts FROM {p}workflow_status_history "
                      "WHERE workflow_id = ? ORDER BY id", "wf")
    assert [r[0] for r in rows] == [T0, T0 + 1, T0 + 4, T0 + 7, T0 + 8]
    assert rows[-1][1] == 0


# --- garbage_collect --------------------------------------------------------------------


def _populate(store: Any, make_workflow: Any, make_step: Any, wid: str, created: int) -> None:
    """A PENDING workflow with a step, an event, a stream entry and a message."""
    store.insert_workflow(make_workflow(wid, created_at=created))
    store.record_step(make_step(wid, 1))
    store.set_event(wid, "k", f'"{wid}"', created, make_step(wid, 2))
    store.write_stream(wid, "s", f'"{wid}"', False, created, make_step(wid, 3), 3)
    store.send(wid, "t", f'"to {wid}"', f"msg-{wid}", None, created, None)


def test_garbage_collect_removes_old_finished_workflows_entirely(
    store, make_workflow, make_step, sql, rows_in
):
    cutoff = T0 + 10_000
    old = T0
    assert store.garbage_collect(cutoff) == 0  # empty store
    for wid in ("old_success", "old_error", "old_cancelled", "old_pending", "recent_success",
                "recent_pending"):
        _populate(store, make_workflow, make_step, wid,
                  old if wid.startswith("old") else cutoff + 1_000)
    assert store.complete_workflow("old_success", SUCCESS, '"r"', None, old + 1)
    assert store.complete_workflow("old_error", ERROR, None, '"e"', old + 1)
    assert store.set_workflow_status("old_cancelled", CANCELLED, old + 1)
    assert store.complete_workflow("recent_success", SUCCESS, '"r"', None, cutoff + 2_000)

    assert store.garbage_collect(cutoff) == 3

    for wid in ("old_success", "old_error", "old_cancelled"):
        assert store.get_workflow(wid) is None
        for table in STORE_TABLES:
            assert rows_in(store, table, f"{WF_COLUMN[table]} = ?", wid) == 0, (wid, table)
    for wid in ("old_pending", "recent_success", "recent_pending"):
        assert store.get_workflow(wid) is not None
        assert sorted(store.load_steps(wid)) == [1, 2, 3]
        assert store.get_event(wid, "k") == (True, f'"{wid}"')
        assert store.read_stream(wid, "s", 0) == [(0, f'"{wid}"', False)]
        assert rows_in(store, "notifications", "destination_id = ?", wid) == 1
    # History rows older than the cutoff are gone, newer ones kept.
    for table in ("workflow_status_history", "workflow_events_history"):
        assert rows_in(store, table, "at < ?", cutoff) == 0
    assert status_history(sql, store, "recent_success") == [(PENDING, None), (SUCCESS, None)]
    assert event_history(sql, store, "recent_pending", "k") == ['"recent_pending"']

    assert store.garbage_collect(cutoff) == 0


# --- unknown workflows ------------------------------------------------------------------


def test_writes_for_unknown_workflow_raise_and_store_nothing(
    store, make_workflow, make_step, rows_in
):
    """Steps, messages, events and stream entries need an existing workflow."""
    store.insert_workflow(make_workflow("sender"))
    with pytest.raises(errors.NonExistentWorkflowError) as info:
        store.record_step(make_step("ghost", 1))
    assert info.value.workflow_id == "ghost"
    with pytest.raises(errors.NonExistentWorkflowError) as info:
        store.send("ghost", "t", '"x"', "m1", None, T0, None)
    assert info.value.workflow_id == "ghost"
    with pytest.raises(errors.NonExistentWorkflowError):
        store.send("ghost", "t", '"x"', "m2", "sender", T0, make_step("sender", 1, kind="send"))
    with pytest.raises(errors.NonExistentWorkflowError):
        store.set_event("ghost", "k", '"v"', T0, None)
    with pytest.raises(errors.NonExistentWorkflowError):
        store.write_stream("ghost", "s", '"v"', False, T0, None, None)

    assert store.load_steps("ghost") == {}
    assert store.load_steps("sender") == {}  # the sender's step rolled back with the send
    for table in STORE_TABLES:
        if table not in ("workflow_status", "workflow_status_history"):
            assert rows_in(store, table) == 0, table


def test_sqlite_connections_are_durable_and_keep_statement_journals_in_memory(store):
    """SQLite: WAL with the configured synchronous level (FULL by default),
    foreign keys on, and temporary storage (the statement journal of every
    write that fires the history trigger) in memory, on every connection."""
    if store.backend != "sqlite":
        pytest.skip("SQLite connection settings")
    with store._conn() as conn:
        settings = {name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("journal_mode", "synchronous", "foreign_keys", "temp_store")}
    assert settings == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                        "temp_store": 2}
