"""Queues through the public API, on SQLite and PostgreSQL: validation,
limits (concurrency, worker concurrency, rate, priorities, partitions),
fairness, deduplication and delays. (Enqueueing from workflows, run-time
changes, listening, cancellation, timeouts, async and cross-process wake-ups
are in ``test_queue_usage.py``; the shared queues and workflows in
``queue_workflows.py``.)

Waits poll with deadlines; the only fixed sleeps are where a test must show
that something does *not* happen within a time, or needs a workflow to run
for a known time.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from queue_workflows import (
    DEADLINE,
    basic_queue,
    calls,
    conc_queue,
    dedup_queue,
    fair_a,
    fair_b,
    fair_block,
    gates,
    launched,
    new_gate,
    new_tag,
    overlap,
    part_queue,
    peak,
    prio_queue,
    rate_queue,
    results,
    running,
    started,
    started_keys,
    status_of,
    tq_add,
    tq_async_wf,
    tq_child,
    tq_gated,
    tq_notify_step,
    tq_timed,
    wait_until,
    worker_queue,
    workflows_named,
)

import relos.dbos
from relos import (
    DBOS,
    DELAYED,
    ENQUEUED,
    PENDING,
    SUCCESS,
    ConfigError,
    Queue,
    QueueDeduplicatedError,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowConflictError,
    WorkflowHandle,
    queues,
)
from relos.queues import queue_row
from relos.store import SystemStore

#: The poll interval of tests that check a wake-up happens: long enough that a
#: missed one fails them, whatever stalls a shared host has (they bound their
#: time by half of it; the work takes a fraction of a second).
SLOW_POLL = 20.0

# --- validation ------------------------------------------------------------------------

BAD_QUEUES = [
    ({"concurrency": 0}, r"concurrency must be a whole number >= 1 .*not 0"),
    ({"concurrency": 2**31}, r"concurrency must be a whole number >= 1 .*at most 2147483647"),
    ({"worker_concurrency": 2**40}, r"worker_concurrency must be a whole number >= 1"),
    ({"limiter": {"limit": 2**31, "period": 1}}, r"limiter\['limit'\] must be a whole number"),
    ({"concurrency": -2}, r"concurrency must be a whole number >= 1"),
    ({"concurrency": 2.5}, r"concurrency must be a whole number >= 1"),
    ({"concurrency": "3"}, r"concurrency must be a whole number >= 1 .*not '3'"),
    ({"concurrency": True}, r"concurrency must be a whole number >= 1"),
    ({"worker_concurrency": 0}, r"worker_concurrency must be a whole number >= 1"),
    ({"concurrency": 2, "worker_concurrency": 3},
     r"worker_concurrency \(3\) cannot exceed concurrency \(2\)"),
    ({"limiter": {"limit": 3}}, r"limiter must be a dict with exactly the keys 'limit' and"),
    ({"limiter": {"limit": 3, "period": 1, "burst": 9}}, r"limiter must be a dict"),
    ({"limiter": [3, 1]}, r"limiter must be a dict"),
    ({"limiter": {"limit": 0, "period": 1}}, r"limiter\['limit'\] must be a whole number"),
    ({"limiter": {"limit": 1.5, "period": 1}}, r"limiter\['limit'\] must be a whole number"),
    ({"limiter": {"limit": 3, "period": 0}}, r"limiter\['period'\] must be a positive number"),
    ({"limiter": {"limit": 3, "period": -1.5}}, r"limiter\['period'\] must be a positive"),
    ({"limiter": {"limit": 3, "period": "1"}}, r"limiter\['period'\] must be a positive"),
    ({"limiter": {"limit": 3, "period": float("nan")}}, r"limiter\['period'\] must be a"),
    ({"limiter": {"limit": 3, "period": float("inf")}}, r"limiter\['period'\] must be a"),
]


@pytest.mark.parametrize(("settings", "message"), BAD_QUEUES)
def test_bad_queue_settings_are_config_errors_and_nothing_is_stored(
        dbos: Any, raw_store: SystemStore, settings: dict[str, Any], message: str) -> None:
    name = "tq_invalid"
    with pytest.raises(ConfigError, match=f"queue '{name}': {message}"):
        Queue(name, **settings)
    with pytest.raises(ConfigError, match=f"queue '{name}': {message}"):
        DBOS.register_queue(name, **settings)
    assert queues.get(name) is None
    assert raw_store.get_queues([name]) == []


def test_a_limiter_period_is_never_rounded_down_to_no_limit() -> None:
    assert queue_row("tq_x", limiter={"limit": 1, "period": 0.0004}).rate_period_ms == 1
    assert queue_row("tq_x", limiter={"limit": 1, "period": 0.0015}).rate_period_ms == 2
    assert queue_row("tq_x", limiter={"limit": 1, "period": 30}).rate_period_ms == 30_000
    assert queue_row("tq_x", limiter={"limit": 1, "period": 1.1}).rate_period_ms == 1100
    assert queue_row("tq_x", limiter={"limit": 2**31 - 1, "period": 1e9}).rate_limit == 2**31 - 1
    assert queues.get("tq_x") is None


def test_a_queue_needs_a_name(dbos: Any) -> None:
    for name in ("", "   ", None, 7):
        with pytest.raises(ConfigError, match="a queue needs a non-empty string name"):
            Queue(name)  # type: ignore[arg-type]


def test_a_queue_defined_twice_with_other_settings_is_refused(dbos: Any) -> None:
    """Two definitions of one queue name with different limits (two modules,
    say) would leave the limits to import order: the second is refused and
    the first keeps its settings. The same
    definition again (a module imported twice) is accepted; a queue that only
    DBOS.register_queue made may still be declared in code."""
    first = Queue("tq_twice", concurrency=2, limiter={"limit": 5, "period": 0.5})
    assert Queue("tq_twice", concurrency=2, limiter={"limit": 5, "period": 0.5}).row == first.row
    with pytest.raises(ConfigError, match=(
            r"queue 'tq_twice' is already defined with other settings \(concurrency=2, "
            r"limiter=\{'limit': 5, 'period': 0.5\}; now concurrency=3\): .*"
            r"DBOS.register_queue\('tq_twice', ...\)")):
        Queue("tq_twice", concurrency=3)
    assert queues.get("tq_twice").concurrency == 2  # type: ignore[union-attr]
    DBOS.register_queue("tq_runtime_only", concurrency=4)
    declared = Queue("tq_runtime_only", worker_concurrency=1)
    assert queues.get("tq_runtime_only") is declared
    with pytest.raises(ConfigError, match="'tq_runtime_only' is already defined"):
        Queue("tq_runtime_only")


BAD_OPTIONS = [
    ({"delay_seconds": -1}, r"delay_seconds must be a number of seconds >= 0 .*, not -1"),
    ({"delay_seconds": 1e10}, r"delay_seconds must be a number of seconds >= 0 \(at most"),
    ({"delay_seconds": float("nan")}, r"delay_seconds must be a number of seconds >= 0"),
    ({"delay_seconds": float("inf")}, r"delay_seconds must be a"),
    ({"delay_seconds": "5"}, r"delay_seconds must be a number of seconds >= 0"),
    ({"priority": -1}, r"priority must be a whole number from 0 \(first\) to 2147483647"),
    ({"priority": 2**31}, r"priority must be a whole number"),
    ({"priority": 1.5}, r"priority must be a whole number"),
    ({"priority": True}, r"priority must be a whole number"),
    ({"deduplication_id": ""}, r"deduplication_id must be a non-empty string"),
    ({"deduplication_id": 5}, r"deduplication_id must be a non-empty string"),
    ({"queue_partition_key": 5}, r"queue_partition_key must be a string"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_enqueue_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SetEnqueueOptions(**options)


def test_options_the_queue_does_not_support_are_refused_and_nothing_is_stored(
        dbos: Any, raw_store: SystemStore) -> None:
    with SetEnqueueOptions(priority=3), pytest.raises(
            ConfigError, match=r"queue 'tq_basic' does not have priorities: create it with "
                               r"Queue\('tq_basic', priority_enabled=True\)"):
        basic_queue.enqueue(tq_add, 1)
    with SetEnqueueOptions(queue_partition_key="a"), pytest.raises(
            ConfigError, match=r"queue 'tq_basic' is not partitioned: create it with "
                               r"Queue\('tq_basic', partition_queue=True\)"):
        basic_queue.enqueue_many(tq_add, [(1,), (2,)])
    with pytest.raises(ConfigError, match=r"queue 'tq_part' is partitioned: enqueue with "
                                          r"SetEnqueueOptions\(queue_partition_key=\.\.\.\)"):
        part_queue.enqueue(tq_add, 1)
    with SetEnqueueOptions(deduplication_id="d"), pytest.raises(
            ConfigError, match="enqueue_many cannot use it"):
        dedup_queue.enqueue_many(tq_add, [(1,), (2,)])
    for not_calls in (5, "ab", {"x": 1}):
        with pytest.raises(ConfigError, match=r"enqueue_many takes an iterable of calls .*, "
                                              rf"not {type(not_calls).__name__}"):
            basic_queue.enqueue_many(tq_add, not_calls)  # type: ignore[arg-type]
    with SetEnqueueOptions(priority=0):  # the default priority is fine anywhere
        assert basic_queue.enqueue(tq_add, 1, 1).get_result(timeout_seconds=DEADLINE) == 2
    assert len(workflows_named(raw_store, "tq_add")) == 1
    with pytest.raises(ConfigError, match="is not a workflow"):
        basic_queue.enqueue(tq_notify_step)


# --- basics ----------------------------------------------------------------------------


def test_enqueue_returns_a_handle_to_the_result(dbos: Any, raw_store: SystemStore) -> None:
    before = calls["tq_add"]
    handle = basic_queue.enqueue(tq_add, 2, b=3)
    assert isinstance(handle, WorkflowHandle)
    assert handle.get_result(timeout_seconds=DEADLINE) == 5
    status = handle.get_status()
    assert (status.status, status.queue_name, status.recovery_attempts) == (
        SUCCESS, "tq_basic", 1)
    assert status.input == {"args": (2,), "kwargs": {"b": 3}}
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == 5
    # SetWorkflowID names the enqueued workflow; a second enqueue with the ID
    # is the same workflow, not a second run.
    with SetWorkflowID("tq-fixed-id"):
        fixed = basic_queue.enqueue(tq_add, 1)
    assert fixed.workflow_id == "tq-fixed-id"
    assert fixed.get_result(timeout_seconds=DEADLINE) == 1
    with SetWorkflowID("tq-fixed-id"):
        again = basic_queue.enqueue(tq_add, 100)
    assert again.workflow_id == "tq-fixed-id"
    assert again.get_result(timeout_seconds=DEADLINE) == 1
    with SetWorkflowID("tq-fixed-id"), pytest.raises(WorkflowConflictError,
                                                     match="already used by workflow"):
        basic_queue.enqueue(tq_child, "x", 1)
    assert calls["tq_add"] - before == 2
    row = raw_store.get_workflow(handle.workflow_id)
    assert row is not None and row.started_at is not None and row.owner is not None


def test_a_queue_created_after_launch_is_served(dbos: Any) -> None:
    late = Queue(f"tq_late_{uuid.uuid4().hex[:8]}", concurrency=1)
    assert late.enqueue(tq_add, 4, 4).get_result(timeout_seconds=10) == 8


def test_register_queue_creates_a_queue_at_run_time(dbos: Any, raw_store: SystemStore) -> None:
    name = f"tq_runtime_{uuid.uuid4().hex[:8]}"
    q = DBOS.register_queue(name, concurrency=2, limiter={"limit": 10, "period": 2})
    assert q.concurrency == 2 and queues.get(name) is q
    [row] = raw_store.get_queues([name])
    assert (row.concurrency, row.rate_limit, row.rate_period_ms, row.defined_by) == (
        2, 10, 2000, "runtime")
    assert q.enqueue(tq_add, 3, 4).get_result(timeout_seconds=10) == 7
    # The largest limits fit the database.
    biggest = DBOS.register_queue(name + "_max", concurrency=2**31 - 1,
                                  limiter={"limit": 2**31 - 1, "period": 1e9})
    [row] = raw_store.get_queues([biggest.name])
    assert (row.concurrency, row.rate_limit, row.rate_period_ms) == (
        2**31 - 1, 2**31 - 1, 10**12)


# --- limits ----------------------------------------------------------------------------


def test_global_concurrency(dbos: Any) -> None:
    tag = new_tag()
    handles = [conc_queue.enqueue(tq_timed, tag, i, 0.15) for i in range(8)]
    assert results(handles) == list(range(8))
    assert peak(tag) == 2


def test_worker_concurrency(dbos: Any) -> None:
    tag = new_tag()
    handles = worker_queue.enqueue_many(tq_timed, [(tag, i, 0.15) for i in range(8)])
    assert results(handles) == list(range(8))
    assert peak(tag) == 2


def test_rate_limiter(dbos: Any, raw_store: SystemStore) -> None:
    """limit 3 per 1 s: never more than 3 starts in any 1 s window."""
    tag = new_tag()
    t0 = time.time()
    handles = rate_queue.enqueue_many(tq_timed, [(tag, i) for i in range(9)])
    assert sorted(results(handles)) == list(range(9))
    elapsed = time.time() - t0
    # The dequeue times the limit is defined on ...
    starts = []
    for h in handles:
        row = raw_store.get_workflow(h.workflow_id)
        assert row is not None and row.started_at is not None
        starts.append(row.started_at)
    starts.sort()
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] > 1000, f"4 starts within 1 s: {starts[i:i + 4]}"
    # ... and when the steps actually began (allowing for the thread hand-off).
    steps = [s.start for s in started(tag)]
    for i in range(len(steps) - 3):
        assert steps[i + 3] - steps[i] > 0.8, steps
    assert 2.0 < elapsed < 8.0


def test_a_rate_limit_is_a_rate_not_a_limit_per_poll(
        db_url: str, raw_store: SystemStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queue limited to 3 starts per half second starts 3 every half second
    when it has the work: the idle executor wakes up when the limit frees up,
    not at its next poll (3 s here, which would make it 3 per 3 s)."""
    monkeypatch.setattr(queues, "_queues", dict(queues.registered()))  # (defined here only)
    fast = Queue("tq_rate_fast_" + uuid.uuid4().hex[:6], limiter={"limit": 3, "period": 0.5})
    with launched(db_url, listen=[fast], poll_interval_seconds=3.0, use_listen_notify=False):
        handles = fast.enqueue_many(tq_add, [(i,) for i in range(12)])
        assert [h.get_result(timeout_seconds=DEADLINE) for h in handles] == list(range(12))
    starts = sorted(raw_store.get_workflow(h.workflow_id).started_at  # type: ignore[union-attr]
                    for h in handles)
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] > 500, f"4 starts within 0.5 s: {starts[i:i + 4]}"
    # Four rounds of three, half a second apart: 1.5 s from the first start
    # to the last (at one round per poll it would be 9 s).
    assert starts[-1] - starts[0] < 1_500 + 750, starts


