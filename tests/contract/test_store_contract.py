"""The SystemStore contract: every guarantee stated by a docstring in
``relos/store/base.py``, checked on SQLite and on PostgreSQL (messages,
events and streams: test_comm_contract.py).

Tests use only the public interface, except where a guarantee is about tables
the interface does not read back (history tables, the raw message queue); those
are inspected with plain SQL through the ``sql`` / ``rows_in`` fixtures.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import pytest

from dbhelpers import event_history
from relos import errors
from relos.store.base import (
    CANCELLED,
    ENQUEUED,
    ERROR,
    ISOLATION_LEVELS,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    PENDING,
    SUCCESS,
    ExecutorRow,
    ListFilter,
    StepRow,
    WorkflowRow,
)

T0 = 1_700_000_000_000
NOT_PENDING = [SUCCESS, ERROR, CANCELLED, ENQUEUED, MAX_RECOVERY_ATTEMPTS_EXCEEDED]
STORE_TABLES = ("workflow_status", "operation_outputs", "workflow_status_history",
                "notifications", "workflow_events", "workflow_events_history", "streams")
# The column naming the workflow in each table above.
WF_COLUMN = {t: ("destination_id" if t == "notifications" else "workflow_id")
             for t in STORE_TABLES}


def full_row(workflow_id: str) -> WorkflowRow:
    """A WorkflowRow with every column set to a distinctive non-default value."""
    return WorkflowRow(
        workflow_id=workflow_id, status=PENDING, name="module.full_workflow",
        executor_id="exec-full", created_at=T0 + 1, updated_at=T0 + 2,
        inputs='{"args": [1, 2], "kwargs": {"k": "v"}}', output='"partial"', error='"none yet"',
        owner="instance-full", class_name="SomeClass", config_name="cfg",
        application_version="v1.2.3", application_id="app-42", authenticated_user="alice",
        assumed_role="admin", authenticated_roles='["admin", "user"]',
        parent_workflow_id="parent-x", forked_from="origin-y", queue_name="q1",
        deduplication_id="dedup-1", priority=7, recovery_attempts=3, timeout_ms=60_000,
        deadline_epoch_ms=T0 + 60_000, started_at=T0 + 3, completed_at=None,
    )


def history(sql: Any, store: Any, workflow_id: str) -> list[tuple[Any, ...]]:
    """(status, owner) of every workflow_status_history row of the workflow, in order."""
    return sql(store, "SELECT status, owner FROM {p}workflow_status_history "
                      "WHERE workflow_id = ? ORDER BY id", workflow_id)


# --- insert_workflow / get_workflow ------------------------------------------------------


def test_workflow_row_round_trips_every_column(store):
    assert store.get_workflow("wf-full") is None
    row = full_row("wf-full")
    assert store.insert_workflow(row) is None
    assert store.get_workflow("wf-full") == row
    assert store.get_workflow("no-such-workflow") is None


def test_insert_workflow_creates_once_and_returns_existing_row_unchanged(store, make_workflow):
    first = make_workflow("wf-1", name="first", inputs='"a"')
    assert store.insert_workflow(first) is None
    assert store.get_workflow("wf-1") == first

    second = replace(first, name="second", inputs='"b"', status=SUCCESS, output='"x"',
                     executor_id="exec-b", updated_at=T0 + 99)
    existing = store.insert_workflow(second)
    assert existing == first
    assert store.get_workflow("wf-1") == first


def test_insert_workflow_concurrent_same_id_has_exactly_one_creator(
    store, make_workflow, concurrently, rows_in
):
    rows = [make_workflow("wf-race", name=f"fn_{i}", inputs=f'"{i}"', executor_id=f"e{i}")
            for i in range(8)]
    results = concurrently(8, lambda i: store.insert_workflow(rows[i]))

    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    stored = store.get_workflow("wf-race")
    assert stored == rows[winners[0]]
    for i, r in enumerate(results):
        if i != winners[0]:
            assert r == stored
    assert rows_in(store, "workflow_status") == 1
    assert rows_in(store, "workflow_status_history", "workflow_id = ?", "wf-race") == 1


# --- insert_child_workflow ------------------------------------------------------------------


def test_insert_child_workflow_records_the_parents_step(store, make_workflow, make_step):
    store.insert_workflow(make_workflow("parent"))
    child = make_workflow("child", parent_workflow_id="parent", name="child_fn")
    step = make_step("parent", 1, kind="child_workflow", output=None, child_workflow_id="child")

    assert store.insert_child_workflow(child, step) is None
    assert store.get_workflow("child") == child
    assert store.load_steps("parent") == {1: step}
    assert store.load_steps("child") == {}


def test_insert_child_workflow_existing_child_is_returned_unchanged(
    store, make_workflow, make_step
):
    store.insert_workflow(make_workflow("parent"))
    child = make_workflow("child", parent_workflow_id="parent", name="child_fn")
    step = make_step("parent", 1, kind="child_workflow", output=None, child_workflow_id="child")
    assert store.insert_child_workflow(child, step) is None

    again = replace(child, name="other_fn", inputs='"other"')
    assert store.insert_child_workflow(again, step) == child
    assert store.get_workflow("child") == child
    assert store.load_steps("parent") == {1: step}


def test_insert_child_workflow_records_step_when_child_already_exists(
    store, make_workflow, make_step
):
    """The step is recorded "if not already there", even when the child exists."""
    store.insert_workflow(make_workflow("parent"))
    child = make_workflow("child", parent_workflow_id="parent")
    assert store.insert_workflow(child) is None
    step = make_step("parent", 2, kind="child_workflow", output=None, child_workflow_id="child")

    assert store.insert_child_workflow(child, step) == child
    assert store.load_steps("parent") == {2: step}


def test_insert_child_workflow_is_one_transaction(store, make_workflow, make_step):
    """A step the database refuses rolls back the child's creation."""
    store.insert_workflow(make_workflow("parent"))
    child = make_workflow("child", parent_workflow_id="parent")
    bad_step = make_step("parent", 1, function_name=None, child_workflow_id="child")

    with pytest.raises(errors.StoreError):
        store.insert_child_workflow(child, bad_step)
    assert store.get_workflow("child") is None
    assert store.load_steps("parent") == {}


