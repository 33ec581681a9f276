"""The queue part of the SystemStore contract (``save_queue``, ``get_queues``,
``dequeue``, ``requeue``, ``queue_depths``; ``enqueue`` is in
test_enqueue_contract.py): every guarantee of their docstrings in
``relos/store/base.py``, on SQLite and on PostgreSQL.

Times are a fixed clock (``T0`` plus offsets) passed to the store, so the
delay and rate-limit checks are exact and never wait.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from queue_rows import NAMES, T0, dequeue, finish, qrow, queued, status

from relos.store import open_store
from relos.store.base import (
    CANCELLED,
    CLAIMED_COLUMNS,
    DELAYED,
    ENQUEUED,
    PENDING,
    SUCCESS,
    QueueRow,
    SystemStore,
    WorkflowRow,
)

# --- save_queue / get_queues -----------------------------------------------------------------


def test_save_queue_inserts_and_returns_the_stored_row(store: SystemStore) -> None:
    saved = store.save_queue(qrow("a", concurrency=3, worker_concurrency=2, rate_limit=10,
                                  rate_period_ms=1500, priority_enabled=True, partitioned=True))
    assert saved == QueueRow("a", 3, 2, 10, 1500, True, True, "code", T0)
    assert isinstance(saved.priority_enabled, bool) and isinstance(saved.partitioned, bool)
    store.save_queue(qrow("b"))
    assert [q.name for q in store.get_queues()] == ["a", "b"]
    assert store.get_queues(["b"]) == [QueueRow("b", updated_at=T0)]
    assert store.get_queues([]) == []
    assert store.get_queues(["nope"]) == []


def test_code_row_updates_code_row(store: SystemStore) -> None:
    store.save_queue(qrow("a", concurrency=3))
    saved = store.save_queue(replace(qrow("a", concurrency=7), updated_at=T0 + 1))
    assert (saved.concurrency, saved.defined_by, saved.updated_at) == (7, "code", T0 + 1)


def test_runtime_row_wins_over_code(store: SystemStore) -> None:
    store.save_queue(qrow("a", concurrency=3))
    runtime = store.save_queue(replace(qrow("a", concurrency=9), defined_by="runtime"))
    assert (runtime.concurrency, runtime.defined_by) == (9, "runtime")
    # A launch of code that still says concurrency=3 must not undo the run-time change.
    kept = store.save_queue(replace(qrow("a", concurrency=3), updated_at=T0 + 5))
    assert kept == runtime
    assert store.get_queues(["a"]) == [runtime]
    # A later run-time change replaces the run-time row.
    again = store.save_queue(replace(qrow("a", concurrency=None, rate_limit=4,
                                          rate_period_ms=100), defined_by="runtime"))
    assert (again.concurrency, again.rate_limit, again.rate_period_ms) == (None, 4, 100)


def test_a_released_queue_takes_the_codes_limits_at_the_next_save(store: SystemStore) -> None:
    store.save_queue(qrow("a", concurrency=3))
    runtime = store.save_queue(replace(qrow("a", concurrency=9), defined_by="runtime"))
    assert store.release_queue("a", T0 + 7) is True
    # The limits stay until code saves its row; the row is the code's now.
    assert store.get_queues(["a"]) == [replace(runtime, defined_by="code", updated_at=T0 + 7)]
    code = store.save_queue(replace(qrow("a", concurrency=3), updated_at=T0 + 8))
    assert (code.concurrency, code.defined_by, code.updated_at) == (3, "code", T0 + 8)
    # Releasing a queue from code changes nothing; an unknown name is reported.
    assert store.release_queue("a", T0 + 9) is True
    assert store.get_queues(["a"]) == [code]
    assert store.release_queue("nope", T0) is False
    assert store.get_queues(["nope"]) == []


# --- dequeue ----------------------------------------------------------------------------------


def test_dequeue_claims_rows_and_makes_them_pending(store: SystemStore) -> None:
    store.enqueue([queued("w1", timeout_ms=5000), queued("w2", at=1)])
    rows = store.dequeue(qrow(), "owner-a", "exec-b", T0 + 100, 10, "v1", NAMES)
    assert [r.workflow_id for r in rows] == ["w1", "w2"]
    for r in rows:
        # Each claimed column as stored (the others are not read by a claim).
        stored = store.get_workflow(r.workflow_id)
        assert {c: getattr(r, c) for c in CLAIMED_COLUMNS} == {
            c: getattr(stored, c) for c in CLAIMED_COLUMNS}
        assert (r.status, r.owner, r.executor_id) == (PENDING, "owner-a", "exec-b")
        assert (r.started_at, r.updated_at, r.recovery_attempts) == (T0 + 100, T0 + 100, 1)
    # The deadline starts at the dequeue, not at the enqueue.
    assert rows[0].deadline_epoch_ms == T0 + 100 + 5000
    assert rows[1].deadline_epoch_ms is None
    assert dequeue(store, qrow(), now=T0 + 200) == []


def test_find_claimed_names_the_rows_of_one_dequeue(store: SystemStore) -> None:
    store.enqueue([queued(f"w{i}", at=i) for i in range(5)] + [queued("x", "other", at=1)])
    first = store.dequeue(qrow(), "owner-a", "exec-b", T0 + 100, 2, None, NAMES)
    second = store.dequeue(qrow(), "owner-a", "exec-b", T0 + 101, 2, None, NAMES)
    # Same stamp, another owner; same owner and stamp, another queue.
    store.dequeue(qrow(), "owner-z", "exec-b", T0 + 100, 1, None, NAMES)
    store.dequeue(qrow("other"), "owner-a", "exec-b", T0 + 100, 1, None, NAMES)

    def found(stamp: int, owner: str = "owner-a", queue: str = "q") -> list[str]:
        rows = store.find_claimed(owner, "exec-b", stamp, queue)
        assert all((r.status, r.owner, r.queue_name) == (PENDING, owner, queue) for r in rows)
        return [r.workflow_id for r in rows]

    assert found(T0 + 100) == [r.workflow_id for r in first] == ["w0", "w1"]
    assert found(T0 + 101) == [r.workflow_id for r in second] == ["w2", "w3"]
    assert found(T0 + 100, "owner-z") == ["w4"]
    assert found(T0 + 100, queue="other") == ["x"]
    assert found(T0 + 102) == []
    finish(store, "w0")  # (no longer PENDING: not left to start)
    assert found(T0 + 100) == ["w1"]
    assert store.find_claimed("owner-a", "exec-other", T0 + 100, "q") == []


def test_dequeue_respects_max_claim(store: SystemStore) -> None:
    store.enqueue([queued(f"w{i}", at=i) for i in range(5)])
    assert dequeue(store, qrow(), max_claim=0) == []
    assert dequeue(store, qrow(), max_claim=-1) == []
    assert dequeue(store, qrow(), max_claim=2) == ["w0", "w1"]
    assert dequeue(store, qrow(), max_claim=2) == ["w2", "w3"]
    assert dequeue(store, qrow(), max_claim=2) == ["w4"]


def test_dequeue_only_from_its_queue(store: SystemStore) -> None:
    store.enqueue([queued("a1", "a"), queued("b1", "b"), queued("plain", None)])
    assert dequeue(store, qrow("a")) == ["a1"]
    assert dequeue(store, qrow("b")) == ["b1"]
    assert status(store, "plain") == ENQUEUED


def test_dequeue_order_is_priority_then_created_then_id(store: SystemStore) -> None:
    store.enqueue([
        queued("p5", priority=5, at=0), queued("p1-late", priority=1, at=10),
        queued("p1-early", priority=1, at=5), queued("p0", priority=0, at=20),
        queued("p3", priority=3, at=1), queued("p1-b", priority=1, at=5),
    ])
    claimed = [dequeue(store, qrow(priority_enabled=True), max_claim=1)[0] for _ in range(6)]
    assert claimed == ["p0", "p1-b", "p1-early", "p1-late", "p3", "p5"]


def test_dequeue_in_created_order(store: SystemStore) -> None:
    store.enqueue([queued(f"w{i}", at=100 - i) for i in range(5)])
    assert dequeue(store, qrow(), max_claim=3) == ["w4", "w3", "w2"]


def test_dequeue_created_from_skips_older_workflows(store: SystemStore) -> None:
    store.save_queue(qrow())
    store.enqueue([queued("old", at=0), queued("edge", at=50), queued("new", at=100)])
    rows = store.dequeue(qrow(), "owner-a", "exec-a", T0 + 200, 10, "v1", NAMES,
                         created_from=T0 + 50)
    assert [r.workflow_id for r in rows] == ["edge", "new"]
    assert status(store, "old") == ENQUEUED  # left for a claim without the hint
    assert dequeue(store, qrow(), now=T0 + 200) == ["old"]


@pytest.mark.parametrize("limits", [{"priority_enabled": True}, {"concurrency": 5},
                                    {"rate_limit": 5, "rate_period_ms": 1000},
                                    {"partitioned": True}])
def test_dequeue_created_from_is_ignored_where_order_or_budget_needs_the_whole_queue(
        store: SystemStore, limits: dict[str, Any]) -> None:
    queue = qrow(**limits)
    store.save_queue(queue)
    store.enqueue([queued("old", at=0), queued("new", at=100)])
    rows = store.dequeue(queue, "owner-a", "exec-a", T0 + 200, 10, "v1", NAMES,
                         created_from=T0 + 50)
    assert [r.workflow_id for r in rows] == ["old", "new"]


def test_dequeue_global_concurrency_counts_pending_rows(store: SystemStore) -> None:
    store.enqueue([queued(f"w{i}", at=i) for i in range(6)])
    q = qrow(concurrency=2)
    assert dequeue(store, q) == ["w0", "w1"]
    assert dequeue(store, q) == []
    # The limit is global: another owner gets nothing either.
    assert dequeue(store, q, owner="owner-b") == []
    finish(store, "w0")
    assert dequeue(store, q, owner="owner-b") == ["w2"]
    assert dequeue(store, q) == []
    # A cancelled running workflow no longer counts.
    assert store.set_workflow_status("w1", CANCELLED, T0)
    assert dequeue(store, q, max_claim=5) == ["w3"]
    # Pending workflows of other queues do not count.
    store.enqueue([queued("x1", "other"), queued("x2", "other")])
    assert dequeue(store, qrow("other")) == ["x1", "x2"]
    assert dequeue(store, q) == []


def test_dequeue_rate_limit_counts_starts_in_the_period(store: SystemStore) -> None:
    store.enqueue([queued(f"w{i}", at=i) for i in range(7)])
    q = qrow(rate_limit=2, rate_period_ms=1000)
    assert dequeue(store, q, now=T0) == ["w0", "w1"]
    # Finished workflows still count: it limits starts, not running workflows.
    finish(store, "w0", "w1", now=T0 + 10)
    assert dequeue(store, q, now=T0 + 500) == []
    assert dequeue(store, q, now=T0 + 999) == []
    assert dequeue(store, q, now=T0 + 1000) == []  # started_at T0 is still in [now-1000, now]
    assert dequeue(store, q, now=T0 + 1001) == ["w2", "w3"]
    assert dequeue(store, q, now=T0 + 1600, max_claim=1) == []
    assert dequeue(store, q, now=T0 + 2002, max_claim=1) == ["w4"]
    assert dequeue(store, q, now=T0 + 2500) == ["w5"]  # w3 left the window; w4 still in it


def test_rate_limit_ledger_keeps_an_hour_or_the_period(
        store: SystemStore, sql: Callable[..., list[tuple[Any, ...]]]) -> None:
    """Each claim of a rate-limited queue writes one ledger row (how many it
    started, and when); a claim drops the queue's rows older than an hour, or
    than its period if that is longer. A queue without a limiter writes none."""
    store.enqueue([queued(f"w{i}", at=i) for i in range(6)])
    store.enqueue([queued("u0", "free", at=0)])
    q = qrow(rate_limit=2, rate_period_ms=1000)
    hour = 3_600_000
    assert dequeue(store, q, now=T0) == ["w0", "w1"]
    assert dequeue(store, qrow("free"), now=T0) == ["u0"]

    def ledger() -> list[tuple[Any, ...]]:
        return sql(store, "SELECT queue_name, started_at, started FROM {p}queue_starts "
                          "ORDER BY started_at")

    assert ledger() == [("q", T0, 2)]
    assert (store.rate_starts("q", T0), store.rate_starts("q", T0 + 1)) == (2, 0)
    assert store.rate_starts("free", T0) == 0
    assert dequeue(store, q, now=T0 + hour, max_claim=1) == ["w2"]
    assert ledger() == [("q", T0, 2), ("q", T0 + hour, 1)]  # (exactly an hour old: kept)
    assert dequeue(store, q, now=T0 + hour + 1, max_claim=1) == ["w3"]
    assert ledger() == [("q", T0 + hour, 1), ("q", T0 + hour + 1, 1)]
    # A period longer than an hour keeps its own length of rows.
    long = qrow(rate_limit=10, rate_period_ms=3 * hour)
    assert dequeue(store, long, now=T0 + 3 * hour, max_claim=1) == ["w4"]
    assert [r[1] for r in ledger()] == [T0 + hour, T0 + hour + 1, T0 + 3 * hour]


def test_dequeue_rate_limit_and_concurrency_together(store: SystemStore) -> None:
    store.enqueue([queued(f"w{i}", at=i) for i in range(6)])
    q = qrow(concurrency=1, rate_limit=3, rate_period_ms=1000)
    assert dequeue(store, q) == ["w0"]
    finish(store, "w0")
    assert dequeue(store, q) == ["w1"]
    finish(store, "w1")
    assert dequeue(store, q) == ["w2"]
    finish(store, "w2")
    assert dequeue(store, q, now=T0 + 10) == []  # concurrency allows it, the rate does not
    assert dequeue(store, q, now=T0 + 1001) == ["w3"]


def test_dequeue_delayed_not_before_its_time(store: SystemStore) -> None:
    store.enqueue([
        queued("late", status=DELAYED, delay_until_epoch_ms=T0 + 5000, at=0),
        queued("soon", status=DELAYED, delay_until_epoch_ms=T0 + 1000, at=1),
        queued("now", at=2),
    ])
    assert dequeue(store, qrow(), now=T0) == ["now"]
    assert dequeue(store, qrow(), now=T0 + 999) == []
    assert dequeue(store, qrow(), now=T0 + 1000) == ["soon"]
    assert dequeue(store, qrow(), now=T0 + 4999) == []
    rows = store.dequeue(qrow(), "owner-a", "exec-a", T0 + 5000, 10, "v1", NAMES)
    assert [(r.workflow_id, r.status, r.started_at) for r in rows] == [
        ("late", PENDING, T0 + 5000)]


def test_dequeue_application_version_is_null_or_equal(store: SystemStore) -> None:
    store.enqueue([queued("any", at=0), queued("v1", application_version="v1", at=1),
                   queued("v2", application_version="v2", at=2)])
    assert dequeue(store, qrow(), version="v1") == ["any", "v1"]
    assert dequeue(store, qrow(), version="v3") == []
    assert dequeue(store, qrow(), version="v2") == ["v2"]


def test_dequeue_without_a_version_takes_only_unversioned_rows(store: SystemStore) -> None:
    store.enqueue([queued("v1", application_version="v1"), queued("any", at=1)])
    assert dequeue(store, qrow(), version=None) == ["any"]


def test_dequeue_only_workflows_the_caller_can_run(store: SystemStore) -> None:
    store.enqueue([queued("a", name="queued_wf"), queued("b", name="other_wf", at=1),
                   queued("c", name="unknown_wf", at=2)])
    assert dequeue(store, qrow(), names=[]) == []
    assert dequeue(store, qrow(), names=["other_wf"]) == ["b"]
    assert dequeue(store, qrow(), names=["queued_wf", "other_wf"]) == ["a"]
    assert status(store, "c") == ENQUEUED


def test_dequeue_partitions_have_their_own_concurrency(store: SystemStore) -> None:
    store.enqueue([queued("a1", queue_partition_key="a", at=0),
                   queued("a2", queue_partition_key="a", at=1),
                   queued("b1", queue_partition_key="b", at=2),
                   queued("b2", queue_partition_key="b", at=3),
                   queued("c1", queue_partition_key="c", at=4)])
    q = qrow(concurrency=1, partitioned=True)
    assert sorted(dequeue(store, q)) == ["a1", "b1", "c1"]
    assert dequeue(store, q) == []
    finish(store, "a1")
    assert dequeue(store, q) == ["a2"]
    finish(store, "c1")
    assert dequeue(store, q) == []
    finish(store, "b1")
    assert dequeue(store, q) == ["b2"]


def test_dequeue_serves_partitions_in_priority_then_age_order(store: SystemStore) -> None:
    """A budget smaller than the number of partitions goes to the partition
    whose waiting work comes first, whatever the partitions are called."""
    store.enqueue([queued("a-new", queue_partition_key="a", at=30),
                   queued("z-old", queue_partition_key="z", at=10),
                   queued("m-mid", queue_partition_key="m", at=20),
                   queued("b-late", queue_partition_key="b", at=40),
                   queued("z-last", queue_partition_key="z", at=50)])
    q = qrow(partitioned=True)
    claimed = [dequeue(store, q, max_claim=1) for _ in range(6)]
    assert claimed == [["z-old"], ["m-mid"], ["a-new"], ["b-late"], ["z-last"], []]
    store.enqueue([queued(f"p{i}", "pq", queue_partition_key=k, at=i, priority=p)
                   for i, (k, p) in enumerate([("x", 5), ("y", 1), ("x", 0)])])
    pq = qrow("pq", partitioned=True, priority_enabled=True)
    claimed = [dequeue(store, pq, max_claim=1) for _ in range(3)]
    assert claimed == [["p2"], ["p1"], ["p0"]]


def test_dequeue_partitioned_respects_max_claim_and_rate_limit(store: SystemStore) -> None:
    store.enqueue([queued(f"{p}{i}", queue_partition_key=p, at=i)
                   for p in "ab" for i in range(3)])
    q = qrow(concurrency=2, partitioned=True)
    first = dequeue(store, q, max_claim=3)
    assert len(first) == 3
    assert len(dequeue(store, q)) == 1  # the partition that got one gets its second
    assert dequeue(store, q) == []
    store.enqueue([queued(f"r{i}", "rq", queue_partition_key=f"p{i}", at=i) for i in range(4)])
    rq = qrow("rq", partitioned=True, rate_limit=3, rate_period_ms=1000)
    assert len(dequeue(store, rq)) == 3  # the rate budget is shared by every partition
    assert dequeue(store, rq, now=T0 + 500) == []
    assert len(dequeue(store, rq, now=T0 + 1001)) == 1


def test_concurrent_dequeuers_never_share_a_workflow_or_exceed_concurrency(db_url: str, store: SystemStore) -> None:
    """8 threads, each with its own store (and so its own connections), dequeue,
    hold and finish 200 workflows of a queue with concurrency 5."""
    total, limit, threads = 200, 5, 8
    q = qrow(concurrency=limit)
    store.save_queue(q)
    assert store.enqueue([queued(f"w{i:03d}", at=i) for i in range(total)]) == [None] * total
    stores = [open_store(db_url) for _ in range(threads)]
    lock = threading.Lock()
    claims: list[tuple[int, str]] = []
    running = [0, 0]  # now, peak: the workflows claimed and not yet finished
    done = threading.Event()
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        s, rnd = stores[i], random.Random(i)
        try:
            barrier.wait(timeout=30)
            end = time.monotonic() + 60
            while not done.is_set():
                assert time.monotonic() < end, "the dequeuers did not finish in 60 s"
                rows = s.dequeue(q, f"owner-{i}", "exec-a", int(time.time() * 1000),
                                 rnd.randint(1, 4), "v1", NAMES)
                if not rows:
                    time.sleep(0.001)
                    continue
                with lock:
                    claims.extend((i, r.workflow_id) for r in rows)
                    running[0] += len(rows)
                    running[1] = max(running[1], running[0])
                time.sleep(rnd.random() * 0.004)
                for r in rows:
                    with lock:
                        running[0] -= 1
                    assert s.complete_workflow(r.workflow_id, SUCCESS, '"ok"', None,
                                               int(time.time() * 1000))
                with lock:
                    if len(claims) == total:
                        done.set()
        except BaseException as exc:
            failures.append(exc)
            done.set()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=90)
    for s in stores:
        s.close()
    assert not failures, failures
    per_workflow = Counter(wid for _, wid in claims)
    assert sorted(per_workflow) == [f"w{i:03d}" for i in range(total)]
    assert set(per_workflow.values()) == {1}, "a workflow was claimed twice"
    assert 1 <= running[1] <= limit, f"peak of {running[1]} running workflows"
    assert len({i for i, _ in claims}) > 1, "only one dequeuer ever won"
    assert store.queue_depths() == {}


def test_concurrent_dequeuers_without_limits_never_share_a_workflow(db_url: str, store: SystemStore) -> None:
    total, threads = 120, 8
    store.enqueue([queued(f"w{i:03d}", at=i) for i in range(total)])
    stores = [open_store(db_url) for _ in range(threads)]
    try:
        barrier = threading.Barrier(threads)

        def worker(i: int) -> list[str]:
            barrier.wait(timeout=30)
            got: list[str] = []
            while rows := stores[i].dequeue(qrow(), f"o{i}", "exec-a", T0, 3, "v1", NAMES):
                got.extend(r.workflow_id for r in rows)
            return got

        results: list[list[str]] = [[] for _ in range(threads)]
        pool = [threading.Thread(target=lambda i=i: results.__setitem__(i, worker(i)))
                for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    claimed = [w for got in results for w in got]
    assert sorted(claimed) == [f"w{i:03d}" for i in range(total)]
    for i, got in enumerate(results):
        for wid in got:
            row = store.get_workflow(wid)
            assert row is not None and row.owner == f"o{i}"


# --- requeue ----------------------------------------------------------------------------------


def test_requeue_is_a_compare_and_swap_on_the_owner(store: SystemStore) -> None:
    store.enqueue([queued("w1"), queued("w2", at=1)])
    assert dequeue(store, qrow(), max_claim=1, owner="owner-a") == ["w1"]
    assert not store.requeue("w1", "owner-b", T0 + 5)
    assert not store.requeue("w1", None, T0 + 5)
    assert status(store, "w1") == PENDING
    assert store.requeue("w1", "owner-a", T0 + 5)
    row = store.get_workflow("w1")
    assert row is not None
    assert (row.status, row.owner, row.updated_at, row.recovery_attempts) == (
        ENQUEUED, None, T0 + 5, 1)
    assert not store.requeue("w1", "owner-a", T0 + 6)  # no longer PENDING
    assert not store.requeue("w2", None, T0 + 6)  # ENQUEUED, never claimed
    # Back in its place in the queue (its creation time), counting the attempt.
    again = store.dequeue(qrow(), "owner-b", "exec-a", T0 + 7, 1, "v1", NAMES)
    assert [(r.workflow_id, r.owner, r.recovery_attempts) for r in again] == [
        ("w1", "owner-b", 2)]


def test_requeue_of_a_workflow_that_never_started_takes_its_attempt_back(
        store: SystemStore) -> None:
    store.enqueue([queued("w1")])
    assert dequeue(store, qrow(), owner="owner-a") == ["w1"]
    assert store.requeue("w1", "owner-a", T0 + 5, started=False)
    row = store.get_workflow("w1")
    assert row is not None and (row.status, row.owner, row.recovery_attempts) == (
        ENQUEUED, None, 0)
    # Claimed again it is a first attempt: nothing recorded to load.
    again = store.dequeue(qrow(), "owner-b", "exec-a", T0 + 7, 1, "v1", NAMES)
    assert [(r.workflow_id, r.recovery_attempts) for r in again] == [("w1", 1)]
    # One that had run keeps the attempt it used when given back unstarted later.
    assert store.requeue("w1", "owner-b", T0 + 8)  # as recovery does: it ran
    assert dequeue(store, qrow(), owner="owner-c") == ["w1"]  # attempts 2
    assert store.requeue("w1", "owner-c", T0 + 9, started=False)
    assert store.get_workflow("w1").recovery_attempts == 1


def test_requeue_of_a_workflow_that_never_started_takes_back_the_version_its_claim_gave(
        store: SystemStore) -> None:
    """A claim gives an unversioned workflow the claimer's version (once it
    runs, only that version's code may replay it). Given back unstarted (its
    executor stopping, say for a deploy), it is unversioned again, for the
    latest version to take; a version given at enqueue, or one it ran under
    before, stays."""
    store.enqueue([queued("w1"), queued("w2", at=1, application_version="v1")])
    assert dequeue(store, qrow(), owner="owner-a", version="v1") == ["w1", "w2"]
    assert [store.get_workflow(w).application_version for w in ("w1", "w2")] == ["v1", "v1"]
    for wid in ("w1", "w2"):
        assert store.requeue(wid, "owner-a", T0 + 5, started=False)
    assert [store.get_workflow(w).application_version for w in ("w1", "w2")] == [None, "v1"]
    # The next version's executor takes the unversioned one only.
    assert dequeue(store, qrow(), owner="owner-b", version="v2") == ["w1"]
    assert store.requeue("w1", "owner-b", T0 + 6)  # as recovery does: it ran (under v2)
    assert dequeue(store, qrow(), owner="owner-c", version="v2") == ["w1"]
    assert store.requeue("w1", "owner-c", T0 + 7, started=False)
    assert store.get_workflow("w1").application_version == "v2"


def test_requeue_of_a_resumed_workflow(store: SystemStore) -> None:
    """resume_workflow leaves a queued workflow PENDING with no owner and no
    recovery attempts; requeued, it is dequeued as one that ran before (its
    attempts above 1), so the runtime loads its recorded steps."""
    store.enqueue([queued("w1")])
    dequeue(store, qrow(), owner="owner-a")
    assert store.set_workflow_status("w1", CANCELLED, T0)
    assert store.resume_workflow("w1", T0)
    row = store.get_workflow("w1")
    assert row is not None and (row.status, row.owner, row.recovery_attempts) == (
        PENDING, None, 0)
    assert store.requeue("w1", None, T0 + 1)
    row = store.get_workflow("w1")
    assert row is not None and (row.status, row.recovery_attempts) == (ENQUEUED, 1)
    again = store.dequeue(qrow(), "owner-b", "exec-a", T0 + 2, 1, "v1", NAMES)
    assert [(r.workflow_id, r.recovery_attempts) for r in again] == [("w1", 2)]


def test_requeue_leaves_finished_and_unqueued_workflows_alone(store: SystemStore, make_workflow: Callable[..., WorkflowRow]) -> None:
    store.insert_workflow(make_workflow("plain", owner="owner-a"))
    assert not store.requeue("plain", "owner-a", T0)
    assert status(store, "plain") == PENDING
    store.enqueue([queued("w1")])
    dequeue(store, qrow())
    finish(store, "w1")
    assert not store.requeue("w1", "owner-a", T0)
    assert status(store, "w1") == SUCCESS
    assert not store.requeue("missing", None, T0)


def test_concurrent_requeues_have_one_winner(store: SystemStore, concurrently: Callable[[int, Callable[[int], Any]], list[Any]]) -> None:
    store.enqueue([queued("w1")])
    dequeue(store, qrow(), owner="owner-a")
    wins = concurrently(8, lambda i: store.requeue("w1", "owner-a", T0 + i))
    assert sum(wins) == 1


# --- queue_depths -----------------------------------------------------------------------------


def test_queue_depths_counts_unfinished_workflows_per_status(store: SystemStore, make_workflow: Callable[..., WorkflowRow]) -> None:
    assert store.queue_depths() == {}
    store.insert_workflow(make_workflow("not-queued"))
    store.enqueue([queued(f"a{i}", "a", at=i) for i in range(5)]
                  + [queued("d1", "a", status=DELAYED, delay_until_epoch_ms=T0 + 9999),
                     queued("b1", "b")])
    dequeue(store, qrow("a"), max_claim=3)
    finish(store, "a0")
    assert store.set_workflow_status("a3", CANCELLED, T0)
    assert store.queue_depths() == {
        "a": {ENQUEUED: 1, DELAYED: 1, PENDING: 2},
        "b": {ENQUEUED: 1, DELAYED: 0, PENDING: 0},
    }


# --- queue_waiting_since ----------------------------------------------------------------------


def test_queue_waiting_since_is_when_the_longest_waiting_ready_workflow_became_ready(
        store: SystemStore) -> None:
    assert store.queue_waiting_since(T0) == {}
    store.enqueue([queued("a1", "a", at=100), queued("a2", "a", at=50),
                   queued("a-delayed", "a", status=DELAYED, delay_until_epoch_ms=T0 + 20),
                   queued("b-delayed", "b", status=DELAYED, delay_until_epoch_ms=T0 + 500),
                   queued("c1", "c", at=7)])
    # a: its DELAYED workflow became ready (T0 + 20) before the others were
    # enqueued; b: its only workflow's delay has not ended.
    assert store.queue_waiting_since(T0 + 200) == {"a": T0 + 20, "c": T0 + 7}
    assert store.queue_waiting_since(T0 + 600) == {"a": T0 + 20, "b": T0 + 500, "c": T0 + 7}
    # Claimed or finished workflows wait no more; one put back waits from then.
    assert dequeue(store, qrow("c"), now=T0 + 300) == ["c1"]
    assert "c" not in store.queue_waiting_since(T0 + 600)
    assert store.requeue("c1", "owner-a", T0 + 400)
    assert store.queue_waiting_since(T0 + 600)["c"] == T0 + 400
    assert store.set_workflow_status("a-delayed", CANCELLED, T0 + 300)
    assert store.queue_waiting_since(T0 + 600)["a"] == T0 + 50


# --- next_delay_end ---------------------------------------------------------------------------


def test_next_delay_end_is_the_earliest_delay_end_after_a_time_in_the_named_queues(
        store: SystemStore) -> None:
    assert store.next_delay_end(["a"], T0) is None
    store.enqueue([queued("a-late", "a", status=DELAYED, delay_until_epoch_ms=T0 + 9000),
                   queued("a-soon", "a", status=DELAYED, delay_until_epoch_ms=T0 + 3000, at=1),
                   queued("a-past", "a", status=DELAYED, delay_until_epoch_ms=T0 + 500, at=2),
                   queued("a-now", "a", at=3),
                   queued("b-sooner", "b", status=DELAYED, delay_until_epoch_ms=T0 + 2000)])
    assert store.next_delay_end(["a"], T0 + 1000) == T0 + 3000
    assert store.next_delay_end(["a", "b"], T0 + 1000) == T0 + 2000
    assert store.next_delay_end(["a"], T0 + 3000) == T0 + 9000  # (strictly after)
    assert store.next_delay_end(["a"], T0 + 9000) is None
    assert store.next_delay_end(["c"], T0) is None
    assert store.next_delay_end([], T0) is None
    dequeue(store, qrow("a"), now=T0 + 3000)  # a-past, a-soon and a-now start
    assert store.next_delay_end(["a"], T0) == T0 + 9000


def test_next_delay_end_reads_only_delayed_rows_behind_a_backlog_without_statistics(
        store: SystemStore, backend: str) -> None:
    """An executor reads the next delay end whenever it hears an enqueue it
    finds nothing to claim in: with a deep queue in a table never analysed
    (filled since the last ANALYZE), PostgreSQL's planner must still take the
    DELAYED rows' index, not walk every ENQUEUED row of the queue."""
    if backend != "postgres":
        pytest.skip("a PostgreSQL planner's choice")
    from relos.store import queue_sql

    conn = store.raw_connection()  # type: ignore[attr-defined]
    try:
        conn.execute(f"ALTER TABLE {store.prefix}workflow_status "  # type: ignore[attr-defined]
                     "SET (autovacuum_enabled = false)")  # (no ANALYZE meanwhile)
        for start in range(0, 20_000, 1000):
            store.enqueue([queued(f"w{i}", "deep", at=i) for i in range(start, start + 1000)])
        store.enqueue([queued("later", "deep", status=DELAYED,
                              delay_until_epoch_ms=T0 + 60_000)])
        sql, params = queue_sql.next_delay_end_query(store, ["deep"], T0)  # type: ignore[arg-type]
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()[0][0]
    finally:
        conn.close()

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node] + [n for child in node.get("Plans", []) for n in nodes(child)]

    scans = nodes(plan["Plan"])
    assert {n["Index Name"] for n in scans if "Index Name" in n} == {
        "workflow_status_delayed_idx"}, scans
    assert not [n for n in scans if n["Node Type"] == "Seq Scan"], scans
    assert store.next_delay_end(["deep"], T0) == T0 + 60_000