def test_priorities(dbos: Any) -> None:
    tag, gate = new_tag(), new_gate()
    blocker = prio_queue.enqueue(tq_gated, tag, "blocker", gate)
    wait_until(lambda: started_keys(tag) == ["blocker"], "the blocker to run")
    handles = []
    for p in (5, 1, 3):
        with SetEnqueueOptions(priority=p):
            handles.append(prio_queue.enqueue(tq_timed, tag, f"p{p}"))
    for h, p in zip(handles, (5, 1, 3), strict=True):
        status = h.get_status()
        assert (status.status, status.priority) == (ENQUEUED, p)
    gates[gate].set()
    results([blocker, *handles])
    assert started_keys(tag) == ["blocker", "p1", "p3", "p5"]


def test_partitions_run_in_parallel_each_one_serially(dbos: Any) -> None:
    tag = new_tag()
    handles = []
    for key in ("a1", "b1", "a2", "b2"):
        with SetEnqueueOptions(queue_partition_key=key[0]):
            handles.append(part_queue.enqueue(tq_timed, tag, key, 0.25))
    results(handles)
    by_key = {s.key: s for s in started(tag)}
    assert not overlap(by_key["a1"], by_key["a2"]), "one partition ran two at once"
    assert not overlap(by_key["b1"], by_key["b2"]), "one partition ran two at once"
    assert by_key["a1"].start < by_key["a2"].start and by_key["b1"].start < by_key["b2"].start
    assert overlap(by_key["a1"], by_key["b1"]), "the two partitions did not run in parallel"
    assert peak(tag) == 2


