"""Suspended workflows through the public API, on both backends: a workflow
waiting in DBOS.sleep, DBOS.recv or DBOS.get_event gives its thread back and is
resumed by replay when its time comes or what it waits for arrives.

Most tests run with ``suspend_after_seconds = 0`` (every wait is suspended at
once) and observe a suspension in the workflow's row: PENDING, no owner, a
wake-up time, and not running in this process.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from dbhelpers import eventually
from relos import (
    DBOS,
    SUCCESS,
    AwaitedWorkflowCancelledError,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from relos.store.base import CANCELLED, PENDING, WorkflowRow

#: Executions of each (workflow ID, step) pair, in this process.
runs: Counter[tuple[str, str]] = Counter()


@DBOS.step()
def susp_effect(tag: str) -> str:
    runs[(DBOS.workflow_id or "-", tag)] += 1
    return f"{tag}-done"


@DBOS.workflow()
def susp_sleeper(seconds: float) -> list[Any]:
    before = susp_effect("before")
    DBOS.sleep(seconds)
    after = susp_effect("after")
    return [before, after, time.time()]


@DBOS.workflow()
def susp_receiver(topic: str, timeout: float, again: float) -> list[Any]:
    susp_effect("before")
    first = DBOS.recv(topic, timeout_seconds=timeout)
    second = DBOS.recv(topic, timeout_seconds=again)
    return [first, second]


@DBOS.workflow()
def susp_event_reader(workflow_id: str, key: str, timeout: float) -> Any:
    susp_effect("before")
    return DBOS.get_event(workflow_id, key, timeout_seconds=timeout)


@DBOS.workflow()
def susp_publisher(key: str, value: Any) -> None:
    DBOS.set_event(key, value)


@DBOS.workflow()
async def susp_async_sleeper(seconds: float) -> str:
    await DBOS.sleep_async(seconds)
    return "async-done"


def _rt() -> Any:
    from relos import dbos as facade

    return facade._runtime


def row(workflow_id: str) -> WorkflowRow:
    found = _rt().store.get_workflow(workflow_id)
    assert found is not None
    return found


def is_suspended(workflow_id: str) -> bool:
    r = row(workflow_id)
    return (r.status == PENDING and r.owner is None and r.wake_at_epoch_ms is not None
            and _rt().active(workflow_id) is None)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_suspended_sleep_resumes_by_replay_without_rerunning_steps(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("sleep")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_sleeper, 1.0)
    eventually(lambda: is_suspended(wid))
    wake_at = row(wid).wake_at_epoch_ms
    assert runs[(wid, "before")] == 1 and runs[(wid, "after")] == 0

    before, after, resumed_at = handle.get_result(timeout_seconds=30)
    assert (before, after) == ("before-done", "after-done")
    assert resumed_at * 1000 >= wake_at  # not resumed before its time
    assert runs[(wid, "before")] == 1 and runs[(wid, "after")] == 1
    done = row(wid)
    assert done.status == SUCCESS and done.wake_at_epoch_ms is None
    names = [s["function_name"] for s in DBOS.list_workflow_steps(wid)]
    assert names.count("DBOS.sleep") == 1


def test_a_direct_call_returns_the_result_of_its_suspended_workflow(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("direct")
    with SetWorkflowID(wid):
        before, after, _ = susp_sleeper(0.3)
    assert (before, after) == ("before-done", "after-done")
    assert runs[(wid, "before")] == 1


def test_a_short_sleep_under_the_threshold_keeps_its_thread(launch):
    launch(suspend_after_seconds=30)
    wid = new_id("short")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_sleeper, 0.3)
    assert handle.get_result(timeout_seconds=30)[1] == "after-done"
    history = [s["function_name"] for s in DBOS.list_workflow_steps(wid)]
    assert history == ["susp_effect", "DBOS.sleep", "susp_effect"]
    assert row(wid).recovery_attempts == 1


def test_recv_resumes_when_the_message_arrives_and_takes_it_once(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("recv")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_receiver, "t", 60, 0.5)
    eventually(lambda: is_suspended(wid))
    assert row(wid).waiting_for is not None
    DBOS.send(wid, {"n": 1}, topic="t")
    # The first recv gets the message; the second finds none and times out
    # (suspended again until its timeout).
    assert handle.get_result(timeout_seconds=30) == [{"n": 1}, None]
    assert runs[(wid, "before")] == 1
    recvs = [s for s in DBOS.list_workflow_steps(wid) if s["function_name"] == "DBOS.recv"]
    assert [s["output"] for s in recvs] == [{"n": 1}, None]


def test_recv_waits_in_its_thread_first_then_is_suspended(launch):
    launch(suspend_after_seconds=0.3)
    wid = new_id("recv-later")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_receiver, "t", 60, 0.1)
    eventually(lambda: is_suspended(wid))
    DBOS.send(wid, "late", topic="t")
    assert handle.get_result(timeout_seconds=30) == ["late", None]


def test_a_suspended_recv_times_out(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("recv-timeout")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_receiver, "t", 1.0, 0.0)
    eventually(lambda: is_suspended(wid))
    timeout_at = row(wid).wake_at_epoch_ms
    assert handle.get_result(timeout_seconds=30) == [None, None]
    steps = DBOS.list_workflow_steps(wid)
    first_recv = next(s for s in steps if s["function_name"] == "DBOS.recv")
    assert first_recv["completed_at_epoch_ms"] >= timeout_at
    assert runs[(wid, "before")] == 1


def test_get_event_resumes_when_the_event_is_set(launch):
    launch(suspend_after_seconds=0)
    publisher, reader = new_id("pub"), new_id("reader")
    with SetWorkflowID(reader):
        handle = DBOS.start_workflow(susp_event_reader, publisher, "ready", 60)
    eventually(lambda: is_suspended(reader))
    with SetWorkflowID(publisher):
        DBOS.start_workflow(susp_publisher, "ready", [1, 2, 3]).get_result()
    assert handle.get_result(timeout_seconds=30) == [1, 2, 3]
    assert runs[(reader, "before")] == 1


def test_waiting_workflows_release_their_threads(launch):
    # Two threads, eight workflows waiting at once: possible only because
    # each one waiting gives its thread back.
    launch(suspend_after_seconds=0, max_workflow_threads=2)
    ids = [new_id(f"many{i}") for i in range(8)]
    handles = []
    for wid in ids:
        with SetWorkflowID(wid):
            handles.append(DBOS.start_workflow(susp_receiver, "t", 60, 0.0))
    eventually(lambda: all(is_suspended(w) for w in ids), timeout=30)
    assert _rt().active_ids() == []
    assert _rt().free_workflow_slots() == 2
    for i, wid in enumerate(ids):
        DBOS.send(wid, i, topic="t")
    assert [h.get_result(timeout_seconds=30) for h in handles] == [[i, None] for i in range(8)]


def test_cancelling_a_suspended_workflow_stops_it_for_good(launch):
    launch(suspend_after_seconds=0)
    wid, witness = new_id("cancel"), new_id("witness")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_sleeper, 1.0)
    eventually(lambda: is_suspended(wid))
    DBOS.cancel_workflow(wid)
    assert row(wid).status == CANCELLED
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=30)
    # A workflow due later than the cancelled one was resumed and finished,
    # so the waker went past the cancelled one's wake-up time: it left it.
    cancelled_wake = row(wid).wake_at_epoch_ms
    with SetWorkflowID(witness):
        DBOS.start_workflow(susp_sleeper, 1.2).get_result(timeout_seconds=30)
    assert row(witness).wake_at_epoch_ms is None
    assert cancelled_wake is not None
    assert row(wid).status == CANCELLED
    assert runs[(wid, "after")] == 0


def test_the_deadline_of_a_suspended_workflow_still_fires(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("deadline")
    with SetWorkflowID(wid), SetWorkflowTimeout(1.0):
        handle = DBOS.start_workflow(susp_sleeper, 3600)
    eventually(lambda: is_suspended(wid))
    r = row(wid)
    assert r.wake_at_epoch_ms is not None and r.deadline_epoch_ms is not None
    assert r.wake_at_epoch_ms <= r.deadline_epoch_ms  # woken at its deadline at the latest
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=30)
    assert runs[(wid, "after")] == 0


def test_an_async_workflow_sleep_is_suspended_too(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("async")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_async_sleeper, 0.5)
    eventually(lambda: is_suspended(wid))
    assert handle.get_result(timeout_seconds=30) == "async-done"


def test_suspension_can_be_turned_off(launch):
    launch(suspend_after_seconds=None)
    wid = new_id("off")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(susp_receiver, "t", 60, 0.0)
    eventually(lambda: row(wid).wake_at_epoch_ms is None
               and _rt().active(wid) is not None
               and any(s["function_name"] == "DBOS.sleep"
                       for s in DBOS.list_workflow_steps(wid)))
    DBOS.send(wid, "x", topic="t")
    assert handle.get_result(timeout_seconds=30) == ["x", None]


def test_resume_leaves_a_suspended_workflow_alone_and_revives_a_cancelled_one(launch):
    launch(suspend_after_seconds=0)
    wid = new_id("resume")
    with SetWorkflowID(wid), SetWorkflowTimeout(600):
        handle = DBOS.start_workflow(susp_sleeper, 1.0)
    eventually(lambda: is_suspended(wid))
    before = row(wid)
    DBOS.resume_workflow(wid)  # not stuck: nothing to do
    after = row(wid)
    assert (after.deadline_epoch_ms, after.wake_at_epoch_ms, after.recovery_attempts) == (
        before.deadline_epoch_ms, before.wake_at_epoch_ms, before.recovery_attempts)
    DBOS.cancel_workflow(wid)
    DBOS.resume_workflow(wid)  # PENDING again; its sleep goes on where it was
    assert handle.get_result(timeout_seconds=30)[1] == "after-done"
    assert runs[(wid, "before")] == 1 and runs[(wid, "after")] == 1
