"""The enqueue part of the SystemStore queue contract (``enqueue``, and the
announcements and combining of enqueues): every guarantee of its docstring in
``relos/store/base.py``, on SQLite and on PostgreSQL.

Times are a fixed clock (``T0`` plus offsets) passed to the store.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from queue_rows import NAMES, T0, dequeue, finish, qrow, queued, status

from dbhelpers import heard_exactly
from relos import errors
from relos.store import open_store
from relos.store.base import (
    CANCELLED,
    DELAYED,
    ENQUEUED,
    PENDING,
    SUCCESS,
    Completion,
    RowBatch,
    StepRow,
    SystemStore,
    WorkflowRow,
)

# --- enqueue ----------------------------------------------------------------------------------


def test_enqueue_inserts_and_returns_none_per_row(store: SystemStore) -> None:
    rows = [queued("w1"), queued("w2", at=1, status=DELAYED, delay_until_epoch_ms=T0 + 50)]
    assert store.enqueue(rows) == [None, None]
    assert store.get_workflow("w1") == rows[0]
    assert store.get_workflow("w2") == rows[1]


def test_enqueue_existing_id_returns_existing_row_unchanged(store: SystemStore) -> None:
    store.enqueue([queued("w1", inputs='{"args": [1], "kwargs": {}}')])
    original = store.get_workflow("w1")
    result = store.enqueue([queued("w1", inputs='{"args": [2], "kwargs": {}}'), queued("w2")])
    assert result == [original, None]
    assert store.get_workflow("w1") == original


def test_enqueue_deduplicated_returns_the_blocking_workflow(store: SystemStore) -> None:
    assert store.enqueue([queued("w1", deduplication_id="d")]) == [None]
    [blocker] = store.enqueue([queued("w2", deduplication_id="d")])
    assert blocker is not None and blocker.workflow_id == "w1"
    assert store.get_workflow("w2") is None
    # The deduplication ID is per queue; other queues and other IDs are free.
    assert store.enqueue([queued("w3", "other", deduplication_id="d"),
                          queued("w4", deduplication_id="e")]) == [None, None]


@pytest.mark.parametrize("holder_status", [ENQUEUED, DELAYED, PENDING])
def test_dedup_holds_while_the_holder_is_unfinished(store: SystemStore, holder_status: str) -> None:
    store.enqueue([queued("w1", deduplication_id="d", status=holder_status,
                          delay_until_epoch_ms=T0 + 10)])
    [blocker] = store.enqueue([queued("w2", deduplication_id="d")])
    assert blocker is not None and blocker.workflow_id == "w1"


def test_dedup_id_is_free_again_once_the_holder_finishes(store: SystemStore) -> None:
    store.save_queue(qrow())
    store.enqueue([queued("w1", deduplication_id="d")])
    assert dequeue(store, qrow()) == ["w1"]
    [blocker] = store.enqueue([queued("w2", deduplication_id="d")])
    assert blocker is not None and blocker.workflow_id == "w1"  # PENDING still holds it
    finish(store, "w1")
    assert store.enqueue([queued("w2", deduplication_id="d")]) == [None]
    # ... and a cancelled holder frees it too.
    assert store.set_workflow_status("w2", CANCELLED, T0)
    assert store.enqueue([queued("w3", deduplication_id="d")]) == [None]
    assert status(store, "w1") == SUCCESS


def test_enqueue_records_the_parents_step_in_the_same_transaction(store: SystemStore, make_workflow: Callable[..., WorkflowRow]) -> None:
    store.insert_workflow(make_workflow("parent"))
    step = StepRow("parent", 0, "DBOS.enqueue", "DBOS.enqueue", '["c1"]', None, T0, T0,
                   child_workflow_id="c1")
    assert store.enqueue([queued("c1", parent_workflow_id="parent")], step) == [None]
    assert store.load_steps("parent")[0] == step


def test_enqueue_is_all_or_nothing(store: SystemStore, make_workflow: Callable[..., WorkflowRow]) -> None:
    """A refused step (its workflow is no longer PENDING) rolls back every row."""
    store.insert_workflow(make_workflow("parent", status=CANCELLED))
    step = StepRow("parent", 0, "DBOS.enqueueMany", "DBOS.enqueueMany", '["c1", "c2"]', None,
                   T0, T0)
    with pytest.raises(errors.WorkflowCancelledError):
        store.enqueue([queued("c1"), queued("c2")], step)
    assert store.get_workflow("c1") is None and store.get_workflow("c2") is None
    assert store.load_steps("parent") == {}


#: A batch large enough for each backend's bulk path (COPY on PostgreSQL).
BIG = 40


def test_a_large_batch_stores_every_row_as_given_with_its_history(
        store: SystemStore, sql: Callable[..., list[tuple[Any, ...]]]) -> None:
    rows = [queued(f"b{i:02}", at=i, inputs=f'{{"args": ["x\\ty\\n{i}"], "kwargs": {{}}}}',
                   priority=i % 3, timeout_ms=None if i % 2 else 1000 + i,
                   authenticated_user=None if i % 4 else "o'brien",
                   queue_partition_key="p\\q" if i % 5 == 0 else None)
            for i in range(BIG)]
    rows[7] = replace(rows[7], status=DELAYED, delay_until_epoch_ms=T0 + 99)
    assert store.enqueue(rows) == [None] * BIG
    assert store.enqueue([]) == []
    for r in rows:
        assert store.get_workflow(r.workflow_id) == r
    recorded = sql(store, "SELECT workflow_id, status FROM {p}workflow_status_history "
                          "ORDER BY workflow_id")
    assert recorded == [(r.workflow_id, r.status) for r in rows]


@pytest.mark.parametrize("size", [1, BIG])
def test_a_missing_required_value_is_refused_not_replaced_by_a_default(
        store: SystemStore, size: int) -> None:
    """priority and recovery_attempts have column defaults; a row that gives
    None for one of them is refused (with the whole batch), not stored with
    the default."""
    for column in ("priority", "recovery_attempts"):
        rows = [queued(f"{column}-{i}", at=i) for i in range(size)]
        rows[-1] = replace(rows[-1], **{column: None})
        with pytest.raises(errors.StoreError, match=column):
            store.enqueue(rows)
        assert all(store.get_workflow(r.workflow_id) is None for r in rows)


def test_claims_and_completions_record_history_and_leave_other_updates_alone(
        store: SystemStore, sql: Callable[..., list[tuple[Any, ...]]]) -> None:
    """A claim and a batch of completions record one history row per workflow
    (on PostgreSQL without comparing old and new rows: their transaction says
    every status changes); an update that changes neither status nor owner,
    even on a connection that just ran them, records none."""
    store.enqueue([queued(f"h{i}", at=i) for i in range(BIG)])
    claimed = store.dequeue(qrow(), "owner-a", "exec-b", T0 + 100, BIG, "v1", NAMES)
    assert len(claimed) == BIG
    store.write_batch([], [Completion(r.workflow_id, SUCCESS, "1", None, T0 + 200)
                           for r in claimed])
    # On each of the store's connections (among them those that ran the claim
    # and the batch), a statement that changes neither status nor owner.
    touch = f"UPDATE {getattr(store, 'prefix', '')}workflow_status SET updated_at = updated_at + 1"
    for _ in range(40):
        with store._tx() as conn:  # type: ignore[attr-defined]
            conn.execute(touch)
    recorded = sql(store, "SELECT workflow_id, status, owner FROM {p}workflow_status_history "
                          "ORDER BY workflow_id, id")
    assert recorded == [(f"h{i}", status, owner) for i in sorted(range(BIG), key=str)
                        for status, owner in (("ENQUEUED", None), ("PENDING", "owner-a"),
                                              ("SUCCESS", "owner-a"))]


def test_a_row_batch_stores_its_rows_with_any_characters(store: SystemStore) -> None:
    """One call's batch (shared columns, per-row IDs and inputs), with every
    character the bulk paths must escape, in the IDs, the inputs and the
    shared columns; a row the batch makes equals the row stored."""
    shared = queued("", authenticated_user="tab\there, back\\slash",
                    queue_partition_key="line\nbreak\r", timeout_ms=5, priority=2)
    ids = [f"r{i:02}" + ("\t\\\n\r"[i % 4] if i % 3 else "") for i in range(BIG)]
    inputs: list[str | None] = [f'{{"args": ["a\\b\tc\nd\re {i}"], "kwargs": {{}}}}'
                                for i in range(BIG)]
    inputs[4] = None
    batch = RowBatch(shared, ids, inputs)
    assert len(batch) == BIG and batch[-1].workflow_id == ids[-1]
    assert [r.workflow_id for r in batch[2:5]] == ids[2:5]
    assert store.enqueue(batch) == [None] * BIG
    for i, row in enumerate(batch):
        assert row == replace(shared, workflow_id=ids[i], inputs=inputs[i])
        assert store.get_workflow(ids[i]) == row
    # Taken IDs: kept out and reported, the rest stored (the bulk path's fallback).
    again = RowBatch(shared, [ids[1]] + [f"s{i:02}" for i in range(1, BIG)], ["{}"] * BIG)
    results = store.enqueue(again)
    assert results[0] == batch[1] and results[1:] == [None] * (BIG - 1)
    assert store.get_workflow("s39") == again[39]
    with pytest.raises(ValueError, match="one input per workflow ID"):
        RowBatch(shared, ["x"], [])


def test_a_large_batch_with_taken_ids_keeps_them_out_and_stores_the_rest(
        store: SystemStore) -> None:
    store.enqueue([queued("b05", inputs='{"args": ["first"], "kwargs": {}}'),
                   queued("holder", deduplication_id="d")])
    taken_id, holder = store.get_workflow("b05"), store.get_workflow("holder")
    rows = [queued(f"b{i:02}", at=i) for i in range(BIG)]
    rows[9] = replace(rows[9], deduplication_id="d")
    results = store.enqueue(rows)
    assert results[5] == taken_id and results[9] == holder
    assert [i for i, r in enumerate(results) if r is not None] == [5, 9]
    assert store.get_workflow("b05") == taken_id  # unchanged
    assert store.get_workflow("b09") is None
    for i in set(range(BIG)) - {5, 9}:
        assert store.get_workflow(f"b{i:02}") == rows[i]


def test_a_large_batch_is_all_or_nothing(store: SystemStore,
                                         make_workflow: Callable[..., WorkflowRow]) -> None:
    store.insert_workflow(make_workflow("parent", status=CANCELLED))
    step = StepRow("parent", 0, "DBOS.enqueueMany", "DBOS.enqueueMany", "[]", None, T0, T0)
    with pytest.raises(errors.WorkflowCancelledError):
        store.enqueue([queued(f"b{i:02}") for i in range(BIG)], step)
    assert [store.get_workflow(f"b{i:02}") for i in range(BIG)] == [None] * BIG
    # A row the database cannot take (no name) fails the whole batch too.
    rows = [queued(f"c{i:02}") for i in range(BIG)]
    rows[3] = replace(rows[3], name=None)
    with pytest.raises(errors.RelosError):
        store.enqueue(rows)
    assert store.get_workflow("c00") is None


def _announcements(store: SystemStore) -> tuple[list[str], Callable[[set[str]], None]]:
    """Queue names announced to ``store``'s listener, and a wait for a set of them."""
    heard: list[str] = []
    lock = threading.Lock()

    def on_change(channel: str, key: str) -> None:
        if channel == "queues":
            with lock:
                heard.append(key)

    store.start_listener(on_change)
    # The listener LISTENs from its own thread: probe until it hears.
    deadline = time.monotonic() + 10
    while "probe" not in heard:
        assert time.monotonic() < deadline, "the listener never listened"
        with store._tx() as conn:  # type: ignore[attr-defined]
            conn.execute("SELECT pg_notify('relos_queues', 'probe')")
        time.sleep(0.05)

    def wait_for(names: set[str]) -> None:
        deadline = time.monotonic() + 10
        while not names <= set(heard) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert names <= set(heard), heard

    return heard, wait_for


