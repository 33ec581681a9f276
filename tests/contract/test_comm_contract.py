"""The messaging part of the SystemStore contract (``send`` / ``recv``,
events, streams): every guarantee of their docstrings in
``relos/store/base.py``, on SQLite and on PostgreSQL.

History tables the interface does not read back are inspected with plain SQL
through the ``sql`` fixture.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import astuple, replace
from typing import Any

import pytest

from dbhelpers import event_history, heard_exactly
from relos import errors
from relos.store.base import STEP_COLUMNS, StepRow

T0 = 1_700_000_000_000


# --- send / recv ------------------------------------------------------------------------


class Steps:
    """Hands out fresh recv steps (distinct function_ids) for one workflow, thread-safely."""

    def __init__(self, workflow_id: str, start: int = 1) -> None:
        self.workflow_id = workflow_id
        self._ids = itertools.count(start)
        self._lock = threading.Lock()

    def next(self) -> StepRow:
        with self._lock:
            fid = next(self._ids)
        return StepRow(workflow_id=self.workflow_id, function_id=fid, function_name="DBOS.recv",
                       kind="recv", output=None, error=None, started_at=T0, completed_at=T0)


def test_recv_is_fifo_per_topic_and_topics_are_isolated(store, make_workflow):
    store.insert_workflow(make_workflow("dest"))
    for i in range(3):
        store.send("dest", "a", f'"a{i}"', f"m-a{i}", None, T0 + i, None)
        store.send("dest", "b", f'"b{i}"', f"m-b{i}", None, T0 + i, None)
    steps = Steps("dest")

    assert [store.recv("dest", "b", steps.next(), T0 + 10) for _ in range(2)] == ['"b0"', '"b1"']
    assert [store.recv("dest", "a", steps.next(), T0 + 10) for _ in range(4)] == [
        '"a0"', '"a1"', '"a2"', None]
    assert store.recv("dest", "b", steps.next(), T0 + 10) == '"b2"'
    assert store.recv("dest", "b", steps.next(), T0 + 10) is None
    assert store.recv("dest", "c", steps.next(), T0 + 10) is None

    # Messages are per destination too.
    store.insert_workflow(make_workflow("other"))
    store.send("other", "a", '"for other"', "m-other", None, T0, None)
    assert store.recv("dest", "a", steps.next(), T0 + 10) is None
    assert store.recv("other", "a", Steps("other").next(), T0 + 10) == '"for other"'


def test_recv_records_step_with_message_as_output(store, make_workflow):
    store.insert_workflow(make_workflow("dest"))
    store.send("dest", "t", '{"hello": 1}', "m1", "sender-wf", T0, None)
    step = Steps("dest", start=7).next()
    assert store.recv("dest", "t", step, T0 + 1) == '{"hello": 1}'
    recorded = store.load_steps("dest")
    assert list(recorded) == [7]
    assert recorded[7].output == '{"hello": 1}'
    assert (recorded[7].function_name, recorded[7].kind) == ("DBOS.recv", "recv")


def test_recv_on_empty_topic_returns_none_and_records_nothing(store, make_workflow, rows_in):
    store.insert_workflow(make_workflow("dest"))
    store.send("dest", "other", '"x"', "m1", None, T0, None)
    assert store.recv("dest", "t", Steps("dest").next(), T0) is None
    assert store.load_steps("dest") == {}
    assert rows_in(store, "notifications", "consumed_at IS NULL") == 1


def test_send_is_idempotent_by_message_id(store, make_workflow, rows_in):
    store.insert_workflow(make_workflow("dest"))
    store.send("dest", "t", '"first"', "same-id", None, T0, None)
    store.send("dest", "t", '"second"', "same-id", None, T0 + 1, None)
    assert rows_in(store, "notifications") == 1
    steps = Steps("dest")
    assert store.recv("dest", "t", steps.next(), T0 + 2) == '"first"'
    assert store.recv("dest", "t", steps.next(), T0 + 2) is None
    # Sending it again after it was consumed does not queue it again either.
    store.send("dest", "t", '"first"', "same-id", None, T0 + 3, None)
    assert store.recv("dest", "t", steps.next(), T0 + 4) is None


def test_concurrent_sends_with_same_message_id_queue_one_message(
    store, make_workflow, concurrently, rows_in
):
    store.insert_workflow(make_workflow("dest"))
    concurrently(8, lambda i: store.send("dest", "t", f'"{i}"', "dup", None, T0 + i, None))
    assert rows_in(store, "notifications") == 1


def test_send_records_senders_step_in_same_transaction(
    store, make_workflow, make_step, rows_in
):
    store.insert_workflow(make_workflow("sender"))
    store.insert_workflow(make_workflow("dest"))
    step = make_step("sender", 1, function_name="DBOS.send", kind="send", output=None)
    store.send("dest", "t", '"x"', "m1", "sender", T0, step)
    assert store.load_steps("sender") == {1: step}
    assert rows_in(store, "notifications") == 1

    # A refused step (already recorded) means the message is not queued either.
    with pytest.raises(errors.WorkflowConflictError):
        store.send("dest", "t", '"y"', "m2", "sender", T0, replace(step, output='"other"'))
    assert rows_in(store, "notifications") == 1
    assert store.load_steps("sender") == {1: step}


def test_recv_with_refused_step_does_not_consume(store, make_workflow, make_step):
    store.insert_workflow(make_workflow("dest"))
    store.record_step(make_step("dest", 1))
    store.send("dest", "t", '"only"', "m1", None, T0, None)
    duplicate = StepRow("dest", 1, "DBOS.recv", "recv", None, None, T0, T0)

    with pytest.raises(errors.WorkflowConflictError):
        store.recv("dest", "t", duplicate, T0 + 1)
    assert store.recv("dest", "t", Steps("dest", start=2).next(), T0 + 2) == '"only"'


def test_concurrent_receivers_each_message_delivered_exactly_once(
    store, make_workflow, concurrently
):
    store.insert_workflow(make_workflow("dest"))
    sent = [f'"msg-{i:02d}"' for i in range(24)]
    for i, m in enumerate(sent):
        store.send("dest", "t", m, f"id-{i}", None, T0 + i, None)
    steps = Steps("dest")

    def drain(_: int) -> list[str]:
        got = []
        while (m := store.recv("dest", "t", steps.next(), T0 + 100)) is not None:
            got.append(m)
        return got

    per_thread = concurrently(6, drain)
    received = [m for got in per_thread for m in got]
    assert sorted(received) == sent  # every message, none twice
    for got in per_thread:  # each receiver saw its messages in queue order
        assert got == sorted(got)
    assert store.recv("dest", "t", steps.next(), T0 + 200) is None
    recorded = store.load_steps("dest")
    assert sorted(s.output for s in recorded.values()) == sent


# --- events -----------------------------------------------------------------------------


def test_set_event_upserts_and_history_keeps_every_value(store, make_workflow, sql):
    store.insert_workflow(make_workflow("wf"))
    store.set_event("wf", "k", '"v1"', T0 + 1, None)
    store.set_event("wf", "k", '"v2"', T0 + 2, None)
    store.set_event("wf", "other", '"o"', T0 + 3, None)
    store.set_event("wf", "k", '"v3"', T0 + 4, None)

    assert store.get_event("wf", "k") == (True, '"v3"')
    assert store.get_all_events("wf") == {"k": '"v3"', "other": '"o"'}
    assert event_history(sql, store, "wf", "k") == ['"v1"', '"v2"', '"v3"']
    assert event_history(sql, store, "wf", "other") == ['"o"']


def test_events_are_per_workflow_and_unset_keys_are_not_found(store, make_workflow):
    store.insert_workflow(make_workflow("a"))
    store.insert_workflow(make_workflow("b"))
    assert store.get_all_events("a") == {}
    store.set_event("a", "k", '"a"', T0, None)
    store.set_event("b", "k", '"b"', T0, None)
    assert store.get_all_events("a") == {"k": '"a"'}
    assert store.get_event("b", "k") == (True, '"b"')
    assert store.get_event("a", "missing") == (False, None)
    assert store.get_event("unknown-wf", "k") == (False, None)
    assert store.get_all_events("unknown-wf") == {}


def test_set_event_records_step_in_same_transaction(store, make_workflow, make_step, sql):
    store.insert_workflow(make_workflow("wf"))
    step = make_step("wf", 1, function_name="DBOS.set_event", kind="set_event", output=None)
    store.set_event("wf", "k", '"v1"', T0, step)
    assert store.load_steps("wf") == {1: step}

    with pytest.raises(errors.WorkflowConflictError):
        store.set_event("wf", "k", '"v2"', T0 + 1, replace(step, output='"other"'))
    assert store.get_event("wf", "k") == (True, '"v1"')
    assert event_history(sql, store, "wf", "k") == ['"v1"']
    assert store.load_steps("wf") == {1: step}


# --- streams ----------------------------------------------------------------------------


def test_write_stream_appends_at_next_position_then_closes(store, make_workflow):
    store.insert_workflow(make_workflow("wf"))
    for i in range(4):
        store.write_stream("wf", "s", f'"{i}"', False, T0 + i, None, None)
    store.write_stream("wf", "s", None, True, T0 + 9, None, None)

    assert store.read_stream("wf", "s", 0) == [
        (0, '"0"', False), (1, '"1"', False), (2, '"2"', False), (3, '"3"', False),
        (4, None, True)]
    assert store.read_stream("wf", "s", 3) == [(3, '"3"', False), (4, None, True)]
    assert store.read_stream("wf", "s", 5) == []


def test_streams_are_per_key_and_per_workflow(store, make_workflow):
    store.insert_workflow(make_workflow("a"))
    store.insert_workflow(make_workflow("b"))
    store.write_stream("a", "x", '"a-x-0"', False, T0, None, None)
    store.write_stream("a", "y", '"a-y-0"', False, T0, None, None)
    store.write_stream("a", "x", '"a-x-1"', False, T0, None, None)
    store.write_stream("b", "x", '"b-x-0"', False, T0, None, None)
    store.write_stream("a", "y", None, True, T0, None, None)

    assert store.read_stream("a", "x", 0) == [(0, '"a-x-0"', False), (1, '"a-x-1"', False)]
    assert store.read_stream("a", "y", 0) == [(0, '"a-y-0"', False), (1, None, True)]
    assert store.read_stream("b", "x", 0) == [(0, '"b-x-0"', False)]
    assert store.read_stream("b", "y", 0) == []
    # Closing a's stream y leaves b's stream y writable.
    store.write_stream("b", "y", '"ok"', False, T0, None, None)
    assert store.read_stream("b", "y", 0) == [(0, '"ok"', False)]


def test_writing_to_closed_stream_raises_store_error(store, make_workflow, make_step):
    store.insert_workflow(make_workflow("wf"))
    store.write_stream("wf", "s", '"v"', False, T0, None, None)
    store.write_stream("wf", "s", None, True, T0 + 1, None, None)
    before = store.read_stream("wf", "s", 0)

    with pytest.raises(errors.StoreError):
        store.write_stream("wf", "s", '"late"', False, T0 + 2, None, None)
    with pytest.raises(errors.StoreError):
        store.write_stream("wf", "s", None, True, T0 + 3, make_step("wf", 5), 5)
    assert store.read_stream("wf", "s", 0) == before
    assert store.load_steps("wf") == {}


def test_write_stream_records_step_in_same_transaction(store, make_workflow, make_step):
    store.insert_workflow(make_workflow("wf"))
    step = make_step("wf", 1, function_name="DBOS.write_stream", kind="write_stream",
                     output=None)
    store.write_stream("wf", "s", '"v0"', False, T0, step, 1)
    assert store.load_steps("wf") == {1: step}

    with pytest.raises(errors.WorkflowConflictError):
        store.write_stream("wf", "s", '"v1"', False, T0 + 1, replace(step, output='"x"'), 1)
    assert store.read_stream("wf", "s", 0) == [(0, '"v0"', False)]


def _wait_for_lock_waiters(monitor: Any, n: int, timeout: float = 10.0) -> None:
    """Block until ``n`` sessions of this PostgreSQL database wait on a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'").fetchone()[0]
        if waiting >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"expected {n} sessions waiting on a lock")


