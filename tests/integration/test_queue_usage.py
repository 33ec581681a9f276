"""Queues in use, through the public API, on SQLite and PostgreSQL:
enqueueing from workflows, run-time changes, listening, cancellation,
timeouts, async, and wake-ups across processes (the shared queues and
workflows are in ``queue_workflows.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from queue_workflows import (
    APP,
    DEADLINE,
    basic_queue,
    calls,
    cancel_queue,
    conc_queue,
    dedup_queue,
    dyn_queue,
    gates,
    launched,
    listen_a,
    listen_b,
    new_gate,
    new_tag,
    peak,
    prio_queue,
    results,
    running,
    started_keys,
    status_of,
    timeout_queue,
    tq_add,
    tq_async_parent,
    tq_async_wf,
    tq_dedup_parent,
    tq_gated,
    tq_parent,
    tq_parent_many,
    tq_sleepy,
    tq_timed,
    wait_until,
    workflows_named,
)

from relos import (
    CANCELLED,
    DBOS,
    DELAYED,
    ENQUEUED,
    SUCCESS,
    AwaitedWorkflowCancelledError,
    ConfigError,
    Queue,
    QueueNotFoundError,
    SerializationError,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandleAsync,
    queues,
)
from relos.queues import Call
from relos.store import SystemStore

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
    # A batch large enough for the bulk path, whose inputs are written while
    # the first rows are already on their way to the database.
    calls: list[Any] = [(i,) for i in range(600)]
    calls[300] = (1, object())
    with pytest.raises(SerializationError, match=r"argument 'b' of workflow 'tq_add' "
                                                 r"\(call #300\)"):
        basic_queue.enqueue_many(tq_add, calls)
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


def test_listening_to_a_queue_nobody_defined_is_a_warning(
        db_url: str, no_listen_filter: None, caplog: pytest.LogCaptureFixture) -> None:
    """A name in DBOS.listen_queues that neither the code defines nor the
    database has stored (a typo, most likely) is named in a warning at
    launch; one another process stored (DBOS.register_queue) is not."""
    from relos.store import open_store
    from relos.store.base import QueueRow

    typo, elsewhere = "tq_typo_" + uuid.uuid4().hex[:6], "tq_stored_" + uuid.uuid4().hex[:6]
    store = open_store(db_url)
    try:
        store.migrate()
        store.save_queue(QueueRow(elsewhere, concurrency=1, defined_by="runtime", updated_at=1))
    finally:
        store.close()
    caplog.set_level("WARNING", logger="relos")
    with launched(db_url, listen=[listen_a, typo, elsewhere]):
        pass
    warned = [r.getMessage() for r in caplog.records if "listening to queue" in r.getMessage()]
    assert len(warned) == 1 and f"listening to queue {typo!r}, which no code here defines" \
        in warned[0], warned


# --- the DBOS-shaped ways to name a queue ------------------------------------------------


def test_queue_takes_its_arguments_in_dbos_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue(name, concurrency, limiter, *, worker_concurrency, ...): code
    written for DBOS Transact that passes the limiter third means the same
    here; worker_concurrency is by keyword only."""
    monkeypatch.setattr(queues, "_queues", dict(queues.registered()))  # (defined here only)
    q = Queue("tq_dbos_order", 4, {"limit": 50, "period": 30}, worker_concurrency=2,
              polling_interval_sec=0.5)
    assert (q.concurrency, q.worker_concurrency, q.row.rate_limit, q.row.rate_period_ms,
            q.polling_interval_sec) == (4, 2, 50, 30_000, 0.5)
    with pytest.raises(ConfigError, match="limiter must be a dict"):
        Queue("tq_dbos_order_2", 4, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Queue("tq_dbos_order_3", 4, None, 2)  # type: ignore[misc]
    for bad in (0, -1, float("nan"), "1", 7200):
        with pytest.raises(ConfigError, match="polling_interval_sec must be a number of "):
            Queue("tq_dbos_order_4", polling_interval_sec=bad)
    with pytest.raises(ConfigError, match=r"already defined with other settings .*"
                                          r"polling_interval_sec=0.5; now concurrency=4, "):
        Queue("tq_dbos_order", 4, {"limit": 50, "period": 30}, worker_concurrency=2)


def test_retrieve_queue_and_enqueue_workflow(dbos: Any, raw_store: SystemStore) -> None:
    """DBOS.retrieve_queue / enqueue_workflow name a queue by its name: one
    defined in code here, or one only stored (by DBOS.register_queue in
    another process), which this process enqueues on but does not serve; an
    unknown name is a QueueNotFoundError and stores nothing."""
    from relos.store.base import QueueRow

    assert DBOS.retrieve_queue("tq_basic") is basic_queue
    assert DBOS.enqueue_workflow("tq_basic", tq_add, 2, b=3).get_result(
        timeout_seconds=DEADLINE) == 5

    async def main() -> Any:
        handle = await DBOS.enqueue_workflow_async("tq_basic", tq_add, 4)
        assert isinstance(handle, WorkflowHandleAsync)
        return await handle.get_result(timeout_seconds=DEADLINE)

    assert asyncio.run(main()) == 4
    elsewhere = "tq_elsewhere_" + uuid.uuid4().hex[:6]
    raw_store.save_queue(QueueRow(elsewhere, concurrency=3, defined_by="runtime", updated_at=1))
    stored = DBOS.retrieve_queue(elsewhere)
    assert (stored.name, stored.concurrency) == (elsewhere, 3)
    waiting = DBOS.enqueue_workflow(elsewhere, tq_add, 1)
    assert waiting.get_status().queue_name == elsewhere
    assert elsewhere not in queues.registered()
    time.sleep(1.5)  # (this process polls every 0.1-1 s: it would have run it by now)
    assert status_of(waiting) == ENQUEUED
    before = len(DBOS.list_workflows())
    with pytest.raises(QueueNotFoundError, match="no queue named 'tq_nowhere': define it"):
        DBOS.enqueue_workflow("tq_nowhere", tq_add, 1)
    assert len(DBOS.list_workflows()) == before


def test_a_queue_asks_to_be_polled_more_often(
        db_url: str, raw_store: SystemStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle executor looks for a queue's work every polling_interval_sec
    when that is shorter than its own poll interval: work it hears nothing
    about (no LISTEN/NOTIFY, written by another process) starts within it."""
    from relos.dbos import _workflow_info
    from relos.store.base import ENQUEUED as ENQ
    from relos.store.base import WorkflowRow

    monkeypatch.setattr(queues, "_queues", dict(queues.registered()))  # (defined here only)
    name = "tq_polled_" + uuid.uuid4().hex[:6]
    polled = Queue(name, polling_interval_sec=0.05)
    with launched(db_url, listen=[polled], poll_interval_seconds=60.0,
                  use_listen_notify=False):
        time.sleep(0.3)  # (the first rounds have found nothing: the dequeuer waits)
        now = int(time.time() * 1000)
        wid = "tq-polled-" + uuid.uuid4().hex
        raw_store.enqueue([WorkflowRow(wid, ENQ, _workflow_info(tq_add).name, "elsewhere",
                                       now, now, inputs='{"args": [20], "kwargs": {}}',
                                       queue_name=name)])
        # Within the test's deadline, far less than the executor's 60 s poll.
        assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=DEADLINE) == 20


# --- cancellation and timeouts ---------------------------------------------------------


def blocked_cancel_queue(tag: str, gate: str) -> tuple[Any, Any]:
    """The cancel queue (concurrency 1) running a workflow until ``gate``
    opens, and a second one ENQUEUED behind it: their handles."""
    blocker = cancel_queue.enqueue(tq_gated, tag, "blocker", gate)
    wait_until(lambda: running(tag) == 1, "the blocker to run")
    return blocker, cancel_queue.enqueue(tq_timed, tag, "waiting")


def test_cancel_enqueued_and_delayed_workflows(dbos: Any) -> None:
    tag, gate = new_tag(), new_gate()
    blocker, waiting = blocked_cancel_queue(tag, gate)
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


def test_list_queued_workflows(dbos: Any) -> None:
    """The unfinished workflows of queues, by queue and status; a finished one
    leaves that list and stays in list_workflows(queue_name=...)."""
    tag, gate = new_tag(), new_gate()
    blocker, waiting = blocked_cancel_queue(tag, gate)
    with SetEnqueueOptions(delay_seconds=60):
        delayed = basic_queue.enqueue(tq_timed, tag, "delayed")
    done = basic_queue.enqueue(tq_add, 1, 2)
    assert done.get_result(timeout_seconds=DEADLINE) == 3
    DBOS.start_workflow(tq_add, 5).get_result(timeout_seconds=DEADLINE)  # (no queue)

    def ids(statuses: list[Any]) -> list[str]:
        return [s.workflow_id for s in statuses]

    def oldest_first(*handles: Any) -> list[str]:
        # (the listings' order: creation time, then ID for workflows created in
        # the same millisecond, whose IDs need not sort in enqueue order)
        return [s.workflow_id for s in sorted((h.get_status() for h in handles),
                                              key=lambda s: (s.created_at, s.workflow_id))]

    assert ids(DBOS.list_queued_workflows()) == oldest_first(blocker, waiting, delayed)
    assert ids(DBOS.list_queued_workflows(queue_name="tq_cancel", sort_desc=True)) == \
        oldest_first(blocker, waiting)[::-1]
    assert ids(DBOS.list_queued_workflows(status=DELAYED)) == [delayed.workflow_id]
    assert ids(DBOS.list_queued_workflows(status=[ENQUEUED, "PENDING"], limit=1)) == \
        oldest_first(blocker, waiting)[:1]
    listed = DBOS.list_queued_workflows(queue_name="tq_cancel", load_input=False)
    assert [(s.queue_name, s.input) for s in listed] == [("tq_cancel", None)] * 2
    assert ids(DBOS.list_workflows(queue_name="tq_basic")) == oldest_first(delayed, done)
    assert DBOS.list_queued_workflows(queue_name="no such queue") == []
    with pytest.raises(ConfigError, match="unknown workflow status 'QUEUED'"):
        DBOS.list_queued_workflows(status="QUEUED")
    gates[gate].set()
    DBOS.cancel_workflow(delayed.workflow_id)
    for h in (blocker, waiting):
        h.get_result(timeout_seconds=DEADLINE)
    assert DBOS.list_queued_workflows() == []
    assert ids(DBOS.list_workflows(queue_name="tq_cancel")) == oldest_first(blocker, waiting)


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
def test_another_processs_enqueue_wakes_an_idle_dequeuer_at_once(
        db_url: str, backend: str, tmp_path: Path) -> None:
    """PostgreSQL announces the enqueue (LISTEN/NOTIFY); on SQLite the
    listener sees the file's commit count move."""
    # A 10 s poll: only a wake-up can make the dequeuer react in < 2 s
    # (a woken start takes tens of milliseconds; the margin is for a busy host).
    with launched(db_url, poll_interval_seconds=10.0, use_listen_notify=True):
        ids = enqueue_from_another_process(db_url, tmp_path, 3)
        latencies = []
        for wid in ids:
            enqueued_at, step_at = DBOS.retrieve_workflow(wid).get_result(
                timeout_seconds=DEADLINE)
            latencies.append(step_at - enqueued_at)
    assert max(latencies) < 2.0, f"enqueue-to-start latencies: {latencies}"


@pytest.mark.slow
def test_without_listen_notify_polling_finds_the_work(
        db_url: str, backend: str, tmp_path: Path) -> None:
    with launched(db_url, use_listen_notify=False):
        [wid] = enqueue_from_another_process(db_url, tmp_path, 1)
        enqueued_at, step_at = DBOS.retrieve_workflow(wid).get_result(timeout_seconds=DEADLINE)
    assert 0 <= step_at - enqueued_at < 5.0


@pytest.mark.parametrize("listen", [None, []], ids=["dequeuing", "enqueue-only"])
def test_only_a_dequeuing_process_hears_other_processes_enqueues(
        db_url: str, backend: str, listen: list[Any] | None) -> None:
    """A process that dequeues from no queue (a web front end) is not woken
    by every enqueue of the cluster; one that dequeues is."""
    if backend != "postgres":
        pytest.skip("probed by NOTIFY (SQLite: test_enqueue_contract.py)")
    import psycopg

    from relos.dbos import _rt

    with launched(db_url, listen=listen):
        notifier = _rt().notifier
        with notifier.subscribe([("queues", "elsewhere")]) as queued, \
                notifier.subscribe([("wake", "probe")]) as probed, \
                psycopg.connect(db_url, autocommit=True) as other:
            # Notifications arrive in commit order: once the probe sent after
            # the enqueue's announcement is heard, the announcement would be.
            deadline = time.monotonic() + DEADLINE
            while not probed.is_set():
                assert time.monotonic() < deadline, "the listener never listened"
                with other.transaction():
                    other.execute("SELECT pg_notify('relos_queues', 'elsewhere')")
                other.execute("SELECT pg_notify('relos_wake', 'probe')")
                probed.wait(0.05)
            assert queued.is_set() == (listen is None)


def test_a_busy_executor_leaves_out_the_queues_that_came_up_empty(
        db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An executor serving one busy queue among many empty ones claims from
    the empty ones again only when an enqueue to them is heard (or a poll
    interval passed), not in every round: other processes' enqueues are heard
    (PostgreSQL: by NOTIFY; SQLite: by the listener that watches the file's
    commit count), and this process's own in-process."""
    from relos import queues as queues_module
    from relos.dbos import _rt

    monkeypatch.setattr(queues_module, "_queues", {})  # (these queues, for this test only)
    busy = Queue("tq_busy_" + uuid.uuid4().hex[:6])
    empty = [Queue(f"tq_empty_{i}_" + uuid.uuid4().hex[:6]) for i in range(12)]
    with launched(db_url, max_workflow_threads=2, poll_interval_seconds=30.0):
        store = _rt().store
        polls: Counter[str] = Counter()
        dequeue = store.dequeue

        def counted(queue: Any, *args: Any, **kwargs: Any) -> Any:
            polls[queue.name] += 1
            return dequeue(queue, *args, **kwargs)

        monkeypatch.setattr(store, "dequeue", counted)
        handles = busy.enqueue_many(tq_add, [(i,) for i in range(300)])
        assert results(handles) == list(range(300))
        rounds = polls[busy.name]
        assert rounds >= 10, polls  # (two threads: many small claims)
        assert max(polls[q.name] for q in empty) <= 2, polls
        # An enqueue to a queue left out is heard: it runs at once, not at the
        # next poll (30 s), while the busy queue's work goes on.
        more = busy.enqueue_many(tq_add, [(i,) for i in range(300)])
        t0 = time.monotonic()
        late = empty[5].enqueue(tq_add, 1, 2)
        assert late.get_result(timeout_seconds=DEADLINE) == 3
        assert time.monotonic() - t0 < 10.0
        assert results(more) == list(range(300))