def test_fairness_between_queues(db_url: str) -> None:
    """Two queues with 50 workflows each, competing for 4 workflow threads:
    both make progress together, neither is drained first."""
    tag, gate = new_tag(), new_gate()
    with launched(db_url, max_workflow_threads=4):
        # Fill every thread, so both queues are full before anything of theirs runs.
        blockers = [fair_block.enqueue(tq_gated, "blockers-" + tag, i, gate) for i in range(4)]
        wait_until(lambda: running("blockers-" + tag) == 4, "the blockers to run")
        handles = (fair_a.enqueue_many(tq_timed, [(tag, "a", 0.01)] * 50)
                   + fair_b.enqueue_many(tq_timed, [(tag, "b", 0.01)] * 50))
        t0 = time.time()
        gates[gate].set()
        results(blockers + handles)
        elapsed = time.time() - t0
    order = started_keys(tag)
    assert Counter(order) == {"a": 50, "b": 50}
    first_half = Counter(order[:50])
    assert min(first_half["a"], first_half["b"]) >= 15, (
        f"one queue went first: {''.join(order)}")
    # Alternating service: no long run of one queue while the other has work
    # waiting (that is, before either queue's last workflow starts).
    text = "".join(order)
    both_waiting = text[:min(text.rindex("a"), text.rindex("b")) + 1]
    longest = max(len(run) for run in both_waiting.replace("ab", "a b").replace(
        "ba", "b a").split())
    assert longest <= 10, text
    assert elapsed < 15, f"100 workflows of 10 ms on 4 threads took {elapsed:.1f}s"


