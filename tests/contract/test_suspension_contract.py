"""The suspended-workflow part of the SystemStore contract (``suspend_workflow``,
``claim_due_workflows``, ``next_wake_time``, and the wake-ups done by ``send``
and ``set_event``): every guarantee of their docstrings in
``relos/store/base.py``, on SQLite and on PostgreSQL. Times are a fixed clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from relos import errors
from relos.store.base import CANCELLED, PENDING, QueueRow, SystemStore, WorkflowRow

T0 = 1_700_000_000_000
NAMES = ["example_workflow"]


def suspended(store: SystemStore, make_workflow: Callable[..., WorkflowRow], workflow_id: str,
              wake_at: int, **kwargs: Any) -> None:
    """Insert a workflow owned by ``o1`` and suspend it until ``wake_at``."""
    row_fields = {k: kwargs.pop(k) for k in ("application_version", "name") if k in kwargs}
    store.insert_workflow(make_workflow(workflow_id, owner="o1", **row_fields))
    assert store.suspend_workflow(workflow_id, "o1", wake_at, T0, **kwargs) == wake_at


def test_suspend_clears_the_owner_and_records_when_and_why(store, make_workflow):
    store.insert_workflow(make_workflow("w", owner="o1"))
    assert store.suspend_workflow("w", "o1", T0 + 5000, T0 + 1, topic="t") == T0 + 5000
    row = store.get_workflow("w")
    assert row is not None
    assert (row.status, row.owner, row.wake_at_epoch_ms) == (PENDING, None, T0 + 5000)
    assert row.waiting_for is not None and "t" in row.waiting_for
    # A plain sleep waits for nothing but its time.
    store.insert_workflow(make_workflow("s", owner="o1"))
    assert store.suspend_workflow("s", "o1", T0 + 7000, T0) == T0 + 7000
    row = store.get_workflow("s")
    assert row is not None and row.waiting_for is None


def test_suspend_needs_the_owner_and_a_pending_workflow(store, make_workflow):
    store.insert_workflow(make_workflow("w", owner="o1"))
    assert store.suspend_workflow("w", "someone-else", T0 + 5000, T0) is None
    store.insert_workflow(make_workflow("c", owner="o1", status=CANCELLED))
    assert store.suspend_workflow("c", "o1", T0 + 5000, T0) is None
    for wid, owner in (("w", "o1"), ("c", "o1")):
        row = store.get_workflow(wid)
        assert row is not None and row.owner == owner and row.wake_at_epoch_ms is None


def test_suspend_wakes_at_once_when_the_message_or_event_is_already_there(
        store, make_workflow):
    store.insert_workflow(make_workflow("r", owner="o1"))
    store.send("r", "t", '"hi"', "m1", None, T0, None)
    assert store.suspend_workflow("r", "o1", T0 + 60_000, T0 + 10, topic="t") == T0 + 10
    store.insert_workflow(make_workflow("pub"))
    store.set_event("pub", "k", '"v"', T0, None)
    store.insert_workflow(make_workflow("g", owner="o1"))
    assert store.suspend_workflow("g", "o1", T0 + 60_000, T0 + 20,
                                  event=("pub", "k")) == T0 + 20
    # A message on another topic, or another key, does not count.
    store.insert_workflow(make_workflow("r2", owner="o1"))
    store.send("r2", "other", '"x"', "m2", None, T0, None)
    assert store.suspend_workflow("r2", "o1", T0 + 60_000, T0, topic="t") == T0 + 60_000
    store.insert_workflow(make_workflow("g2", owner="o1"))
    assert store.suspend_workflow("g2", "o1", T0 + 60_000, T0,
                                  event=("pub", "other")) == T0 + 60_000


def test_send_wakes_a_receiver_suspended_on_that_topic_only(store, make_workflow):
    suspended(store, make_workflow, "r", T0 + 60_000, topic="t")
    assert store.send("r", "other", '"x"', "m1", None, T0 + 5, None) is False
    assert store.get_workflow("r").wake_at_epoch_ms == T0 + 60_000  # type: ignore[union-attr]
    assert store.send("r", "t", '"y"', "m2", None, T0 + 6, None) is True
    assert store.get_workflow("r").wake_at_epoch_ms == T0 + 6  # type: ignore[union-attr]
    # Sleeping (waiting for no message) or not suspended: nothing to wake.
    suspended(store, make_workflow, "s", T0 + 60_000)
    assert store.send("s", "t", '"z"', "m3", None, T0, None) is False
    store.insert_workflow(make_workflow("running", owner="o1"))
    assert store.send("running", "t", '"z"', "m4", None, T0, None) is False


def test_set_event_wakes_every_workflow_suspended_on_that_event(store, make_workflow):
    store.insert_workflow(make_workflow("pub"))
    for wid in ("a", "b"):
        suspended(store, make_workflow, wid, T0 + 60_000, event=("pub", "k"))
    suspended(store, make_workflow, "other-key", T0 + 60_000, event=("pub", "j"))
    suspended(store, make_workflow, "other-wf", T0 + 60_000, event=("a", "k"))
    assert store.set_event("pub", "k", '"v"', T0 + 3, None) is True
    wakes = {wid: store.get_workflow(wid).wake_at_epoch_ms  # type: ignore[union-attr]
             for wid in ("a", "b", "other-key", "other-wf")}
    assert wakes == {"a": T0 + 3, "b": T0 + 3, "other-key": T0 + 60_000,
                     "other-wf": T0 + 60_000}
    assert store.set_event("pub", "unwatched", '"v"', T0 + 4, None) is False


def test_claim_due_takes_only_due_workflows_earliest_first(store, make_workflow):
    for i, wake in enumerate([T0 + 300, T0 + 100, T0 + 200, T0 + 900]):
        suspended(store, make_workflow, f"w{i}", wake)
    assert store.next_wake_time(None, NAMES) == T0 + 100
    claimed = store.claim_due_workflows("o2", "exec-b", T0 + 500, 2, None, NAMES)
    assert sorted(r.workflow_id for r in claimed) == ["w1", "w2"]
    for r in claimed:
        assert (r.owner, r.executor_id, r.wake_at_epoch_ms, r.waiting_for) == (
            "o2", "exec-b", None, None)
        assert r.recovery_attempts == 1  # a suspension is not a crash
    assert [r.workflow_id for r in
            store.claim_due_workflows("o2", "exec-b", T0 + 500, 10, None, NAMES)] == ["w0"]
    assert store.claim_due_workflows("o2", "exec-b", T0 + 500, 10, None, NAMES) == []
    assert store.next_wake_time(None, NAMES) == T0 + 900


def test_claim_due_respects_version_names_and_cancellation(store, make_workflow):
    suspended(store, make_workflow, "v1", T0, application_version="v1")
    suspended(store, make_workflow, "v2", T0, application_version="v2")
    suspended(store, make_workflow, "none", T0)
    suspended(store, make_workflow, "unknown-fn", T0, name="not_here")
    suspended(store, make_workflow, "cancelled", T0)
    store.set_workflow_status("cancelled", CANCELLED, T0)
    assert store.next_wake_time("v1", NAMES) == T0
    claimed = store.claim_due_workflows("o2", "e", T0 + 1, 100, "v1", NAMES)
    assert sorted(r.workflow_id for r in claimed) == ["none", "v1"]
    assert store.next_wake_time("v1", NAMES) is None
    assert store.claim_due_workflows("o2", "e", T0 + 1, 100, "v1", ["not_here"])[0] \
        .workflow_id == "unknown-fn"
    assert store.get_workflow("cancelled").status == CANCELLED  # type: ignore[union-attr]
    assert store.claim_due_workflows("o2", "e", T0 + 1, 100, None, NAMES) == []


def test_recovery_never_takes_a_suspended_workflow(store, make_workflow):
    suspended(store, make_workflow, "s", T0)
    store.insert_workflow(make_workflow("orphan", owner="dead"))
    assert [r[0] for r in store.find_recoverable(["exec-a"])] == ["orphan"]
    assert store.claim_workflow("s", None, "o2", "exec-a", T0) is None
    row = store.get_workflow("s")
    assert row is not None and row.owner is None and row.wake_at_epoch_ms == T0


def test_concurrent_claims_take_each_due_workflow_once(store, make_workflow, concurrently):
    for i in range(60):
        suspended(store, make_workflow, f"w{i:02d}", T0 + i)

    def claim(n: int) -> list[str]:
        got: list[str] = []
        while True:
            rows = store.claim_due_workflows(f"owner-{n}", "e", T0 + 100, 7, None, NAMES)
            if not rows:
                return got
            got.extend(r.workflow_id for r in rows)

    results = concurrently(4, claim)
    counts = Counter(w for got in results for w in got)
    assert sorted(counts) == [f"w{i:02d}" for i in range(60)]
    assert set(counts.values()) == {1}


def test_suspend_records_the_wait_s_step_in_the_same_transaction(store, make_workflow,
                                                                   make_step):
    store.insert_workflow(make_workflow("w", owner="o1"))
    step = make_step("w", 0, function_name="DBOS.sleep", output=str(T0 + 9000))
    assert store.suspend_workflow("w", "o1", T0 + 9000, T0, step=step) == T0 + 9000
    assert store.load_steps("w")[0].output == str(T0 + 9000)
    # Refused (the workflow is cancelled): neither the step nor the suspension.
    store.insert_workflow(make_workflow("c", owner="o1", status=CANCELLED))
    with pytest.raises(errors.WorkflowCancelledError):
        store.suspend_workflow("c", "o1", T0 + 9000, T0, step=make_step("c", 0))
    assert store.load_steps("c") == {}
    row = store.get_workflow("c")
    assert row is not None and row.wake_at_epoch_ms is None and row.owner == "o1"


def test_find_claimed_names_the_workflows_one_wake_up_claimed(store, make_workflow):
    for i, wake in enumerate([T0 + 100, T0 + 200, T0 + 900]):
        suspended(store, make_workflow, f"w{i}", wake)
    woken = store.claim_due_workflows("o2", "exec-b", T0 + 500, 10, None, NAMES)
    assert sorted(r.workflow_id for r in woken) == ["w0", "w1"]
    # A workflow started here at the same moment, or dequeued then, is not
    # one the wake-up took.
    store.insert_workflow(make_workflow("fresh", owner="o2", executor_id="exec-b",
                                        created_at=T0 + 500))
    store.enqueue([make_workflow("queued", status="ENQUEUED", queue_name="q",
                                 created_at=T0 + 1)])
    assert [r.workflow_id for r in store.dequeue(
        QueueRow("q", updated_at=T0), "o2", "exec-b", T0 + 500, 1, None, NAMES)] == ["queued"]

    def found(stamp: int, owner: str = "o2") -> list[str]:
        return sorted(r.workflow_id for r in store.find_claimed(owner, "exec-b", stamp, None))

    assert found(T0 + 500) == ["w0", "w1"]
    assert found(T0 + 501) == [] and found(T0 + 500, "o3") == []
    assert store.suspend_workflow("w0", "o2", T0 + 2_000, T0 + 600) == T0 + 2_000
    assert found(T0 + 500) == ["w1"]  # (suspended again: not the wake-up's now)
