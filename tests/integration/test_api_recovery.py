"""In-process recovery through the public API, on both backends: a workflow
whose owner is gone (its runtime destroyed, or a row left by an executor that no
longer exists) is recovered by ``DBOS.launch`` / ``DBOS.recover_pending_workflows``,
replays its recorded steps, detects non-determinism and is dead-lettered after
too many recoveries."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from dbhelpers import eventually as _eventually
from relos import (
    DBOS,
    ERROR,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    PENDING,
    SUCCESS,
    MaxRecoveryAttemptsExceededError,
    NonDeterministicWorkflowError,
    RecordedError,
)
from relos.store.base import ExecutorRow, StepRow, WorkflowRow

calls: Counter[str] = Counter()


def _launch(db_url: str, **extra: Any) -> None:
    DBOS(config={"system_database_url": db_url, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5, **extra})
    DBOS.launch()


def _store() -> Any:
    from relos import dbos as facade

    assert facade._runtime is not None
    return facade._runtime.store


def _now_ms() -> int:
    return int(time.time() * 1000)


def _insert_orphan(name: str, args: list[Any], *, recovery_attempts: int = 1,
                   steps: list[tuple[int, str, Any]] = (),
                   deadline_epoch_ms: int | None = None, owner: str | None = None) -> str:
    """A PENDING row owned by an executor instance that never existed, with
    ``steps`` (function_id, name, output) already recorded."""
    from relos.serialization import get_serializer

    ser = get_serializer("json")
    wid = f"apirec-orphan-{uuid.uuid4().hex}"
    now = _now_ms()
    store = _store()
    # A recovery pass running meanwhile may claim the row as soon as its owner
    # is dead: a live holder owns it until its steps are recorded.
    holder = "holder-instance-" + uuid.uuid4().hex
    store.register_executor(ExecutorRow(holder, "local", None, "some-other-host", 4242, now,
                                        now))
    assert store.insert_workflow(WorkflowRow(
        workflow_id=wid, status=PENDING, name=name, executor_id="local", created_at=now,
        updated_at=now, inputs=ser.dumps({"args": args, "kwargs": {}}),
        owner=holder, recovery_attempts=recovery_attempts - 1,  # the hand-over adds one
        deadline_epoch_ms=deadline_epoch_ms,
    )) is None
    for fid, step_name, output in steps:
        store.record_step(StepRow(wid, fid, step_name, "step", ser.dumps(output), None,
                                  now, now))
    dead = owner or "dead-instance-" + uuid.uuid4().hex
    assert store.claim_workflow(wid, holder, dead, "local", now) is not None
    return wid


def _wait_for_launch_recovery() -> None:
    """Let the one-off recovery pass that launch starts finish."""
    _eventually(lambda: not any(t.name == "relos-recovery" and t.is_alive()
                                for t in threading.enumerate()))


@DBOS.step()
def apirec_step(tag: str) -> str:
    calls[tag] += 1
    return f"{tag}#{calls[tag]}"


@DBOS.workflow()
def apirec_sleepy(seconds: float) -> list[str]:
    first = apirec_step("first")  # 0
    DBOS.sleep(seconds)  # 1
    return [first, apirec_step("second")]  # 2


@DBOS.workflow()
def apirec_two_steps(x: int) -> list[str]:
    return [apirec_step(f"a{x}"), apirec_step(f"b{x}")]


@DBOS.workflow(max_recovery_attempts=1)
def apirec_fragile() -> Any:
    apirec_step("fragile")
    return DBOS.recv("never", timeout_seconds=30)


@DBOS.workflow()
def apirec_child(x: int) -> str:
    return apirec_step(f"child{x}")


@DBOS.workflow()
def apirec_parent(seconds: float) -> list[str]:
    first = apirec_child(1)  # 0: a finished child
    DBOS.sleep(seconds)  # 1
    second = DBOS.start_workflow(apirec_child, 2).get_result()  # 2
    return [first, second]


@DBOS.workflow()
def apirec_sleepy_child(seconds: float) -> str:
    DBOS.sleep(seconds)
    return apirec_step("sleepy-child")


@DBOS.workflow()
def apirec_waits_for_child(seconds: float) -> str:
    apirec_step("waiting-parent")
    return DBOS.start_workflow(apirec_sleepy_child, seconds).get_result()


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def test_destroyed_runtime_workflow_is_recovered_by_next_launch(dbos: Any, db_url: str) -> None:
    handle = DBOS.start_workflow(apirec_sleepy, 0.8)
    wid = handle.workflow_id
    _eventually(lambda: len(DBOS.list_workflow_steps(wid)) == 2)  # sleeping now
    DBOS.destroy()
    assert calls["first"] == 1 and calls["second"] == 0

    _launch(db_url)
    recovered = DBOS.retrieve_workflow(wid)
    assert recovered.get_result(timeout_seconds=15) == ["first#1", "second#1"]
    assert calls == Counter({"first": 1, "second": 1})  # the recorded step did not re-run
    status = recovered.get_status()
    assert status.status == SUCCESS
    assert status.recovery_attempts == 2
    steps = DBOS.list_workflow_steps(wid)
    assert [s["function_name"] for s in steps] == ["apirec_step", "DBOS.sleep", "apirec_step"]


def test_orphaned_row_recovered_by_recover_pending_workflows(db_url: str) -> None:
    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)  # only explicit recovery here
    try:
        _wait_for_launch_recovery()
        wid = _insert_orphan("apirec_two_steps", [7], steps=[(0, "apirec_step", "a7#1")])
        handles = DBOS.recover_pending_workflows()
        assert [h.workflow_id for h in handles] == [wid]
        assert handles[0].get_result(timeout_seconds=10) == ["a7#1", "b7#1"]
        assert calls == Counter({"b7": 1})  # step 0 was replayed, not run
        status = DBOS.get_workflow_status(wid)
        assert status is not None and status.status == SUCCESS
        assert status.recovery_attempts == 2
        # Nothing left to recover.
        assert DBOS.recover_pending_workflows() == []
    finally:
        DBOS.destroy()


def test_a_dead_executors_workflows_are_taken_over_in_batches(
        db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A take-over claims a dead owner's workflows a batch per statement
    (RECOVERY_BATCH, 4 here): each runs once, replaying what it recorded; a
    workflow of a function this code does not define is left, with an error
    naming it."""
    from relos.runtime import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "RECOVERY_BATCH", 4)
    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)  # only explicit recovery here
    try:
        _wait_for_launch_recovery()
        dead = "dead-instance-" + uuid.uuid4().hex
        fresh = [_insert_orphan("apirec_two_steps", [i], owner=dead) for i in range(7)]
        replayed = [_insert_orphan("apirec_two_steps", [i], owner=dead,
                                   steps=[(0, "apirec_step", f"a{i}#0")]) for i in (7, 8, 9)]
        unknown = _insert_orphan("apirec_not_defined_here", [0], owner=dead)
        with caplog.at_level(logging.ERROR, logger="relos"):
            handles = DBOS.recover_pending_workflows()
        assert sorted(h.workflow_id for h in handles) == sorted(fresh + replayed)
        results = {h.workflow_id: h.get_result(timeout_seconds=10) for h in handles}
        assert [results[w] for w in fresh] == [[f"a{i}#1", f"b{i}#1"] for i in range(7)]
        assert [results[w] for w in replayed] == [[f"a{i}#0", f"b{i}#1"] for i in (7, 8, 9)]
        assert calls == Counter({**{f"a{i}": 1 for i in range(7)},
                                 **{f"b{i}": 1 for i in range(10)}})
        for wid in fresh + replayed:
            status = DBOS.get_workflow_status(wid)
            assert status is not None and (status.status, status.recovery_attempts) == (
                SUCCESS, 2)
        left = _store().get_workflow(unknown)
        assert left is not None and (left.status, left.owner) == (PENDING, dead)
        assert unknown in caplog.text and "apirec_not_defined_here" in caplog.text
    finally:
        DBOS.destroy()