def test_insert_child_workflow_of_cancelled_parent_is_all_or_nothing(
    store, make_workflow, make_step
):
    store.insert_workflow(make_workflow("parent"))
    assert store.set_workflow_status("parent", CANCELLED, T0 + 1)
    child = make_workflow("child", parent_workflow_id="parent")
    step = make_step("parent", 1, kind="child_workflow", output=None, child_workflow_id="child")

    with contextlib.suppress(errors.WorkflowCancelledError):
        store.insert_child_workflow(child, step)
    child_created = store.get_workflow("child") is not None
    step_recorded = 1 in store.load_steps("parent")
    assert child_created == step_recorded, (child_created, step_recorded)


# --- complete_workflow ------------------------------------------------------------------


def test_complete_workflow_sets_terminal_status_of_pending_workflow(store, make_workflow):
    store.insert_workflow(make_workflow("wf"))
    assert store.complete_workflow("wf", SUCCESS, '"result"', None, T0 + 50) is True
    row = store.get_workflow("wf")
    assert (row.status, row.output, row.error) == (SUCCESS, '"result"', None)
    assert row.updated_at == T0 + 50
    assert row.completed_at == T0 + 50

    # Already terminal: a second completion changes nothing.
    assert store.complete_workflow("wf", ERROR, None, '"boom"', T0 + 60) is False
    assert store.get_workflow("wf") == row

    store.insert_workflow(make_workflow("wf-err"))
    assert store.complete_workflow("wf-err", ERROR, None, '"boom"', T0 + 5) is True
    row = store.get_workflow("wf-err")
    assert (row.status, row.output, row.error) == (ERROR, None, '"boom"')