def test_concurrent_appends_to_one_stream_all_land(
    store, db_url, make_workflow, make_step
):
    """The store is thread-safe: two writers appending to the same stream at the
    same time both succeed, at consecutive positions.

    The interleaving is forced. A blocker transaction holds back writer A after
    A appended (uncommitted) but before it commits; writer B then appends, and
    the blocker is released so A commits while B is in flight.
    """
    store.insert_workflow(make_workflow("wf"))
    results: dict[str, Any] = {}

    def write(name: str, step: StepRow | None, fid: int | None) -> None:
        try:
            store.write_stream("wf", "s", f'"{name}"', False, T0, step, fid)
            results[name] = "ok"
        except Exception as exc:  # recorded, asserted below
            results[name] = exc

    a = threading.Thread(target=write, args=("A", make_step("wf", 10), 10))
    b = threading.Thread(target=write, args=("B", None, None))
    if store.backend == "postgres":
        import psycopg

        with psycopg.connect(db_url, autocommit=True) as monitor, \
                psycopg.connect(db_url, autocommit=True) as blocker:
            blocker.execute("BEGIN")
            # An uncommitted row with A's step key: A's step insert waits on it.
            cols = ", ".join(STEP_COLUMNS)
            blocker.execute(
                f"INSERT INTO {store.prefix}operation_outputs ({cols}) VALUES "
                f"({', '.join(['%s'] * len(STEP_COLUMNS))})",
                astuple(make_step("wf", 10, output='"blocker"')))
            try:
                a.start()
                _wait_for_lock_waiters(monitor, 1)
                b.start()
                _wait_for_lock_waiters(monitor, 2)
            finally:
                blocker.execute("ROLLBACK")
                a.join(30)
                b.join(30)
    else:
        import sqlite3
        from contextlib import closing

        with closing(sqlite3.connect(store.path, isolation_level=None)) as blocker:
            blocker.execute("BEGIN IMMEDIATE")
            try:
                a.start()
                b.start()
                time.sleep(0.2)
            finally:
                blocker.execute("ROLLBACK")
                a.join(30)
                b.join(30)

    assert results == {"A": "ok", "B": "ok"}
    entries = store.read_stream("wf", "s", 0)
    assert [(pos, closed) for pos, _, closed in entries] == [(0, False), (1, False)]
    assert sorted(v for _, v, _ in entries) == ['"A"', '"B"']
    assert list(store.load_steps("wf")) == [10]