def test_enqueues_are_announced_to_other_processes(
        store: SystemStore, db_url: str, sql: Callable[..., list[tuple[Any, ...]]]) -> None:
    """On PostgreSQL an enqueue wakes other processes' dequeuers (one row, or
    a batch): from the status trigger, or after commit while the process has
    other enqueues in flight; rows inserted by plain SQL are announced by the
    trigger. Delayed rows are announced too (migration 16: a listener then
    reads the next delay end again)."""
    if store.backend != "postgres":
        pytest.skip("SQLite processes poll: nothing is announced")
    other = open_store(db_url)  # another process's store, listening
    try:
        heard, wait_for = _announcements(other)
        store.enqueue([queued("a1", "qa")])
        store.enqueue([queued(f"b{i:02}", "qb") for i in range(BIG)])
        store.enqueue([queued("d1", "qd", status=DELAYED, delay_until_epoch_ms=T0 + 10)])
        wait_for({"qa", "qb", "qd"})
        # While another enqueue of the process is in flight (held here), the
        # trigger stays quiet and the process announces after commit.
        store._enqueuing += 1  # type: ignore[attr-defined]
        try:
            store.enqueue([queued("c1", "qc")])
            store.enqueue([queued(f"e{i:02}", "qe") for i in range(BIG)])
        finally:
            store._enqueuing -= 1  # type: ignore[attr-defined]
        wait_for({"qc", "qe"})
        sql(store, "INSERT INTO {p}workflow_status (workflow_id, status, name, executor_id, "
                   "created_at, updated_at, queue_name) VALUES "
                   "('plain', 'ENQUEUED', 'queued_wf', 'x', 0, 0, 'qsql')")
        wait_for({"qsql"})
        sql(store, "INSERT INTO {p}workflow_status (workflow_id, status, name, executor_id, "
                   "created_at, updated_at, queue_name, delay_until_epoch_ms) VALUES "
                   "('plain-delayed', 'DELAYED', 'queued_wf', 'x', 0, 0, 'qsqld', 5)")
        wait_for({"qsqld"})
        # Rows not waiting in a queue are not announced.
        sql(store, "INSERT INTO {p}workflow_status (workflow_id, status, name, executor_id, "
                   "created_at, updated_at, queue_name) VALUES "
                   "('plain-pending', 'PENDING', 'queued_wf', 'x', 0, 0, 'qpending')")
        store.enqueue([queued("probe", "qprobe")])
        wait_for({"qprobe"})  # (announcements arrive in commit order)
        assert "qpending" not in heard
    finally:
        other.close()


