"""Workflow management through the public API: listing with filters, steps,
cancel, resume, fork and timeouts. Both backends."""

from __future__ import annotations

import datetime
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from dbhelpers import eventually as _eventually
from relos import (
    CANCELLED,
    DBOS,
    ERROR,
    PENDING,
    SUCCESS,
    AwaitedWorkflowCancelledError,
    ConfigError,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowCancelledError,
)

calls: Counter[str] = Counter()


def _status(workflow_id: str) -> str | None:
    s = DBOS.get_workflow_status(workflow_id)
    return None if s is None else s.status


class ApiMgmtBoom(Exception):
    pass


@DBOS.step()
def apimgmt_count(tag: str) -> str:
    calls[tag] += 1
    return f"{tag}#{calls[tag]}"


@DBOS.workflow()
def apimgmt_echo(x: Any) -> Any:
    return x


@DBOS.workflow()
def apimgmt_fails() -> None:
    raise ApiMgmtBoom("listed as error")


@DBOS.workflow()
def apimgmt_waiter() -> list[Any]:
    first = apimgmt_count("before")  # 0
    msg = DBOS.recv("go", timeout_seconds=30)  # 1 (and 2: its deadline)
    last = apimgmt_count("after")  # 3
    return [first, msg, last]


@DBOS.workflow()
def apimgmt_four_steps() -> list[str]:
    return [apimgmt_count("s0"), apimgmt_count("s1"), apimgmt_count("s2"), apimgmt_count("s3")]


@DBOS.step()
def apimgmt_slow_step() -> int:
    calls["slow"] += 1
    time.sleep(0.3)
    return calls["slow"]


@DBOS.workflow()
def apimgmt_slow_steps() -> list[int]:
    return [apimgmt_slow_step(), apimgmt_slow_step()]


@DBOS.workflow()
def apimgmt_sleeper(seconds: float) -> str:
    apimgmt_count("sleeper")
    DBOS.sleep(seconds)
    return "woke"


@DBOS.workflow()
def apimgmt_timeout_parent(seconds: float) -> str:
    time.sleep(0.05)  # the child starts measurably later than the parent
    handle = DBOS.start_workflow(apimgmt_sleeper, seconds)
    return handle.get_result()


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


# --- listing ----------------------------------------------------------------------------


def test_list_workflows_filters(dbos: Any) -> None:
    ids = []
    for i in range(5):
        wid = f"apimgmt-list-{i}-{uuid.uuid4().hex[:8]}"
        with SetWorkflowID(wid):
            apimgmt_echo(i)
        ids.append(wid)
        time.sleep(0.003)  # distinct created_at milliseconds
    with pytest.raises(ApiMgmtBoom):
        apimgmt_fails()

    everything = DBOS.list_workflows()
    assert len(everything) == 6
    assert [s.workflow_id for s in everything[:5]] == ids  # oldest first
    created = [s.created_at for s in everything]
    assert created == sorted(created)

    assert [s.workflow_id for s in DBOS.list_workflows(sort_desc=True)][1:] == ids[::-1]
    assert [s.workflow_id for s in DBOS.list_workflows(name="apimgmt_echo")] == ids
    assert [s.name for s in DBOS.list_workflows(status=ERROR)] == ["apimgmt_fails"]
    assert len(DBOS.list_workflows(status=[ERROR, SUCCESS])) == 6
    assert DBOS.list_workflows(status=CANCELLED) == []
    assert [s.workflow_id for s in DBOS.list_workflows(limit=2)] == ids[:2]
    assert [s.workflow_id for s in DBOS.list_workflows(limit=2, offset=2)] == ids[2:4]
    assert [s.workflow_id for s in DBOS.list_workflows(offset=4, name="apimgmt_echo")] == ids[4:]
    assert [s.workflow_id for s in DBOS.list_workflows(limit=1, sort_desc=True,
                                                       name="apimgmt_echo")] == [ids[4]]
    picked = DBOS.list_workflows(workflow_ids=[ids[3], ids[1], "apimgmt-unknown"])
    assert [s.workflow_id for s in picked] == [ids[1], ids[3]]
    assert DBOS.list_workflows(workflow_ids=[]) == []

    by_id = {s.workflow_id: s for s in everything}
    t1, t3 = by_id[ids[1]].created_at, by_id[ids[3]].created_at
    window = DBOS.list_workflows(start_time=t1, end_time=t3, name="apimgmt_echo")
    assert [s.workflow_id for s in window] == ids[1:4]
    assert [s.workflow_id for s in DBOS.list_workflows(start_time=t3, name="apimgmt_echo")] \
        == ids[3:]
    assert [s.workflow_id for s in DBOS.list_workflows(end_time=t1, name="apimgmt_echo")] \
        == ids[:2]
    as_datetime = datetime.datetime.fromtimestamp(t3 / 1000)
    assert [s.workflow_id for s in DBOS.list_workflows(start_time=as_datetime,
                                                       name="apimgmt_echo")] == ids[3:]
    as_iso = datetime.datetime.fromtimestamp((t1 + 1) / 1000).isoformat()
    assert [s.workflow_id for s in DBOS.list_workflows(end_time=as_iso,
                                                       name="apimgmt_echo")] == ids[:2]
    listed = DBOS.list_workflows(workflow_ids=[ids[2]])[0]
    assert listed.input == {"args": (2,), "kwargs": {}} and listed.output == 2
    bare = DBOS.list_workflows(workflow_ids=[ids[2]], load_input=False, load_output=False)[0]
    assert bare.input is None and bare.output is None and bare.status == SUCCESS