def test_a_workflow_queued_behind_the_scan_point_still_runs(
        db_url: str, raw_store: SystemStore) -> None:
    """Claims from a queue without limits start their scan at the creation time
    of the last workflow claimed; one that becomes eligible behind that point
    (put back by recovery, enqueued by a host whose clock is behind) is taken
    by the whole-queue scan that runs at least once a second."""
    from relos.runtime import queueing
    from relos.store.base import WorkflowRow

    with launched(db_url, listen=[basic_queue]):
        first = basic_queue.enqueue_many(tq_add, [(i,) for i in range(50)])
        assert results(first) == list(range(50))
        runner = relos.dbos._rt().queue_runner
        assert runner is not None
        scan_from = runner._scan_from["tq_basic"][0]
        behind = scan_from - 60_000
        name = DBOS.get_workflow_status(first[0].workflow_id).name
        wid = "tq-behind-" + uuid.uuid4().hex
        raw_store.enqueue([WorkflowRow(
            workflow_id=wid, status="ENQUEUED", name=name, executor_id="local",
            created_at=behind, updated_at=behind, inputs='{"args": [7, 1], "kwargs": {}}',
            queue_name="tq_basic", recovery_attempts=0)])
        t0 = time.monotonic()
        assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=DEADLINE) == 8
        assert time.monotonic() - t0 < queueing.FULL_SCAN_SECONDS + 3