def test_sqlite_listener_tells_of_other_connections_enqueues(
        store: SystemStore, db_url: str, make_workflow: Callable[..., WorkflowRow]) -> None:
    """SQLite cannot announce an enqueue: a dequeuing process's listener
    watches the file's commit count and, when it moves, tells of each queue
    that newly inserted workflows wait in (ENQUEUED or DELAYED), once; not of
    other writes. A process that dequeues nothing hears nothing."""
    if store.backend != "sqlite":
        pytest.skip("PostgreSQL announces each enqueue by NOTIFY (the test above)")
    listening, deaf = open_store(db_url), open_store(db_url)
    heard: list[tuple[str, str]] = []
    unheard: list[tuple[str, str]] = []

    def wait_for(expected: list[tuple[str, str]]) -> None:
        heard_exactly(heard, expected)

    try:
        listening.start_listener(lambda channel, key: heard.append((channel, key)))
        deaf.start_listener(lambda channel, key: unheard.append((channel, key)), queues=False)
        time.sleep(0.3)  # (the listener reads the count a first time)
        store.enqueue([queued("w1", "qa"), queued("w2", "qa"), queued("w3", "qb")])
        wait_for([("queues", "qa"), ("queues", "qb")])
        store.enqueue([queued("w4", "qc", status=DELAYED, delay_until_epoch_ms=T0 + 10)])
        wait_for([("queues", "qc")])
        # Other writes: a workflow that waits in no queue, a claim.
        store.insert_workflow(make_workflow("direct"))
        dequeue(store, qrow("qa"))
        time.sleep(0.3)
        assert heard == [] and unheard == []
    finally:
        listening.close()
        deaf.close()
    # Closed: its thread is gone.
    assert not any(t.name == "relos-sqlite-watch" and t.is_alive()
                   for t in threading.enumerate())


