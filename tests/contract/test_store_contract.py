"""The SystemStore contract: every guarantee stated by a docstring in
``relos/store/base.py``, checked on SQLite and on PostgreSQL: writing and
reading workflows and steps (messages, events and streams:
test_comm_contract.py; listing, recovery scans, executors, history, garbage
collection and connection settings: test_store_admin_contract.py).

Tests use only the public interface, except where a guarantee is about tables
the interface does not read back (history tables, the raw message queue); those
are inspected with plain SQL through the ``sql`` / ``rows_in`` fixtures.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import pytest

from dbhelpers import event_history, status_history
from relos import errors
from relos.store.base import (
    CANCELLED,
    ENQUEUED,
    ERROR,
    ISOLATION_LEVELS,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    PENDING,
    SUCCESS,
    StepRow,
    WorkflowRow,
)

T0 = 1_700_000_000_000
NOT_PENDING = [SUCCESS, ERROR, CANCELLED, ENQUEUED, MAX_RECOVERY_ATTEMPTS_EXCEEDED]


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


# --- claim_workflows, requeue_many, load_steps_many (a take-over, in batches) -----------


def test_claim_workflows_takes_only_the_owners_runnable_workflows(store, make_workflow):
    rows = [
        make_workflow("a", owner="dead", recovery_attempts=1),
        make_workflow("b", owner="dead", recovery_attempts=3),
        make_workflow("alive", owner="other"),  # another owner's
        make_workflow("done", owner="dead", status=SUCCESS),
        make_workflow("queued", owner="dead", queue_name="q"),  # goes back to its queue
        make_workflow("unknown", owner="dead", name="not_defined_here"),
    ]
    for row in rows:
        store.insert_workflow(row)
    ids = [r.workflow_id for r in rows] + ["missing"]
    claimed = store.claim_workflows(ids, "dead", "me", "exec-b", T0 + 10, ["example_workflow"])
    assert sorted(r.workflow_id for r in claimed) == ["a", "b"]
    for row in claimed:
        assert (row.owner, row.executor_id, row.updated_at) == ("me", "exec-b", T0 + 10)
        assert store.get_workflow(row.workflow_id) == row
    assert {r.workflow_id: r.recovery_attempts for r in claimed} == {"a": 2, "b": 4}
    for row in rows[2:]:
        assert store.get_workflow(row.workflow_id) == row
    # The compare-and-swap names the owner: a second claim of the same finds none.
    assert store.claim_workflows(ids, "dead", "me-too", "exec-c", T0 + 20,
                                 ["example_workflow"]) == []
    assert store.claim_workflows([], "dead", "me", "exec-b", T0, ["example_workflow"]) == []


def test_claim_workflows_leaves_suspended_workflows_to_their_wake_up(store, make_workflow):
    store.insert_workflow(make_workflow("s", owner="dead"))
    assert store.suspend_workflow("s", "dead", T0 + 5000, T0) == T0 + 5000
    assert store.claim_workflows(["s"], None, "me", "e", T0, ["example_workflow"]) == []
    assert store.requeue_many(["s"], None, T0) == []
    assert store.get_workflow("s").wake_at_epoch_ms == T0 + 5000


def test_concurrent_batch_claims_take_each_workflow_once(store, make_workflow, concurrently):
    ids = [f"w{i:03d}" for i in range(120)]
    for wid in ids:
        store.insert_workflow(make_workflow(wid, owner="dead"))

    def claim(n: int) -> list[str]:
        mine = ids[n * 10:] + ids[:n * 10]  # (each starts elsewhere in the list)
        return [r.workflow_id for r in store.claim_workflows(
            mine, "dead", f"inst-{n}", "e", T0 + 1, ["example_workflow"])]

    results = concurrently(4, claim)
    assert sorted(w for got in results for w in got) == ids
    for n, got in enumerate(results):
        assert all(store.get_workflow(w).owner == f"inst-{n}" for w in got)


def test_requeue_many_sends_the_owners_queued_workflows_back(store, make_workflow):
    store.insert_workflow(make_workflow("q1", owner="dead", queue_name="q", recovery_attempts=1))
    store.insert_workflow(make_workflow("q2", owner="dead", queue_name="r", recovery_attempts=0))
    store.insert_workflow(make_workflow("direct", owner="dead"))
    store.insert_workflow(make_workflow("theirs", owner="other", queue_name="q"))
    got = store.requeue_many(["q1", "q2", "direct", "theirs"], "dead", T0 + 5)
    assert sorted(got) == [("q1", "q"), ("q2", "r")]
    for wid in ("q1", "q2"):
        row = store.get_workflow(wid)
        assert (row.status, row.owner, row.updated_at) == (ENQUEUED, None, T0 + 5)
        # (at least 1: the next dequeue loads what the workflow recorded)
        assert row.recovery_attempts == 1
    assert store.get_workflow("direct").status == PENDING
    assert store.get_workflow("theirs").owner == "other"
    assert store.requeue_many(["q1"], "dead", T0 + 6) == []
    assert store.requeue_many([], "dead", T0) == []


def test_load_steps_many_reads_each_workflows_steps(store, make_workflow, make_step):
    for wid in ("a", "b", "none"):
        store.insert_workflow(make_workflow(wid))
    steps = {("a", 1): make_step("a", 1), ("a", 2): make_step("a", 2),
             ("b", 1): make_step("b", 1, output='"b"')}
    for step in steps.values():
        store.record_step(step)
    assert store.load_steps_many(["a", "b", "none", "missing"]) == {
        "a": {1: steps["a", 1], 2: steps["a", 2]}, "b": {1: steps["b", 1]}}
    assert store.load_steps_many([]) == {}


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
    history_before = status_history(sql, store, "taken")

    with pytest.raises(errors.WorkflowConflictError):
        store.fork_workflow("src", "taken", 5, replace(target, name="fn", forked_from="src"))
    assert store.get_workflow("taken") == target
    assert store.load_steps("taken") == {1: target_step}
    assert store.get_all_events("taken") == {}
    assert store.read_stream("taken", "s", 0) == []
    assert status_history(sql, store, "taken") == history_before
    assert event_history(sql, store, "taken", "k1") == []