def test_a_workflow_claimed_by_a_take_over_that_then_fails_is_not_stranded(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The take-over claimed the workflows, then could not read their steps
    (the database went away a moment): they are PENDING under this live
    process, which no other recovers, so this one starts them again later."""
    from relos import errors

    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)  # only explicit recovery here
    try:
        _wait_for_launch_recovery()
        store = _store()
        wids = [_insert_orphan("apirec_two_steps", [i]) for i in (1, 2)]
        real = store.load_steps_many

        def fails_once(ids: list[str]) -> Any:
            monkeypatch.setattr(store, "load_steps_many", real)
            raise errors.StoreError("the database went away a moment")

        monkeypatch.setattr(store, "load_steps_many", fails_once)
        DBOS.recover_pending_workflows()  # (claims both, then fails: logged)
        results = [DBOS.retrieve_workflow(w).get_result(timeout_seconds=10) for w in wids]
        assert results == [["a1#1", "b1#1"], ["a2#1", "b2#1"]]
    finally:
        DBOS.destroy()


def test_orphaned_row_recovered_in_the_background(dbos: Any) -> None:
    wid = _insert_orphan("apirec_two_steps", [8])
    assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=10) == ["a8#1", "b8#1"]
    assert calls == Counter({"a8": 1, "b8": 1})


def test_recovered_parent_reuses_its_finished_child(dbos: Any, db_url: str) -> None:
    wid = "apirec-parent-" + uuid.uuid4().hex
    from relos import SetWorkflowID

    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(apirec_parent, 0.8)
    _eventually(lambda: len(DBOS.list_workflow_steps(wid)) == 2)  # sleeping now
    DBOS.destroy()
    _launch(db_url)
    assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=15) == [
        "child1#1", "child2#1"
    ]
    assert calls == Counter({"child1": 1, "child2": 1})
    assert handle.workflow_id == wid
    steps = DBOS.list_workflow_steps(wid)
    assert [s["child_workflow_id"] for s in steps] == [f"{wid}-0", None, f"{wid}-2"]
    assert [s.workflow_id for s in DBOS.list_workflows(name="apirec_child")] == [
        f"{wid}-0", f"{wid}-2"
    ]


def test_destroy_while_a_parent_waits_for_its_child(dbos: Any, db_url: str) -> None:
    # Shutting down interrupts the child; the parent waiting for it must stay
    # PENDING (to be recovered), not be recorded as failed.
    wid = "apirec-waiting-parent-" + uuid.uuid4().hex
    from relos import SetWorkflowID

    with SetWorkflowID(wid):
        DBOS.start_workflow(apirec_waits_for_child, 0.8)
    child_id = f"{wid}-1"
    _eventually(lambda: DBOS.get_workflow_status(child_id) is not None
                and len(DBOS.list_workflow_steps(child_id)) == 1)  # child sleeping
    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)
    _wait_for_launch_recovery()
    assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=15) == "sleepy-child#1"
    status = DBOS.get_workflow_status(wid)
    assert status is not None and status.status == SUCCESS
    assert calls == Counter({"waiting-parent": 1, "sleepy-child": 1})


def test_recovered_workflow_past_its_deadline_is_cancelled(db_url: str) -> None:
    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)
    try:
        _wait_for_launch_recovery()
        wid = _insert_orphan("apirec_two_steps", [11], deadline_epoch_ms=_now_ms() - 1000)
        assert DBOS.recover_pending_workflows() == []
        status = DBOS.get_workflow_status(wid)
        assert status is not None and status.status == "CANCELLED"
        assert calls == Counter()
    finally:
        DBOS.destroy()


def test_step_name_mismatch_fails_with_non_deterministic_error(db_url: str) -> None:
    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)
    try:
        _wait_for_launch_recovery()
        wid = _insert_orphan("apirec_two_steps", [9],
                             steps=[(0, "apirec_some_other_step", "recorded")])
        [handle] = DBOS.recover_pending_workflows()
        with pytest.raises((NonDeterministicWorkflowError, RecordedError),
                           match="not deterministic"):
            handle.get_result(timeout_seconds=10)
        status = DBOS.get_workflow_status(wid)
        assert status is not None and status.status == ERROR
        assert "apirec_some_other_step" in str(status.error)
        assert "apirec_step" in str(status.error)
        assert calls == Counter()  # nothing ran
    finally:
        DBOS.destroy()


def test_recorded_non_deterministic_error_keeps_its_type(dbos: Any) -> None:
    wid = _insert_orphan("apirec_two_steps", [10], steps=[(0, "apirec_renamed", "x")])
    _eventually(lambda: (DBOS.get_workflow_status(wid) or object()).status == ERROR)
    assert isinstance(DBOS.get_workflow_status(wid).error, NonDeterministicWorkflowError)


def test_max_recovery_attempts_dead_letters_the_workflow(dbos: Any, db_url: str) -> None:
    handle = DBOS.start_workflow(apirec_fragile)
    wid = handle.workflow_id
    _eventually(lambda: len(DBOS.list_workflow_steps(wid)) >= 2)  # waiting in recv
    for _ in range(2):  # the owner dies; the next launch claims the row again
        DBOS.destroy()
        _launch(db_url)
        _eventually(lambda: (DBOS.get_workflow_status(wid) or object()).recovery_attempts
                    >= 2)
    status = _eventually(lambda: (s := DBOS.get_workflow_status(wid)) is not None
                         and s.status == MAX_RECOVERY_ATTEMPTS_EXCEEDED and s)
    assert status.recovery_attempts == 3
    with pytest.raises(MaxRecoveryAttemptsExceededError, match=wid):
        DBOS.retrieve_workflow(wid).get_result(timeout_seconds=5)
    assert calls["fragile"] == 1  # the recovered run replayed the step
    # Resume gives it a fresh allowance.
    DBOS.resume_workflow(wid)
    _eventually(lambda: (s := DBOS.get_workflow_status(wid)) is not None
                and s.status == PENDING)
    DBOS.cancel_workflow(wid)


def test_owner_lease_decides_recovery(db_url: str) -> None:
    import socket
    import subprocess
    import sys


    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)
    try:
        _wait_for_launch_recovery()
        store = _store()
        now = _now_ms()
        remote = "remote-instance-" + uuid.uuid4().hex
        store.register_executor(ExecutorRow(remote, "local", None, "some-other-host", 4242,
                                            now, now))
        wid = _insert_orphan("apirec_two_steps", [12])
        store.claim_workflow(wid, DBOS.get_workflow_status(wid).owner, remote, "local", now)
        # A remote owner with a fresh heartbeat is alive: its workflow is left alone.
        assert DBOS.recover_pending_workflows() == []
        assert DBOS.get_workflow_status(wid).owner == remote
        # Once its heartbeat is older than the lease (2 s), the workflow is taken over.
        store.heartbeat(remote, now - 5000)
        [handle] = DBOS.recover_pending_workflows()
        assert handle.workflow_id == wid
        assert handle.get_result(timeout_seconds=10) == ["a12#1", "b12#1"]

        # On this host, an owner whose process is gone is dead at once.
        finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True, check=True)
        local = "local-dead-instance-" + uuid.uuid4().hex
        store.register_executor(ExecutorRow(local, "local", None, socket.gethostname(),
                                            int(finished.stdout), now, _now_ms()))
        wid2 = _insert_orphan("apirec_two_steps", [13])
        store.claim_workflow(wid2, DBOS.get_workflow_status(wid2).owner, local, "local",
                             _now_ms())
        [handle2] = DBOS.recover_pending_workflows()
        assert handle2.get_result(timeout_seconds=10) == ["a13#1", "b13#1"]
    finally:
        DBOS.destroy()


def test_a_process_started_during_a_recovery_scan_keeps_its_workflows(db_url: str) -> None:
    """A process that registers and starts a workflow while another one's
    recovery pass runs (after it read which executors are alive, before it
    read the PENDING workflows) is alive: its workflow is not taken over."""
    DBOS.destroy()
    _launch(db_url, recovery_interval_seconds=3600)
    try:
        _wait_for_launch_recovery()
        store = _store()
        newcomer = "newcomer-instance-" + uuid.uuid4().hex
        started: list[str] = []
        scan = store.find_recoverable

        def scan_after_a_newcomer_starts(executor_ids: list[str], **kw: Any) -> Any:
            if not started:  # (between the executors read and the workflows read)
                now = _now_ms()
                store.register_executor(ExecutorRow(newcomer, "local", None,
                                                    "some-other-host", 4242, now, now))
                wid = f"apirec-newcomer-{uuid.uuid4().hex}"
                assert store.insert_workflow(WorkflowRow(
                    workflow_id=wid, status=PENDING, name="apirec_two_steps",
                    executor_id="local", created_at=now, updated_at=now,
                    inputs='{"args": [14], "kwargs": {}}', owner=newcomer)) is None
                started.append(wid)
            return scan(executor_ids, **kw)

        store.find_recoverable = scan_after_a_newcomer_starts
        try:
            assert DBOS.recover_pending_workflows() == []
        finally:
            del store.find_recoverable
        [wid] = started
        status = DBOS.get_workflow_status(wid)
        assert (status.status, status.owner, status.recovery_attempts) == (PENDING, newcomer, 1)
    finally:
        DBOS.destroy()


def test_unregistered_workflow_row_is_left_alone(dbos: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="relos"):
        wid = _insert_orphan("apirec_no_such_function", [1])
        before = DBOS.get_workflow_status(wid)
        assert before is not None
        assert DBOS.recover_pending_workflows() == []
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(wid in m and "apirec_no_such_function" in m and "not registered" in m
               for m in messages), messages
    after = DBOS.get_workflow_status(wid)
    assert after is not None
    assert after.status == PENDING
    assert after.owner == before.owner
    assert after.recovery_attempts == before.recovery_attempts == 1
    assert after.updated_at == before.updated_at


@DBOS.workflow()
async def apirec_async_sleepy(seconds: float) -> list[str]:
    first = apirec_step("async-first")
    await DBOS.sleep_async(seconds)
    return [first, apirec_step("async-second")]


def test_async_workflow_recovered_after_destroy(dbos: Any, db_url: str) -> None:
    handle = DBOS.start_workflow(apirec_async_sleepy, 0.8)
    wid = handle.workflow_id
    _eventually(lambda: len(DBOS.list_workflow_steps(wid)) == 2)  # sleeping now
    DBOS.destroy()
    _launch(db_url)
    assert DBOS.retrieve_workflow(wid).get_result(timeout_seconds=15) == [
        "async-first#1", "async-second#1"
    ]
    assert calls == Counter({"async-first": 1, "async-second": 1})


def test_a_start_never_claims_a_workflow_this_process_claimed(dbos: Any) -> None:
    # A PENDING row owned by this very process is one it claimed and is about
    # to run (recovery and dequeue claim, then load and start): a start with
    # the same ID must wait for that run, not claim the row a second time.
    from relos import SetWorkflowID
    from relos import dbos as facade

    assert facade._runtime is not None
    wid = _insert_orphan("apirec_two_steps", [21], owner=facade._runtime.instance_id)
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(apirec_two_steps, 21)
    assert handle.workflow_id == wid
    with pytest.raises(TimeoutError):
        handle.get_result(timeout_seconds=0.5)
    assert calls == Counter()
    assert DBOS.get_workflow_status(wid).status == PENDING