# --- SQLite: waits told of other connections' writes --------------------------------------


def test_sqlite_listener_tells_waits_of_other_connections_writes(store, db_url, make_workflow):
    """SQLite cannot announce a message, an event, a stream entry or a
    finished workflow: a process's listener watches the file's commit count
    and, for the channels its waiters wait on at the time, tells of the
    workflows whose rows since concern them, also those written just after a
    wait began; not of channels nobody waits on, nor of what was written
    while nobody waited."""
    if store.backend != "sqlite":
        pytest.skip("PostgreSQL announces them by NOTIFY")
    from relos.store import open_store

    for wid in ("to", "ev", "st", "done", "early"):
        store.insert_workflow(make_workflow(wid))
    store.send("early", "t", '"before"', "m-early", None, T0, None)
    waited = {"notifications", "events", "streams", "status", "cancel"}
    heard: list[tuple[str, str]] = []
    listening = open_store(db_url)

    def wait_for(expected: list[tuple[str, str]]) -> None:
        heard_exactly(heard, expected)

    try:
        listening.start_listener(lambda channel, key: heard.append((channel, key)),
                                 queues=False, waited=lambda: frozenset(waited))
        time.sleep(0.3)  # (the listener takes its baselines)
        store.send("to", "t", '"hi"', "m1", None, T0, None)
        wait_for([("notifications", "to")])
        store.set_event("ev", "k", '"v"', T0, None)
        store.write_stream("st", "k", '"s"', False, T0, None, None)
        store.complete_workflow("done", "SUCCESS", '"ok"', None, T0)
        wait_for([("events", "ev"), ("streams", "st"), ("status", "done")])
        # a channel nobody waits on any more is not told of
        waited.discard("notifications")
        time.sleep(0.2)
        store.send("to", "t", '"unheard"', "m2", None, T0, None)
        store.set_event("ev", "k", '"v2"', T0, None)
        wait_for([("events", "ev")])
        # waited on again: told of what comes after, not of what came before
        waited.add("notifications")
        time.sleep(0.2)
        store.send("early", "t", '"after"', "m3", None, T0, None)
        wait_for([("notifications", "early")])
        # a write right after a wait began, before the listener saw the wait
        waited.discard("streams")
        time.sleep(0.2)
        waited.add("streams")
        store.write_stream("st", "k", '"s2"', False, T0, None, None)
        wait_for([("streams", "st")])
    finally:
        listening.close()