def test_list_workflows_rejects_bad_filters(dbos: Any) -> None:
    with pytest.raises(ConfigError, match="status"):
        DBOS.list_workflows(status="DONE")
    with pytest.raises(ConfigError, match="limit"):
        DBOS.list_workflows(limit=-1)


def test_list_workflow_steps(dbos: Any) -> None:
    wid = "apimgmt-steps-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apimgmt_four_steps() == ["s0#1", "s1#1", "s2#1", "s3#1"]
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["function_name"], s["output"], s["error"]) for s in steps] == [
        (i, "apimgmt_count", f"s{i}#1", None) for i in range(4)
    ]
    assert DBOS.list_workflow_steps(DBOS.start_workflow(apimgmt_echo, 1).workflow_id) == []


# --- cancel / resume --------------------------------------------------------------------


def test_cancel_a_workflow_blocked_in_recv(dbos: Any) -> None:
    handle = DBOS.start_workflow(apimgmt_waiter)
    _eventually(lambda: len(DBOS.list_workflow_steps(handle.workflow_id)) >= 2)
    assert handle.get_status().status == PENDING
    start = time.monotonic()
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=10)
    assert time.monotonic() - start < 3
    assert handle.get_status().status == CANCELLED
    with pytest.raises(AwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow(handle.workflow_id).get_result()
    # The step after the wait never ran.
    assert calls["after"] == 0
    # Cancelling again, or cancelling a finished workflow, changes nothing.
    DBOS.cancel_workflow(handle.workflow_id)
    assert handle.get_status().status == CANCELLED
    done = DBOS.start_workflow(apimgmt_echo, "done")
    assert done.get_result() == "done"
    DBOS.cancel_workflow(done.workflow_id)
    assert done.get_status().status == SUCCESS


def test_cancel_written_by_another_process_is_noticed(dbos: Any) -> None:
    # Another process (or the CLI) cancels by writing the row; the run here
    # notices on its own and stops waiting.
    from relos import dbos as facade

    handle = DBOS.start_workflow(apimgmt_waiter)
    _eventually(lambda: len(DBOS.list_workflow_steps(handle.workflow_id)) >= 2)
    assert facade._runtime is not None
    facade._runtime.store.set_workflow_status(handle.workflow_id, CANCELLED,
                                              int(time.time() * 1000))
    start = time.monotonic()
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=10)
    assert time.monotonic() - start < 5
    assert calls["after"] == 0