def test_large_claims_are_split_where_claims_run_at_once(db_url: str) -> None:
    """With room for many workflows, a claim from a queue without a global
    budget is split in two claims run at once on PostgreSQL (not on SQLite,
    whose writers take turns): every workflow still runs exactly once."""
    before = calls["tq_add"]
    with launched(db_url, listen=[basic_queue], max_workflow_threads=400):
        runner = relos.dbos._rt().queue_runner
        assert runner is not None
        handles = basic_queue.enqueue_many(tq_add, [(i, 1) for i in range(1200)])
        assert results(handles) == [i + 1 for i in range(1200)]
        split = runner._helper is not None
        statuses = {DBOS.get_workflow_status(h.workflow_id).recovery_attempts
                    for h in handles[::50]}
    assert calls["tq_add"] - before == 1200
    assert statuses == {1}, "a workflow was claimed more than once"
    assert split == db_url.startswith("postgresql")


def test_claims_go_on_unsplit_once_the_interpreter_refuses_new_threads(db_url: str) -> None:
    """A script that ends without DBOS.destroy() leaves the dequeuer running
    while the interpreter exits, and an exiting interpreter's thread pools
    refuse new work (RuntimeError). The dequeuer then claims in one piece
    rather than fail each round ("dequeue failed" logged until exit). The
    refusing pool is made here by shutting the claim helper down first."""
    from concurrent.futures import ThreadPoolExecutor

    if not db_url.startswith("postgresql"):
        pytest.skip("claims are split only where they run at once (PostgreSQL)")
    refusing = ThreadPoolExecutor(1)
    refusing.shutdown()
    with launched(db_url, listen=[basic_queue], max_workflow_threads=400):
        runner = relos.dbos._rt().queue_runner
        assert runner is not None
        runner._helper = refusing
        handles = basic_queue.enqueue_many(tq_add, [(i, 2) for i in range(600)])
        assert results(handles) == [i + 2 for i in range(600)]