def test_concurrent_enqueues_combined_keep_each_callers_outcome(
        store: SystemStore, db_url: str) -> None:
    """Enqueues that wait while another is written go in together as one
    statement and one commit; each caller still gets its own outcome: its
    rows written, the rows that kept its rows out (a taken ID or deduplication
    ID, also one taken by another caller of the same write), or its own error
    when the database refuses its rows."""
    combiner = store._combiner  # type: ignore[attr-defined]
    writes: list[int] = []
    write = combiner._write

    def counted(rows: Any) -> Any:
        writes.append(len(rows))
        return write(rows)

    combiner._write = counted
    store.enqueue([queued("taken")])
    outcomes: dict[str, Any] = {}

    def call(key: str, rows: list[WorkflowRow]) -> None:
        try:
            outcomes[key] = store.enqueue(rows)
        except errors.StoreError as exc:
            outcomes[key] = exc

    # Another connection's write lock holds the first enqueue in its write;
    # the others wait behind it in the combiner.
    with _write_locked(store, db_url):
        threads = [threading.Thread(target=call, args=("first", [queued("f1")]))]
        threads[0].start()
        deadline = time.monotonic() + 10
        while not combiner._busy:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        later = {
            "a": [queued("a1", deduplication_id="d"), queued("a2")],
            "b": [queued("b1", deduplication_id="d")],
            "c": [queued("taken"), queued("c2")],
            "bad": [queued("bad1", name=None)],  # NOT NULL
            "e": [queued("e1")],
        }
        for key, rows in later.items():
            threads.append(threading.Thread(target=call, args=(key, rows)))
            threads[-1].start()
        while len(combiner._waiting) < len(later):
            assert time.monotonic() < deadline
            time.sleep(0.005)
    for t in threads:
        t.join(10)
    assert outcomes["first"] == [None]
    assert isinstance(outcomes["bad"], errors.StoreError)
    assert outcomes["e"] == [None]
    assert outcomes["c"][1] is None and outcomes["c"][0].workflow_id == "taken"
    # One of a and b holds the deduplication ID, the other is kept out by it.
    a, b = outcomes["a"], outcomes["b"]
    assert a[1] is None
    if a[0] is None:
        assert b[0].workflow_id == "a1"
    else:
        assert a[0].workflow_id == "b1" and b == [None]
    # The first write, the combined one (refused for the bad row), then each
    # caller alone.
    assert writes[1:3] == [1, 7]
    assert sorted(writes[3:]) == [1, 1, 1, 2, 2]
    assert store.get_workflow("bad1") is None
    for wid in ("f1", "a2", "c2", "e1"):
        assert status(store, wid) == ENQUEUED