def test_resume_a_cancelled_workflow_without_rerunning_steps(dbos: Any) -> None:
    handle = DBOS.start_workflow(apimgmt_waiter)
    _eventually(lambda: len(DBOS.list_workflow_steps(handle.workflow_id)) >= 2)
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=10)
    assert calls["before"] == 1

    resumed = DBOS.resume_workflow(handle.workflow_id)
    assert resumed.workflow_id == handle.workflow_id
    _eventually(lambda: _status(handle.workflow_id) == PENDING)
    DBOS.send(handle.workflow_id, "go!", topic="go")
    assert resumed.get_result(timeout_seconds=10) == ["before#1", "go!", "after#1"]
    assert calls == Counter({"before": 1, "after": 1})
    assert handle.get_status().status == SUCCESS
    # Resuming a successful workflow is a no-op.
    assert DBOS.resume_workflow(handle.workflow_id).get_result() == ["before#1", "go!", "after#1"]
    assert calls == Counter({"before": 1, "after": 1})


def test_resume_right_after_cancel_waits_for_the_cancelled_run(dbos: Any) -> None:
    # The cancelled run is still inside a step when resume is called: the two
    # runs must not overlap (which failed one with WorkflowConflictError and
    # left the workflow PENDING forever).
    handle = DBOS.start_workflow(apimgmt_slow_steps)
    _eventually(lambda: calls["slow"] == 1)
    DBOS.cancel_workflow(handle.workflow_id)
    resumed = DBOS.resume_workflow(handle.workflow_id)
    # The cancelled run's step was not recorded, so the resumed run runs it again.
    assert resumed.get_result(timeout_seconds=10) == [2, 3]
    assert calls["slow"] == 3
    assert handle.get_status().status == SUCCESS


def test_resume_a_failed_workflow(dbos: Any) -> None:
    with pytest.raises(ApiMgmtBoom):
        apimgmt_fails()
    [failed] = DBOS.list_workflows(status=ERROR)
    handle = DBOS.resume_workflow(failed.workflow_id)
    with pytest.raises(ApiMgmtBoom, match="listed as error"):
        handle.get_result(timeout_seconds=10)
    assert handle.get_status().status == ERROR


# --- fork -------------------------------------------------------------------------------


def test_fork_replays_steps_before_start_step(dbos: Any) -> None:
    wid = "apimgmt-fork-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apimgmt_four_steps() == ["s0#1", "s1#1", "s2#1", "s3#1"]
    fork = DBOS.fork_workflow(wid, 2)
    assert fork.workflow_id != wid
    assert fork.get_result(timeout_seconds=10) == ["s0#1", "s1#1", "s2#2", "s3#2"]
    assert calls == Counter({"s0": 1, "s1": 1, "s2": 2, "s3": 2})
    status = fork.get_status()
    assert status.forked_from == wid
    assert status.status == SUCCESS
    assert status.name == "apimgmt_four_steps"
    assert status.input == {"args": (), "kwargs": {}}
    assert [s["output"] for s in DBOS.list_workflow_steps(fork.workflow_id)] == [
        "s0#1", "s1#1", "s2#2", "s3#2"
    ]
    # The original is untouched.
    assert DBOS.retrieve_workflow(wid).get_result() == ["s0#1", "s1#1", "s2#1", "s3#1"]


def test_fork_from_zero_reruns_everything_and_id_can_be_chosen(dbos: Any) -> None:
    wid = "apimgmt-fork0-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        apimgmt_four_steps()
    with SetWorkflowID(wid + "-copy"):
        fork = DBOS.fork_workflow(wid, 0)
    assert fork.workflow_id == wid + "-copy"
    assert fork.get_result(timeout_seconds=10) == ["s0#2", "s1#2", "s2#2", "s3#2"]
    # Forking past the last step replays everything.
    assert DBOS.fork_workflow(wid, 10).get_result(timeout_seconds=10) == [
        "s0#1", "s1#1", "s2#1", "s3#1"
    ]
    assert calls == Counter({"s0": 2, "s1": 2, "s2": 2, "s3": 2})


