"""Queues through the public API, on SQLite and PostgreSQL: validation,
limits (concurrency, worker concurrency, rate, priorities, partitions),
deduplication, delays, fairness, enqueueing from workflows, run-time changes,
listening, cancellation, timeouts, async, and cross-process wake-ups.

Workflows here record when their step starts and ends (``spans``), so the
limits are checked on what actually ran. Waits poll with deadlines; the only
fixed sleeps are where a test must show that something does *not* happen
within a time, or needs a workflow to run for a known time.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import relos.dbos
from relos import (
    CANCELLED,
    DBOS,
    DELAYED,
    ENQUEUED,
    PENDING,
    SUCCESS,
    AwaitedWorkflowCancelledError,
    ConfigError,
    Queue,
    QueueDeduplicatedError,
    SerializationError,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowConflictError,
    WorkflowHandle,
    WorkflowHandleAsync,
    queues,
)
from relos.queues import Call, queue_row
from relos.store import SystemStore, open_store
from relos.store.base import ListFilter

APP = Path(__file__).with_name("queue_app.py")
DEADLINE = 30.0

basic_queue = Queue("tq_basic")
conc_queue = Queue("tq_conc", concurrency=2)
worker_queue = Queue("tq_worker", worker_concurrency=2)
rate_queue = Queue("tq_rate", limiter={"limit": 3, "period": 1})
prio_queue = Queue("tq_prio", concurrency=1, priority_enabled=True)
dedup_queue = Queue("tq_dedup")
part_queue = Queue("tq_part", concurrency=1, partition_queue=True)
fair_a = Queue("tq_fair_a")
fair_b = Queue("tq_fair_b")
fair_block = Queue("tq_fair_block")
dyn_queue = Queue("tq_dyn", concurrency=1)
listen_a = Queue("tq_listen_a")
listen_b = Queue("tq_listen_b")
cancel_queue = Queue("tq_cancel", concurrency=1)
timeout_queue = Queue("tq_timeout", concurrency=1)
notify_queue = Queue("qapp_notify")  # also defined by queue_app.py


# --- what the workflows record ---------------------------------------------------------


@dataclass
class Span:
    key: Any
    workflow_id: str
    start: float
    end: float | None = None


_lock = threading.Lock()
spans: dict[str, list[Span]] = defaultdict(list)
gates: dict[str, threading.Event] = {}
calls: Counter[str] = Counter()


def new_tag() -> str:
    return uuid.uuid4().hex


def new_gate() -> str:
    name = uuid.uuid4().hex
    gates[name] = threading.Event()
    return name


def started(tag: str) -> list[Span]:
    with _lock:
        return sorted(spans[tag], key=lambda s: s.start)


def started_keys(tag: str) -> list[Any]:
    return [s.key for s in started(tag)]


def running(tag: str) -> int:
    with _lock:
        return sum(1 for s in spans[tag] if s.end is None)


def peak(tag: str) -> int:
    """The most steps of ``tag`` that were running at the same moment."""
    with _lock:
        marks = [(s.start, 1) for s in spans[tag]] + [
            (s.end if s.end is not None else float("inf"), -1) for s in spans[tag]]
    now = top = 0
    for _, delta in sorted(marks):  # at equal times an end (-1) sorts before a start
        now += delta
        top = max(top, now)
    return top


def overlap(a: Span, b: Span) -> bool:
    assert a.end is not None and b.end is not None
    return a.start < b.end and b.start < a.end


@DBOS.step()
def tq_span_step(tag: str, key: Any, seconds: float, gate: str | None) -> Any:
    span = Span(key, DBOS.workflow_id or "-", time.time())
    with _lock:
        spans[tag].append(span)
    if gate is not None:
        assert gates[gate].wait(DEADLINE), "the test never opened the gate"
    if seconds:
        time.sleep(seconds)
    with _lock:
        span.end = time.time()
    return key


@DBOS.workflow()
def tq_timed(tag: str, key: Any, seconds: float = 0.0) -> Any:
    calls[f"timed:{tag}"] += 1
    return tq_span_step(tag, key, seconds, None)


@DBOS.workflow()
def tq_gated(tag: str, key: Any, gate: str) -> Any:
    """Runs until the test opens ``gate``."""
    return tq_span_step(tag, key, 0.0, gate)


@DBOS.workflow()
def tq_add(a: int, b: int = 0) -> int:
    calls["tq_add"] += 1
    return a + b


@DBOS.workflow()
def tq_sleepy(tag: str, seconds: float) -> str:
    tq_span_step(tag, "sleepy", 0.0, None)
    DBOS.sleep(seconds)
    return "woke"


@DBOS.workflow()
def tq_child(tag: str, x: int) -> int:
    calls[f"child:{tag}"] += 1
    return x * 10


@DBOS.workflow()
def tq_parent(tag: str, x: int) -> list[Any]:
    handle = basic_queue.enqueue(tq_child, tag, x)  # function_id 0
    return [handle.workflow_id, handle.get_result(), tq_span_step(tag, "after", 0.0, None)]


@DBOS.workflow()
def tq_parent_many(tag: str) -> list[Any]:
    handles = basic_queue.enqueue_many(tq_child, [(tag, 1), (tag, 2)])  # function_id 0
    return [[h.workflow_id for h in handles], [h.get_result() for h in handles]]


@DBOS.workflow()
def tq_dedup_parent(tag: str, dedup_id: str, return_existing: bool) -> str:
    try:
        with SetEnqueueOptions(deduplication_id=dedup_id, return_existing=return_existing):
            handle = dedup_queue.enqueue(tq_timed, tag, "from-parent")  # function_id 0
    except QueueDeduplicatedError as exc:
        return f"deduplicated by {exc.existing_id}"
    return handle.workflow_id


@DBOS.workflow()
async def tq_async_wf(x: int) -> int:
    await asyncio.sleep(0)
    return x * 3


@DBOS.workflow()
async def tq_async_parent(x: int) -> list[Any]:
    handle = await basic_queue.enqueue_async(tq_async_wf, x)
    return [handle.workflow_id, await handle.get_result()]


@DBOS.step(name="tq.notify_step")
def tq_notify_step() -> float:
    return time.time()


@DBOS.workflow(name="qapp.notify_target")
def tq_notify_target(enqueued_at: float) -> list[float]:
    """queue_app.py enqueues this (by name) from another process."""
    return [enqueued_at, tq_notify_step()]


# --- helpers ---------------------------------------------------------------------------


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def status_of(handle: WorkflowHandle[Any] | str) -> str:
    wid = handle if isinstance(handle, str) else handle.workflow_id
    st = DBOS.get_workflow_status(wid)
    assert st is not None, wid
    return st.status


def results(handles: list[WorkflowHandle[Any]]) -> list[Any]:
    return [h.get_result(timeout_seconds=DEADLINE) for h in handles]


def workflows_named(store: SystemStore, name: str) -> list[str]:
    return [r.workflow_id for r in store.list_workflows(ListFilter(name=name))]


@contextmanager
def launched(db_url: str, listen: list[Any] | None = None, **config: Any) -> Iterator[None]:
    """A runtime with extra configuration (instead of the ``dbos`` fixture's),
    dequeueing only from ``listen`` if given."""
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5, **config})
    if listen is not None:
        DBOS.listen_queues(listen)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()


@pytest.fixture
def raw_store(db_url: str) -> Iterator[SystemStore]:
    """The test's own connection to the database (migrated by the launch)."""
    store = open_store(db_url)
    store.migrate()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def no_listen_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start and end the test with no DBOS.listen_queues filter in force."""
    monkeypatch.setattr(relos.dbos, "_listen", None)


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


@pytest.mark.parametrize("workflow", [tq_timed, tq_async_wf], ids=["sync", "async"])
def test_one_workflow_thread_serves_a_queue_without_stalls(
        db_url: str, workflow: Callable[..., Any]) -> None:
    """Each finished workflow makes room for the next at once: the dequeuer is
    woken only when the thread it used is free again, not a poll later."""
    tag = new_tag()
    args = [(tag, i) for i in range(20)] if workflow is tq_timed else [(i,) for i in range(20)]
    with launched(db_url, max_workflow_threads=1, poll_interval_seconds=2.0):
        t0 = time.monotonic()
        results(basic_queue.enqueue_many(workflow, args))
        elapsed = time.monotonic() - t0
    assert elapsed < 3.0, f"20 instant workflows on one thread took {elapsed:.1f}s"


def test_an_enqueue_during_a_dequeue_round_is_not_missed(db_url: str) -> None:
    """An enqueue right after the launch lands while the dequeuer runs its first
    round: it must still wake the dequeuer, not wait for its next (5 s) poll."""
    tag = new_tag()
    with launched(db_url, max_workflow_threads=1, poll_interval_seconds=5.0):
        t0 = time.time()
        handles = basic_queue.enqueue_many(tq_timed, [(tag, i) for i in range(20)])
        results(handles)
        elapsed = time.time() - t0
    first = started(tag)[0].start - t0
    assert first < 1.0 and elapsed < 4.0, f"first start after {first:.2f}s, all after {elapsed:.2f}s"


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


# --- enqueueing from workflows ---------------------------------------------------------


def test_enqueue_in_a_workflow_is_a_step_and_replays(dbos: Any, raw_store: SystemStore) -> None:
    tag = new_tag()
    with SetWorkflowID(f"tq-parent-{tag}"):
        parent = DBOS.start_workflow(tq_parent, tag, 4)
    child_id = f"tq-parent-{tag}-0"
    assert parent.get_result(timeout_seconds=DEADLINE) == [child_id, 40, "after"]
    child = DBOS.get_workflow_status(child_id)
    assert child is not None
    assert (child.queue_name, child.parent_workflow_id, child.status) == (
        "tq_basic", parent.workflow_id, SUCCESS)
    steps = DBOS.list_workflow_steps(parent.workflow_id)
    assert [(s["function_id"], s["function_name"], s["child_workflow_id"], s["output"])
            for s in steps[:1]] == [(0, "DBOS.enqueue", child_id, [child_id])]
    # A fork that replays the enqueue step gets the same child, enqueues nothing.
    fork = DBOS.fork_workflow(parent.workflow_id, 1)
    assert fork.get_result(timeout_seconds=DEADLINE) == [child_id, 40, "after"]
    assert calls[f"child:{tag}"] == 1
    assert workflows_named(raw_store, "tq_child") == [child_id]
    # A fork from the enqueue itself enqueues a new child, named after the fork.
    refork = DBOS.fork_workflow(parent.workflow_id, 0)
    assert refork.get_result(timeout_seconds=DEADLINE) == [
        f"{refork.workflow_id}-0", 40, "after"]
    assert calls[f"child:{tag}"] == 2


def test_enqueue_many_in_a_workflow(dbos: Any) -> None:
    tag = new_tag()
    with SetWorkflowID(f"tq-many-{tag}"):
        parent = DBOS.start_workflow(tq_parent_many, tag)
    ids = [f"tq-many-{tag}-0-0", f"tq-many-{tag}-0-1"]
    assert parent.get_result(timeout_seconds=DEADLINE) == [ids, [10, 20]]
    [step] = DBOS.list_workflow_steps(parent.workflow_id)
    assert (step["function_name"], step["output"]) == ("DBOS.enqueueMany", ids)
    fork = DBOS.fork_workflow(parent.workflow_id, 1)
    assert fork.get_result(timeout_seconds=DEADLINE) == [ids, [10, 20]]
    assert calls[f"child:{tag}"] == 2


def test_deduplicated_enqueue_in_a_workflow_replays_the_same_outcome(dbos: Any) -> None:
    tag, gate = new_tag(), new_gate()
    with SetEnqueueOptions(deduplication_id=tag):
        holder = dedup_queue.enqueue(tq_gated, tag, "holder", gate)
    got = DBOS.start_workflow(tq_dedup_parent, tag, tag, True)
    assert got.get_result(timeout_seconds=DEADLINE) == holder.workflow_id
    refused = DBOS.start_workflow(tq_dedup_parent, tag, tag, False)
    assert refused.get_result(timeout_seconds=DEADLINE) == (
        f"deduplicated by {holder.workflow_id}")
    gates[gate].set()
    assert holder.get_result(timeout_seconds=DEADLINE) == "holder"
    # Replaying the enqueue step gives what the original run got, though the
    # deduplication ID is free now.
    assert DBOS.fork_workflow(got.workflow_id, 1).get_result(
        timeout_seconds=DEADLINE) == holder.workflow_id
    assert DBOS.fork_workflow(refused.workflow_id, 1).get_result(
        timeout_seconds=DEADLINE) == f"deduplicated by {holder.workflow_id}"
    assert started_keys(tag) == ["holder"]


def test_enqueue_many(dbos: Any, raw_store: SystemStore) -> None:
    handles = basic_queue.enqueue_many(tq_add, [(1, 2), Call((3,), {"b": 4}), 5, (6,),
                                                Call(kwargs={"a": 7})])
    assert len({h.workflow_id for h in handles}) == 5
    assert results(handles) == [3, 7, 5, 6, 7]
    stored = [raw_store.get_workflow(h.workflow_id) for h in handles]
    assert all(r is not None and r.queue_name == "tq_basic" for r in stored)
    # Enqueued together: one transaction, one creation time.
    assert len({r.created_at for r in stored if r is not None}) == 1
    assert basic_queue.enqueue_many(tq_add, []) == []


def test_enqueue_many_is_all_or_nothing(dbos: Any, raw_store: SystemStore) -> None:
    before = workflows_named(raw_store, "tq_add")
    with pytest.raises(SerializationError, match=r"argument 'a' of workflow 'tq_add' "
                                                 r"\(call #3\)") as refused:
        basic_queue.enqueue_many(tq_add, [(1,), (2,), (3,), (object(),), (5,)])
    assert "object" in str(refused.value)
    assert workflows_named(raw_store, "tq_add") == before


# --- run-time changes and listening --------------------------------------------------------


def test_register_queue_changes_the_running_executor(dbos: Any, raw_store: SystemStore) -> None:
    tag, gate = new_tag(), new_gate()
    original = dyn_queue.row
    try:
        handles = [dyn_queue.enqueue(tq_gated, tag, i, gate) for i in range(6)]
        wait_until(lambda: running(tag) == 1, "the first workflow to run")
        time.sleep(0.5)  # concurrency 1: nothing else starts meanwhile
        assert running(tag) == 1
        changed_at = time.monotonic()
        q = DBOS.register_queue("tq_dyn", concurrency=3)
        assert q is dyn_queue and dyn_queue.concurrency == 3
        [row] = raw_store.get_queues(["tq_dyn"])
        assert (row.concurrency, row.defined_by) == (3, "runtime")
        wait_until(lambda: running(tag) == 3, "3 workflows to run", timeout=5)
        assert time.monotonic() - changed_at < 2.0
        time.sleep(0.3)
        assert running(tag) == 3
        gates[gate].set()
        assert sorted(results(handles)) == list(range(6))
        assert peak(tag) == 3
    finally:
        dyn_queue.row = original


def test_listen_queues(db_url: str, no_listen_filter: None) -> None:
    tag = new_tag()
    with pytest.raises(ConfigError, match="listen_queues takes queue names or Queues"):
        DBOS.listen_queues([""])
    with launched(db_url, listen=[listen_a]):
        with pytest.raises(ConfigError, match="before DBOS.launch"):
            DBOS.listen_queues(["tq_listen_b"])
        handle_b = listen_b.enqueue(tq_timed, tag, "b")
        handle_a = listen_a.enqueue(tq_timed, tag, "a")
        assert handle_a.get_result(timeout_seconds=DEADLINE) == "a"
        time.sleep(1.0)  # queue B's work stays where it is
        assert status_of(handle_b) == ENQUEUED
        assert started_keys(tag) == ["a"]
    with launched(db_url, listen=["tq_listen_b"]):  # a process listening to B runs it
        again = DBOS.retrieve_workflow(handle_b.workflow_id)
        assert again.get_result(timeout_seconds=DEADLINE) == "b"


def test_listen_queues_does_not_outlive_destroy(db_url: str, no_listen_filter: None) -> None:
    with launched(db_url, listen=[listen_a]):
        pass
    with launched(db_url):  # a new instance that did not call listen_queues
        handle = listen_b.enqueue(tq_add, 2, 2)
        assert handle.get_result(timeout_seconds=3) == 4


# --- cancellation and timeouts ---------------------------------------------------------


def test_cancel_enqueued_and_delayed_workflows(dbos: Any) -> None:
    tag, gate = new_tag(), new_gate()
    blocker = cancel_queue.enqueue(tq_gated, tag, "blocker", gate)
    wait_until(lambda: running(tag) == 1, "the blocker to run")
    waiting = cancel_queue.enqueue(tq_timed, tag, "waiting")
    with SetEnqueueOptions(delay_seconds=0.3):
        delayed = cancel_queue.enqueue(tq_timed, tag, "delayed")
    assert (status_of(waiting), status_of(delayed)) == (ENQUEUED, DELAYED)
    DBOS.cancel_workflow(waiting.workflow_id)
    DBOS.cancel_workflow(delayed.workflow_id)
    assert (status_of(waiting), status_of(delayed)) == (CANCELLED, CANCELLED)
    gates[gate].set()
    blocker.get_result(timeout_seconds=DEADLINE)
    wait_until(lambda: time.time() * 1000 > (delayed.get_status().created_at + 400),
               "the delay to pass")
    # The queue (concurrency 1, oldest first) serves a later workflow: the
    # cancelled ones, being older, would have run before it.
    later = cancel_queue.enqueue(tq_timed, tag, "later")
    assert later.get_result(timeout_seconds=DEADLINE) == "later"
    assert started_keys(tag) == ["blocker", "later"]
    for h in (waiting, delayed):
        assert status_of(h) == CANCELLED
        with pytest.raises(AwaitedWorkflowCancelledError):
            h.get_result(timeout_seconds=DEADLINE)


def test_resume_of_a_cancelled_queued_workflow_replays_its_steps(dbos: Any) -> None:
    tag = new_tag()
    handle = basic_queue.enqueue(tq_sleepy, tag, 1.5)
    wait_until(lambda: len(DBOS.list_workflow_steps(handle.workflow_id)) == 2,
               "the workflow to be asleep")
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=DEADLINE)
    resumed = DBOS.resume_workflow(handle.workflow_id)
    # Back through its queue, it replays the step it had recorded and finishes.
    assert resumed.get_result(timeout_seconds=DEADLINE) == "woke"
    assert started_keys(tag) == ["sleepy"], "the recorded step ran again"
    assert [s["function_name"] for s in DBOS.list_workflow_steps(handle.workflow_id)] == [
        "tq_span_step", "DBOS.sleep"]
    assert status_of(handle) == SUCCESS


def test_timeout_of_a_queued_workflow_starts_at_dequeue(
        dbos: Any, raw_store: SystemStore) -> None:
    tag = new_tag()
    blocker = timeout_queue.enqueue(tq_timed, tag, "blocker", 1.2)
    wait_until(lambda: running(tag) == 1, "the blocker to run")
    with SetWorkflowTimeout(0.8):
        patient = timeout_queue.enqueue(tq_timed, tag, "patient", 0.1)
    with SetWorkflowTimeout(0.4):
        sleepy = timeout_queue.enqueue(tq_sleepy, tag, 30.0)
    status = patient.get_status()
    assert (status.status, status.workflow_timeout_ms, status.workflow_deadline_epoch_ms) == (
        ENQUEUED, 800, None)
    # Waited 1.2 s in the queue with a 0.8 s timeout, and still runs to the end.
    assert patient.get_result(timeout_seconds=DEADLINE) == "patient"
    row = raw_store.get_workflow(patient.workflow_id)
    assert row is not None and row.started_at is not None
    assert row.deadline_epoch_ms == row.started_at + 800
    # Its timeout still applies once it runs.
    with pytest.raises(AwaitedWorkflowCancelledError):
        sleepy.get_result(timeout_seconds=DEADLINE)
    srow = raw_store.get_workflow(sleepy.workflow_id)
    assert srow is not None and srow.started_at is not None
    assert (srow.status, srow.deadline_epoch_ms) == (CANCELLED, srow.started_at + 400)
    assert srow.updated_at - srow.started_at < 3000
    assert blocker.get_result() == "blocker"


# --- async -----------------------------------------------------------------------------


def test_enqueue_async(dbos: Any) -> None:
    async def main() -> None:
        handle = await basic_queue.enqueue_async(tq_async_wf, 4)
        assert isinstance(handle, WorkflowHandleAsync)
        assert await handle.get_result(timeout_seconds=DEADLINE) == 12
        sync_wf = await conc_queue.enqueue_async(tq_add, 1, b=2)
        assert await sync_wf.get_result(timeout_seconds=DEADLINE) == 3
        with SetEnqueueOptions(priority=2):
            prio = await prio_queue.enqueue_async(tq_add, 5)
        assert (await prio.get_status()).priority == 2
        with SetEnqueueOptions(priority=2), pytest.raises(ConfigError, match="priorit"):
            await basic_queue.enqueue_async(tq_add, 5)
        assert await prio.get_result(timeout_seconds=DEADLINE) == 5
        # As with enqueue: SetWorkflowID names the next workflow enqueued, only that one.
        named = f"tq-async-{uuid.uuid4().hex}"
        with SetWorkflowID(named):
            first = await basic_queue.enqueue_async(tq_async_wf, 1)
            second = await basic_queue.enqueue_async(tq_async_wf, 2)
        assert first.workflow_id == named and second.workflow_id != named
        assert await second.get_result(timeout_seconds=DEADLINE) == 6
        with SetWorkflowID(f"{named}-parent"):
            parent = await DBOS.start_workflow_async(tq_async_parent, 7)
        assert await parent.get_result(timeout_seconds=DEADLINE) == [f"{named}-parent-0", 21]

    asyncio.run(main())


def test_enqueue_sync_consumes_the_workflow_id(dbos: Any) -> None:
    named = f"tq-sync-{uuid.uuid4().hex}"
    with SetWorkflowID(named):
        first = basic_queue.enqueue(tq_add, 1)
        second = basic_queue.enqueue(tq_add, 2)
    assert first.workflow_id == named and second.workflow_id != named
    assert results([first, second]) == [1, 2]


# --- across processes ------------------------------------------------------------------


def enqueue_from_another_process(db_url: str, tmp_path: Path, count: int) -> list[str]:
    """Enqueue ``count`` ``qapp.notify_target`` workflows from a fresh process
    (which dequeues nothing itself), each ~0.7 s after the previous one, once
    that process is up; their IDs."""
    log, go = tmp_path / "effects.log", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELOS_")}
    ids: list[str] = []
    for n in range(count):
        go.unlink(missing_ok=True)
        out, err = tmp_path / f"enqueue{n}.out", tmp_path / f"enqueue{n}.err"
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen(
                [sys.executable, str(APP), db_url, "enqueue", str(log), "--queue",
                 "qapp_notify", "--count", "1", "--go", str(go)],
                stdout=fout, stderr=ferr, env=env, cwd=tmp_path)
        try:
            def ready(n: int = n, proc: subprocess.Popen[bytes] = proc) -> bool:
                return proc.poll() is not None or (
                    log.exists() and log.read_text().count("enqueue-ready") > n)

            wait_until(ready, "the enqueuer to be ready")
            assert proc.poll() is None, err.read_text()
            time.sleep(0.7)  # let this process's dequeuer settle into its idle wait
            go.touch()
            assert proc.wait(timeout=DEADLINE) == 0, err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ids += json.loads(out.read_text().splitlines()[-1])
    return ids


@pytest.mark.slow
@pytest.mark.postgres_only
def test_listen_notify_wakes_an_idle_dequeuer_at_once(
        db_url: str, backend: str, tmp_path: Path) -> None:
    if backend != "postgres":
        pytest.skip("SQLite cannot announce another process's enqueue")
    # A 5 s poll: only a notification can make the dequeuer react in < 0.5 s.
    with launched(db_url, poll_interval_seconds=5.0, use_listen_notify=True):
        ids = enqueue_from_another_process(db_url, tmp_path, 3)
        latencies = []
        for wid in ids:
            enqueued_at, step_at = DBOS.retrieve_workflow(wid).get_result(
                timeout_seconds=DEADLINE)
            latencies.append(step_at - enqueued_at)
    assert max(latencies) < 0.5, f"enqueue-to-start latencies: {latencies}"


@pytest.mark.slow
def test_without_listen_notify_polling_finds_the_work(
        db_url: str, backend: str, tmp_path: Path) -> None:
    with launched(db_url, use_listen_notify=False):
        [wid] = enqueue_from_another_process(db_url, tmp_path, 1)
        enqueued_at, step_at = DBOS.retrieve_workflow(wid).get_result(timeout_seconds=DEADLINE)
    assert 0 <= step_at - enqueued_at < 5.0