def test_claimed_workflows_get_more_threads_when_the_running_ones_block(db_url: str) -> None:
    """Claimed workflows start on a few threads, each taking the next as it
    finishes one; when all of those block, more threads start within
    milliseconds: 24 workflows waiting on one gate all run at once, and the
    threads serve the rest of the queue afterwards."""
    from relos.runtime import queueing

    tag, gate = new_tag(), new_gate()
    n = 6 * queueing.MIN_FEEDERS
    with launched(db_url, listen=[basic_queue], max_workflow_threads=n):
        gated = basic_queue.enqueue_many(tq_gated, [(tag, i, gate) for i in range(n)])
        wait_until(lambda: running(tag) == n, f"all {n} gated workflows to run at once",
                   timeout=5.0)
        gates[gate].set()
        assert results(gated) == list(range(n))
        after = basic_queue.enqueue_many(tq_add, [(i, 1) for i in range(200)])
        assert results(after) == [i + 1 for i in range(200)]
    assert peak(tag) == n


@pytest.mark.parametrize("workflow", [tq_timed, tq_async_wf], ids=["sync", "async"])
def test_one_workflow_thread_serves_a_queue_without_stalls(
        db_url: str, workflow: Callable[..., Any]) -> None:
    """Each finished workflow makes room for the next at once: the dequeuer is
    woken only when the thread it used is free again, not a poll later.

    Normally 0.1-0.2 s in all; one missed wake-up costs a whole poll (20 s
    here), while a bound of half that leaves room for a stalled host."""
    tag = new_tag()
    args = [(tag, i) for i in range(20)] if workflow is tq_timed else [(i,) for i in range(20)]
    with launched(db_url, max_workflow_threads=1, poll_interval_seconds=SLOW_POLL):
        t0 = time.monotonic()
        results(basic_queue.enqueue_many(workflow, args))
        elapsed = time.monotonic() - t0
    assert elapsed < SLOW_POLL / 2, f"20 instant workflows on one thread took {elapsed:.1f}s"


def test_claims_resume_as_soon_as_the_commit_backlog_drains(db_url: str,
                                                           monkeypatch: Any) -> None:
    """Past the commit backlog's cap, finished workflows waiting for the
    committer take room from new claims; once committed they give it back and
    the dequeuer claims again at once, not a poll later."""
    from relos.runtime import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "COMMIT_BACKLOG", 0)  # every one takes room
    with launched(db_url, max_workflow_threads=2, poll_interval_seconds=SLOW_POLL):
        t0 = time.monotonic()
        results(basic_queue.enqueue_many(tq_add, [(i,) for i in range(40)]))
        elapsed = time.monotonic() - t0
    assert elapsed < SLOW_POLL / 2, (
        f"40 instant workflows took {elapsed:.1f}s: a claim waited for a poll")


def test_an_enqueue_during_a_dequeue_round_is_not_missed(db_url: str) -> None:
    """An enqueue right after the launch lands while the dequeuer runs its first
    round: it must still wake the dequeuer, not wait for its next poll (20 s)."""
    tag = new_tag()
    with launched(db_url, max_workflow_threads=1, poll_interval_seconds=SLOW_POLL):
        t0 = time.time()
        handles = basic_queue.enqueue_many(tq_timed, [(tag, i) for i in range(20)])
        results(handles)
        elapsed = time.time() - t0
    first = started(tag)[0].start - t0
    assert elapsed < SLOW_POLL / 2, f"first start after {first:.2f}s, all after {elapsed:.2f}s"


# --- deduplication and delays --------------------------------------------------------------