def test_complete_workflow_leaves_non_pending_workflows_alone(store, make_workflow):
    for status in NOT_PENDING:
        row = make_workflow(f"wf-{status}", status=status)
        store.insert_workflow(row)
        assert store.complete_workflow(row.workflow_id, SUCCESS, '"late"', None, T0 + 5) is False
        assert store.get_workflow(row.workflow_id) == row
    assert store.complete_workflow("unknown", SUCCESS, None, None, T0) is False


def test_cancelled_workflow_stays_cancelled(store, make_workflow):
    store.insert_workflow(make_workflow("wf"))
    assert store.set_workflow_status("wf", CANCELLED, T0 + 1)
    assert store.complete_workflow("wf", SUCCESS, '"late"', None, T0 + 2) is False
    row = store.get_workflow("wf")
    assert row.status == CANCELLED
    assert row.output is None


# --- claim_workflow ---------------------------------------------------------------------


def test_claim_workflow_swaps_owner_and_counts_attempt(store, make_workflow):
    store.insert_workflow(make_workflow("wf", owner=None, recovery_attempts=1))
    claimed = store.claim_workflow("wf", None, "inst-1", "exec-b", T0 + 10)
    assert claimed is not None
    assert (claimed.owner, claimed.executor_id) == ("inst-1", "exec-b")
    assert claimed.recovery_attempts == 2
    assert claimed.updated_at == T0 + 10
    assert store.get_workflow("wf") == claimed

    # The next claim must name the current owner.
    again = store.claim_workflow("wf", "inst-1", "inst-2", "exec-c", T0 + 20)
    assert again is not None
    assert (again.owner, again.recovery_attempts) == ("inst-2", 3)


def test_claim_workflow_with_wrong_expected_owner_loses(store, make_workflow):
    row = make_workflow("wf", owner="inst-1")
    store.insert_workflow(row)
    assert store.claim_workflow("wf", "inst-other", "inst-2", "exec-b", T0 + 1) is None
    assert store.claim_workflow("wf", None, "inst-2", "exec-b", T0 + 1) is None
    assert store.get_workflow("wf") == row
    assert store.claim_workflow("unknown", None, "inst", "exec", T0) is None


def test_claim_workflow_of_non_pending_workflow_loses(store, make_workflow):
    for status in NOT_PENDING:
        row = make_workflow(f"wf-{status}", status=status, owner=None)
        store.insert_workflow(row)
        assert store.claim_workflow(row.workflow_id, None, "inst-2", "exec-b", T0 + 1) is None
        assert store.get_workflow(row.workflow_id) == row