def test_a_nul_character_is_refused_by_postgresql_and_kept_by_sqlite(
        store: SystemStore) -> None:
    """PostgreSQL's text cannot hold NUL: a clear error and nothing written
    (never the text cut short); SQLite keeps it as given."""
    row = queued("n1", name="nul\x00name")
    if store.backend == "postgres":
        with pytest.raises(errors.StoreError, match="NUL"):
            store.enqueue([row])
        assert store.get_workflow("n1") is None
    else:
        assert store.enqueue([row]) == [None]
        got = store.get_workflow("n1")
        assert got is not None and got.name == "nul\x00name"


@contextlib.contextmanager
def _write_locked(store: SystemStore, db_url: str) -> Iterator[None]:
    """Hold the workflow table's write lock from another connection."""
    if store.backend == "postgres":
        import psycopg

        with psycopg.connect(db_url) as locker:
            locker.execute(f"LOCK TABLE {store.prefix}workflow_status "  # type: ignore[attr-defined]
                           "IN EXCLUSIVE MODE")
            yield
            locker.rollback()
        return
    import sqlite3

    locker = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        yield
        locker.execute("ROLLBACK")
    finally:
        locker.close()


def test_a_listener_without_queues_hears_no_enqueue(store: SystemStore, db_url: str) -> None:
    """A process that dequeues nothing listens to every channel but the
    queues': enqueues (its own too) do not wake it."""
    if store.backend != "postgres":
        pytest.skip("SQLite processes poll: nothing is announced")
    other = open_store(db_url)
    heard: list[tuple[str, str]] = []
    try:
        other.start_listener(lambda channel, key: heard.append((channel, key)), queues=False)
        store.enqueue([queued("a1", "qa")])
        # Notifications arrive in commit order: once a wake sent after the
        # enqueue is heard, an announcement of the enqueue would have been.
        deadline = time.monotonic() + 10
        while ("wake", "probe") not in heard:
            assert time.monotonic() < deadline, "the listener never listened"
            with store._tx() as conn:  # type: ignore[attr-defined]
                conn.execute("SELECT pg_notify('relos_queues', 'qb')")
                conn.execute("SELECT pg_notify('relos_wake', 'probe')")
            time.sleep(0.05)
        assert [c for c, _ in heard if c == "queues"] == []
    finally:
        other.close()