def test_deduplication(dbos: Any, raw_store: SystemStore) -> None:
    tag, gate = new_tag(), new_gate()
    with SetEnqueueOptions(deduplication_id="order-7"):
        first = dedup_queue.enqueue(tq_gated, tag, "first", gate)
    with SetEnqueueOptions(deduplication_id="order-7"), pytest.raises(
            QueueDeduplicatedError) as refused:
        dedup_queue.enqueue(tq_timed, tag, "second")
    assert refused.value.existing_id == first.workflow_id
    assert (refused.value.queue_name, refused.value.deduplication_id) == ("tq_dedup", "order-7")
    assert first.workflow_id in str(refused.value) and "return_existing=True" in str(
        refused.value)
    with SetEnqueueOptions(deduplication_id="order-7", return_existing=True):
        same = dedup_queue.enqueue(tq_timed, tag, "third")
    assert same.workflow_id == first.workflow_id
    # Other IDs, and the same ID on another queue, are not affected.
    with SetEnqueueOptions(deduplication_id="order-8"):
        other = dedup_queue.enqueue(tq_timed, tag, "other")
    with SetEnqueueOptions(deduplication_id="order-7"):
        elsewhere = basic_queue.enqueue(tq_timed, tag, "elsewhere")
    results([other, elsewhere])
    assert status_of(first) in (ENQUEUED, PENDING)
    gates[gate].set()
    assert first.get_result(timeout_seconds=DEADLINE) == "first"
    # Finished: the deduplication ID is free again.
    with SetEnqueueOptions(deduplication_id="order-7"):
        fourth = dedup_queue.enqueue(tq_timed, tag, "fourth")
    assert fourth.workflow_id != first.workflow_id
    assert fourth.get_result(timeout_seconds=DEADLINE) == "fourth"
    assert sorted(started_keys(tag)) == ["elsewhere", "first", "fourth", "other"]
    assert len(workflows_named(raw_store, "tq_timed")) == 3


def test_delay_seconds(dbos: Any) -> None:
    tag = new_tag()
    t0 = time.time()
    with SetEnqueueOptions(delay_seconds=1.0):
        handle = basic_queue.enqueue(tq_timed, tag, "delayed")
    assert status_of(handle) == DELAYED
    wait_until(lambda: time.time() > t0 + 0.7, "most of the delay")
    assert status_of(handle) == DELAYED and started(tag) == []
    assert handle.get_result(timeout_seconds=DEADLINE) == "delayed"
    [span] = started(tag)
    assert span.start >= t0 + 0.998, f"ran {span.start - t0:.3f}s after the enqueue"
    assert span.start < t0 + 3.5
    with SetEnqueueOptions(delay_seconds=0):
        assert status_of(basic_queue.enqueue(tq_add, 1)) in (ENQUEUED, PENDING, SUCCESS)


def delayed_elsewhere(raw_store: SystemStore, queue_name: str, delay_ms: int
                     ) -> tuple[str, int]:
    """A ``tq_timed`` workflow DELAYED by ``delay_ms`` in ``queue_name``, written
    as another process would (beside the runtime under test): its tag, and
    when its delay ends (epoch ms)."""
    from relos.store.base import WorkflowRow

    tag = new_tag()
    now = int(time.time() * 1000)
    end = now + delay_ms
    raw_store.enqueue([WorkflowRow(
        "tq-delayed-" + tag, DELAYED, relos.dbos._workflow_info(tq_timed).name,
        "elsewhere", now, now, queue_name=queue_name, delay_until_epoch_ms=end,
        inputs=f'{{"args": ["{tag}", "there"], "kwargs": {{}}}}')])
    return tag, end


def started_after_delay(tag: str, end: int) -> float:
    """Once the delayed workflow ``tag`` finished: how long after its delay's
    end (``end``, epoch ms) it started, in seconds."""
    assert DBOS.retrieve_workflow("tq-delayed-" + tag).get_result(
        timeout_seconds=DEADLINE) == "there"
    [span] = started(tag)
    return span.start - end / 1000