def test_concurrent_claims_have_exactly_one_winner(store, make_workflow, concurrently):
    store.insert_workflow(make_workflow("wf", owner="dead-inst", recovery_attempts=4))
    n = 8
    results = concurrently(
        n, lambda i: store.claim_workflow("wf", "dead-inst", f"inst-{i}", f"exec-{i}", T0 + i)
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1, results
    stored = store.get_workflow("wf")
    assert stored == winners[0]
    assert stored.owner.startswith("inst-")
    assert stored.recovery_attempts == 5


# --- set_workflow_status ----------------------------------------------------------------


def test_set_workflow_status_unconditional(store, make_workflow):
    store.insert_workflow(make_workflow("wf"))
    assert store.set_workflow_status("wf", ENQUEUED, T0 + 1) is True
    assert store.get_workflow("wf").status == ENQUEUED
    assert store.set_workflow_status("wf", ERROR, T0 + 2, error='"why"') is True
    row = store.get_workflow("wf")
    assert (row.status, row.error, row.updated_at) == (ERROR, '"why"', T0 + 2)
    # Without an error argument the recorded error is kept.
    assert store.set_workflow_status("wf", CANCELLED, T0 + 3)
    assert store.get_workflow("wf").error == '"why"'
    assert store.set_workflow_status("unknown", CANCELLED, T0) is False


def test_set_workflow_status_only_if(store, make_workflow):
    store.insert_workflow(make_workflow("wf"))
    before = store.get_workflow("wf")
    assert store.set_workflow_status("wf", CANCELLED, T0 + 1,
                                     only_if=frozenset({ENQUEUED, SUCCESS})) is False
    assert store.get_workflow("wf") == before

    assert store.set_workflow_status("wf", CANCELLED, T0 + 2,
                                     only_if=frozenset({PENDING, ENQUEUED})) is True
    assert store.get_workflow("wf").status == CANCELLED
    assert store.set_workflow_status("wf", PENDING, T0 + 3,
                                     only_if=frozenset({PENDING})) is False
    assert store.get_workflow("wf").status == CANCELLED


# --- resume_workflow --------------------------------------------------------------------


def test_resume_workflow_makes_it_pending_again_and_keeps_steps(
    store, make_workflow, make_step
):
    for status in (CANCELLED, ERROR, MAX_RECOVERY_ATTEMPTS_EXCEEDED, ENQUEUED):
        wid = f"wf-{status}"
        store.insert_workflow(make_workflow(wid, owner="inst-1", recovery_attempts=5))
        steps = [make_step(wid, 1), make_step(wid, 2, output=None, error='"failed"')]
        for s in steps:
            store.record_step(s)
        assert store.set_workflow_status(wid, status, T0 + 10, error='"stopped"')

        assert store.resume_workflow(wid, T0 + 20) is True
        row = store.get_workflow(wid)
        assert row.status == PENDING
        assert row.owner is None
        assert row.recovery_attempts == 0
        assert row.updated_at == T0 + 20
        assert store.load_steps(wid) == {1: steps[0], 2: steps[1]}
        # An executor can now claim it (owner NULL) and record further steps.
        assert store.claim_workflow(wid, None, "inst-2", "exec-a", T0 + 30) is not None
        store.record_step(make_step(wid, 3))


def test_resume_workflow_refuses_succeeded_workflow(store, make_workflow):
    store.insert_workflow(make_workflow("wf", owner="inst-1"))
    assert store.complete_workflow("wf", SUCCESS, '"done"', None, T0 + 1)
    before = store.get_workflow("wf")
    assert store.resume_workflow("wf", T0 + 2) is False
    assert store.get_workflow("wf") == before
    assert store.resume_workflow("unknown", T0) is False


# --- record_step / load_steps -------------------------------------------------------------


def test_record_and_load_steps(store, make_workflow, make_step):
    store.insert_workflow(make_workflow("wf"))
    store.insert_workflow(make_workflow("other"))
    steps = [
        make_step("wf", 3, kind="step", output='"three"'),
        make_step("wf", 1, kind="transaction", output=None, error='{"type": "ValueError"}'),
        make_step("wf", 2, kind="child_workflow", output=None, child_workflow_id="kid",
                  executor_id=None),
        make_step("wf", 0, function_name="DBOS.sleep", kind="sleep", output="1700000000999"),
    ]
    for s in steps:
        store.record_step(s)
    store.record_step(make_step("other", 1))

    loaded = store.load_steps("wf")
    assert loaded == {s.function_id: s for s in steps}
    assert all(type(k) is int for k in loaded)
    assert store.load_steps("unknown") == {}


def test_record_step_refused_when_workflow_not_pending(store, make_workflow, make_step):
    for status in NOT_PENDING:
        wid = f"wf-{status}"
        store.insert_workflow(make_workflow(wid))
        store.record_step(make_step(wid, 1))
        assert store.set_workflow_status(wid, status, T0 + 1)
        before = store.get_workflow(wid)

        with pytest.raises(errors.WorkflowCancelledError) as info:
            store.record_step(make_step(wid, 2))
        assert info.value.workflow_id == wid
        assert store.load_steps(wid) == {1: make_step(wid, 1)}
        assert store.get_workflow(wid) == before


def test_record_step_refuses_duplicate_and_keeps_original(store, make_workflow, make_step):
    store.insert_workflow(make_workflow("wf"))
    original = make_step("wf", 1, output='"first"')
    store.record_step(original)
    before = store.get_workflow("wf")

    with pytest.raises(errors.WorkflowConflictError):
        store.record_step(make_step("wf", 1, output='"second"', function_name="other"))
    assert store.load_steps("wf") == {1: original}
    assert store.get_workflow("wf") == before


# --- transaction / record_step_in ---------------------------------------------------------


@pytest.fixture
def user_table(store):
    """A user table ``user_kv(k, v)`` in the system database; returns (insert, select)."""
    with store.transaction(None) as conn:
        conn.execute("CREATE TABLE user_kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
    ph = "%s" if store.backend == "postgres" else "?"

    def insert(conn: Any, k: str, v: str) -> None:
        conn.execute(f"INSERT INTO user_kv (k, v) VALUES ({ph}, {ph})", (k, v))

    def select() -> dict[str, str]:
        from contextlib import closing

        conn = store.raw_connection()
        if store.backend == "postgres":
            with closing(conn):
                return dict(conn.execute("SELECT k, v FROM user_kv").fetchall())
        return dict(conn.execute("SELECT k, v FROM user_kv").fetchall())

    return insert, select


def test_transaction_commits_on_normal_exit(store, user_table):
    insert, select = user_table
    expected = {}
    for level in (None, *ISOLATION_LEVELS):
        with store.transaction(level) as conn:
            insert(conn, f"a {level}", "1")
            insert(conn, f"b {level}", "2")
        expected.update({f"a {level}": "1", f"b {level}": "2"})
        assert select() == expected


def test_transaction_rolls_back_on_exception(store, user_table):
    insert, select = user_table
    with store.transaction(None) as conn:
        insert(conn, "kept", "1")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction(None) as conn:
        insert(conn, "lost", "2")
        raise Boom
    assert select() == {"kept": "1"}


def test_record_step_in_commits_with_user_writes(store, user_table, make_workflow, make_step):
    insert, select = user_table
    store.insert_workflow(make_workflow("wf"))
    step = make_step("wf", 1, kind="transaction")
    with store.transaction(None) as conn:
        insert(conn, "k", "v")
        store.record_step_in(conn, step)
    assert select() == {"k": "v"}
    assert store.load_steps("wf") == {1: step}


def test_record_step_in_rolled_back_transaction_leaves_no_step(
    store, user_table, make_workflow, make_step
):
    insert, select = user_table
    store.insert_workflow(make_workflow("wf"))

    with pytest.raises(RuntimeError, match="user code failed"), \
            store.transaction(None) as conn:
        insert(conn, "k", "v")
        store.record_step_in(conn, make_step("wf", 1, kind="transaction"))
        raise RuntimeError("user code failed")
    assert store.load_steps("wf") == {}
    assert select() == {}


def test_record_step_in_refuses_duplicate_and_rolls_back_user_writes(
    store, user_table, make_workflow, make_step
):
    insert, select = user_table
    store.insert_workflow(make_workflow("wf"))
    original = make_step("wf", 1, output='"first"')
    store.record_step(original)

    with pytest.raises(errors.WorkflowConflictError), store.transaction(None) as conn:
        insert(conn, "k", "v")
        store.record_step_in(conn, make_step("wf", 1, output='"second"'))
    assert select() == {}
    assert store.load_steps("wf") == {1: original}


def test_record_step_in_refused_for_cancelled_workflow(
    store, user_table, make_workflow, make_step
):
    insert, select = user_table
    store.insert_workflow(make_workflow("wf"))
    assert store.set_workflow_status("wf", CANCELLED, T0 + 1)

    with pytest.raises(errors.WorkflowCancelledError), store.transaction(None) as conn:
        insert(conn, "k", "v")
        store.record_step_in(conn, make_step("wf", 1))
    assert select() == {}
    assert store.load_steps("wf") == {}


# --- fork_workflow ----------------------------------------------------------------------


def _fork_source(store: Any, make_workflow: Any, make_step: Any) -> dict[int, StepRow]:
    """A finished workflow whose steps 1..6 set events and write a stream."""
    store.insert_workflow(make_workflow("src", name="fn", inputs='"in"', owner="inst-1"))
    store.set_event("src", "k1", '"k1 at 1"', T0 + 1, make_step("src", 1, kind="set_event"))
    store.write_stream("src", "s", '"s at 2"', False, T0 + 2, make_step("src", 2), 2)
    store.set_event("src", "k2", '"k2 at 3"', T0 + 3, make_step("src", 3, kind="set_event"))
    store.set_event("src", "k1", '"k1 at 4"', T0 + 4, make_step("src", 4, kind="set_event"))
    store.write_stream("src", "s", '"s at 5"', False, T0 + 5, make_step("src", 5), 5)
    store.set_event("src", "k3", '"k3 at 6"', T0 + 6, make_step("src", 6, kind="set_event"))
    store.write_stream("src", "s", None, True, T0 + 7, None, 6)
    assert store.complete_workflow("src", SUCCESS, '"out"', None, T0 + 8)
    return store.load_steps("src")


def test_fork_workflow_copies_only_what_precedes_start_step(store, make_workflow, make_step):
    src_steps = _fork_source(store, make_workflow, make_step)
    src_row = store.get_workflow("src")
    new_row = make_workflow("fork", name="fn", inputs='"in"', forked_from="src",
                            created_at=T0 + 100)

    assert store.fork_workflow("src", "fork", 4, new_row) is None

    assert store.get_workflow("fork") == new_row
    assert store.load_steps("fork") == {
        fid: replace(src_steps[fid], workflow_id="fork") for fid in (1, 2, 3)}
    assert store.get_all_events("fork") == {"k1": '"k1 at 1"', "k2": '"k2 at 3"'}
    assert store.read_stream("fork", "s", 0) == [(0, '"s at 2"', False)]
    # The fork runs live from start_step on: its stream continues after the copy.
    store.write_stream("fork", "s", '"fork at 5"', False, T0 + 105, make_step("fork", 5), 5)
    assert store.read_stream("fork", "s", 0) == [(0, '"s at 2"', False),
                                                 (1, '"fork at 5"', False)]

    # The source is untouched.
    assert store.get_workflow("src") == src_row
    assert store.load_steps("src") == src_steps
    assert store.get_all_events("src") == {"k1": '"k1 at 4"', "k2": '"k2 at 3"',
                                           "k3": '"k3 at 6"'}
    assert len(store.read_stream("src", "s", 0)) == 3

    # Forking from the first step copies nothing.
    store.fork_workflow("src", "fork-1", 1, make_workflow("fork-1", forked_from="src"))
    assert store.load_steps("fork-1") == {}
    assert store.get_all_events("fork-1") == {}
    assert store.read_stream("fork-1", "s", 0) == []


def test_fork_workflow_into_existing_id_writes_nothing(
    store, make_workflow, make_step, sql
):
    _fork_source(store, make_workflow, make_step)
    target = make_workflow("taken", name="other_fn")
    store.insert_workflow(target)
    target_step = make_step("taken", 1, output='"target"')
    store.record_step(target_step)
    history_before = history(sql, store, "taken")

    with pytest.raises(errors.WorkflowConflictError):
        store.fork_workflow("src", "taken", 5, replace(target, name="fn", forked_from="src"))
    assert store.get_workflow("taken") == target
    assert store.load_steps("taken") == {1: target_step}
    assert store.get_all_events("taken") == {}
    assert store.read_stream("taken", "s", 0) == []
    assert history(sql, store, "taken") == history_before
    assert event_history(sql, store, "taken", "k1") == []


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


# --- executors --------------------------------------------------------------------------


def executor(instance_id: str, **kw: Any) -> ExecutorRow:
    fields: dict[str, Any] = {
        "instance_id": instance_id, "executor_id": "exec-a", "application_version": "v1",
        "hostname": "host-1", "pid": 4242, "started_at": T0, "heartbeat_at": T0,
    }
    fields.update(kw)
    return ExecutorRow(**fields)


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
    assert history(sql, store, "wf") == [(PENDING, None)]

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

    assert history(sql, store, "wf") == [
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
    assert history(sql, store, "recent_success") == [(PENDING, None), (SUCCESS, None)]
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