# --- timeouts ---------------------------------------------------------------------------


def test_workflow_timeout_cancels_a_sleeping_workflow(dbos: Any) -> None:
    start = time.monotonic()
    with SetWorkflowTimeout(0.5):
        handle = DBOS.start_workflow(apimgmt_sleeper, 10)
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=10)
    assert time.monotonic() - start < 4
    status = handle.get_status()
    assert status.status == CANCELLED
    assert status.workflow_timeout_ms == 500
    assert status.workflow_deadline_epoch_ms is not None
    assert status.workflow_deadline_epoch_ms - status.created_at == pytest.approx(500, abs=50)


def test_children_inherit_the_deadline(dbos: Any) -> None:
    wid = "apimgmt-timeout-parent-" + uuid.uuid4().hex
    start = time.monotonic()
    with SetWorkflowTimeout(0.5), SetWorkflowID(wid):
        handle = DBOS.start_workflow(apimgmt_timeout_parent, 10)
    with pytest.raises(AwaitedWorkflowCancelledError):
        handle.get_result(timeout_seconds=10)
    child_id = f"{wid}-0"
    _eventually(lambda: _status(child_id) == CANCELLED, timeout=5)
    assert time.monotonic() - start < 5
    parent, child = handle.get_status(), DBOS.get_workflow_status(child_id)
    assert child is not None
    assert parent.status == CANCELLED
    assert child.parent_workflow_id == wid
    assert child.workflow_deadline_epoch_ms == parent.workflow_deadline_epoch_ms


def test_children_of_a_directly_called_workflow_inherit_its_deadline(dbos: Any) -> None:
    # The SetWorkflowTimeout block around a direct call gives the *called*
    # workflow its deadline; it must not give every child a fresh timeout.
    wid = "apimgmt-timeout-direct-" + uuid.uuid4().hex
    start = time.monotonic()
    with SetWorkflowTimeout(0.5), SetWorkflowID(wid), pytest.raises(
        (WorkflowCancelledError, AwaitedWorkflowCancelledError)
    ):
        apimgmt_timeout_parent(10)
    assert time.monotonic() - start < 5
    child_id = f"{wid}-0"
    _eventually(lambda: _status(child_id) == CANCELLED, timeout=5)
    parent, child = DBOS.get_workflow_status(wid), DBOS.get_workflow_status(child_id)
    assert parent is not None and child is not None
    assert parent.status == CANCELLED
    assert parent.workflow_timeout_ms == 500
    assert child.workflow_timeout_ms is None
    assert child.workflow_deadline_epoch_ms == parent.workflow_deadline_epoch_ms


def test_timeout_not_reached_and_none_removes_it(dbos: Any) -> None:
    with SetWorkflowTimeout(10):
        handle = DBOS.start_workflow(apimgmt_sleeper, 0.01)
        with SetWorkflowTimeout(None):
            unlimited = DBOS.start_workflow(apimgmt_echo, 1)
    assert handle.get_result(timeout_seconds=10) == "woke"
    assert handle.get_status().workflow_timeout_ms == 10_000
    assert unlimited.get_result() == 1
    assert unlimited.get_status().workflow_deadline_epoch_ms is None
    with pytest.raises(ConfigError):
        SetWorkflowTimeout(0)


# --- unknown IDs ------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["retrieve", "cancel", "resume", "fork", "steps"])
def test_unknown_workflow_ids(dbos: Any, operation: str) -> None:
    from relos import NonExistentWorkflowError

    unknown = "apimgmt-unknown-" + uuid.uuid4().hex
    call = {
        "retrieve": lambda: DBOS.retrieve_workflow(unknown),
        "cancel": lambda: DBOS.cancel_workflow(unknown),
        "resume": lambda: DBOS.resume_workflow(unknown),
        "fork": lambda: DBOS.fork_workflow(unknown, 0),
        "steps": lambda: DBOS.list_workflow_steps(unknown),
    }[operation]
    with pytest.raises(NonExistentWorkflowError, match=unknown):
        call()
    assert DBOS.list_workflows() == []