def test_another_processs_delayed_workflow_starts_on_time_where_enqueues_are_heard(
        db_url: str, backend: str, raw_store: SystemStore) -> None:
    """An enqueue of a DELAYED workflow is heard like any other (PostgreSQL:
    announced; SQLite: seen by the listener): an idle executor hearing it
    reads the next delay end again and wakes up then, not at its next poll
    (10 s here) nor the one after."""
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=10.0,
                  use_listen_notify=True):
        time.sleep(0.5)  # (the runner has read the next delay end: none, and gone idle)
        late = started_after_delay(*delayed_elsewhere(raw_store, basic_queue.name, 1_500))
    assert -0.002 <= late < 0.75, late


def test_another_processs_delayed_workflow_starts_on_time_while_the_executor_is_busy(
        db_url: str, backend: str, raw_store: SystemStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same while the executor is busy with another queue: the delayed
    workflow's queue, which came up empty, is not left out past its delay."""
    monkeypatch.setattr(queues, "_queues", dict(queues.registered()))  # (defined here only)
    quiet = Queue("tq_quiet_" + uuid.uuid4().hex[:6])
    with launched(db_url, listen=[basic_queue, quiet], max_workflow_threads=2,
                  poll_interval_seconds=10.0, use_listen_notify=True):
        busy_tag = new_tag()
        busy = basic_queue.enqueue_many(tq_timed, [(busy_tag, i, 0.05) for i in range(80)])
        wait_until(lambda: len(started(busy_tag)) >= 4, "the executor to be busy")
        late = started_after_delay(*delayed_elsewhere(raw_store, quiet.name, 700))
        still_busy = len(started(busy_tag)) < 80
        results(busy)
    assert still_busy, "the executor was no longer busy: make its work longer"
    assert -0.002 <= late < 0.5, late


@pytest.mark.parametrize("skew_hours", [-1, 1])
def test_an_executor_whose_host_clock_is_off_keeps_the_databases_time(
        db_url: str, backend: str, raw_store: SystemStore, monkeypatch: pytest.MonkeyPatch,
        skew_hours: int) -> None:
    """Executors on several hosts share one PostgreSQL: an executor whose host
    clock is an hour off reads times as the database does. Another host's
    workflow delayed by 1.5 s starts 1.5 s later, not an hour late (a clock
    behind) nor at once (ahead); the times it writes are the database's."""
    if backend != "postgres":
        pytest.skip("an SQLite file serves one host: one clock")
    from relos.runtime import clock

    real = clock.host_time
    monkeypatch.setattr(clock, "host_time", lambda: real() + skew_hours * 3600)
    with launched(db_url, listen=[basic_queue], use_listen_notify=True):
        assert abs(clock.now_ms() - raw_store.clock_ms()) < 1000
        tag, end = delayed_elsewhere(raw_store, basic_queue.name, 1_500)
        late = started_after_delay(tag, end)
        row = raw_store.get_workflow("tq-delayed-" + tag)
        assert row is not None and row.started_at is not None
        assert abs(row.started_at - end) < 1000, (row.started_at, end)
    assert -0.002 <= late < 0.75, late
    assert clock.offset_ms() == 0  # (the runtime gone: the host's clock again)


def test_a_delayed_workflow_starts_when_its_delay_ends_not_at_the_next_poll(
        db_url: str, raw_store: SystemStore) -> None:
    """An idle executor wakes up when the next delay ends: for a workflow it
    enqueued itself, and for one another process enqueued (which it hears
    nothing about: read from the database within a poll interval)."""
    with launched(db_url, listen=[basic_queue], poll_interval_seconds=3.0,
                  use_listen_notify=False):
        # Here: without the wake-up it would start at the next poll, 3 s after
        # the round the enqueue woke.
        tag = new_tag()
        t0 = time.time()
        with SetEnqueueOptions(delay_seconds=1.0):
            here = basic_queue.enqueue(tq_timed, tag, "here")
        assert here.get_result(timeout_seconds=DEADLINE) == "here"
        [span] = started(tag)
        assert t0 + 0.998 <= span.start < t0 + 1.0 + 0.75, span.start - t0
        # Another process's (a row written beside this runtime, just as the
        # runner went idle after running the first): the runner reads the next
        # delay end when idle, once a poll interval, so by its poll at about 3 s
        # it knows of the end at 4.5 s; a poll alone would find it at 6 s.
        late = started_after_delay(*delayed_elsewhere(raw_store, basic_queue.name, 4_500))
        assert -0.002 <= late < 0.75, late
