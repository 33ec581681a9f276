"""Workflows through the public API: results, handles, status, errors, IDs,
children, context properties and logging. Every test runs on SQLite and
PostgreSQL (the ``dbos`` fixture)."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from relos import (
    DBOS,
    ERROR,
    PENDING,
    SUCCESS,
    SetWorkflowID,
    WorkflowConflictError,
    WorkflowHandle,
)

calls: Counter[str] = Counter()
seen: dict[str, Any] = {}


class ApiWfBoom(Exception):
    """A module-level exception: relos can rebuild it from its record."""


@DBOS.step()
def apiwf_double(x: int) -> int:
    calls["apiwf_double"] += 1
    return x * 2


@DBOS.workflow()
def apiwf_add(a: int, b: int = 0) -> int:
    calls["apiwf_add"] += 1
    return apiwf_double(a) + b


@DBOS.workflow()
def apiwf_other(a: int, b: int = 0) -> int:
    return a - b


@DBOS.workflow()
def apiwf_fail(message: str) -> None:
    calls["apiwf_fail"] += 1
    raise ApiWfBoom(message)


@DBOS.workflow()
def apiwf_child(x: int) -> dict[str, Any]:
    return {"id": DBOS.workflow_id, "x": x}


@DBOS.workflow()
def apiwf_parent(x: int) -> list[Any]:
    first = apiwf_child(x)  # function_id 0
    handle = DBOS.start_workflow(apiwf_child, x + 1)  # function_id 1
    second = handle.get_result()
    return [first, second, handle.workflow_id]


@DBOS.step()
def apiwf_context_step() -> dict[str, Any]:
    return {"workflow_id": DBOS.workflow_id, "step_id": DBOS.step_id}


@DBOS.workflow()
def apiwf_context() -> dict[str, Any]:
    outer = {"workflow_id": DBOS.workflow_id, "step_id": DBOS.step_id}
    apiwf_double(1)  # function_id 0
    inner = apiwf_context_step()  # function_id 1
    return {"outer": outer, "inner": inner}


@DBOS.workflow()
def apiwf_waits() -> Any:
    calls["apiwf_waits"] += 1
    return DBOS.recv("go", timeout_seconds=30)


@DBOS.workflow()
def apiwf_logs(text: str) -> None:
    DBOS.logger.info("inside workflow: %s", text)


def apiwf_plain_triple(x: int) -> int:
    calls["apiwf_plain_triple"] += 1
    seen["run_step_ids"] = (DBOS.workflow_id, DBOS.step_id)
    return x * 3


@DBOS.workflow()
def apiwf_run_step(x: int) -> int:
    return DBOS.run_step(apiwf_plain_triple, x) + DBOS.run_step(
        apiwf_plain_triple, x, name="triple-again"
    )


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    seen.clear()


def test_direct_call_returns_result_and_records_success(dbos: Any) -> None:
    assert apiwf_add(2, b=5) == 9
    [status] = DBOS.list_workflows(name="apiwf_add")
    assert status.status == SUCCESS
    assert status.output == 9
    assert status.input == {"args": (2,), "kwargs": {"b": 5}}


def test_start_workflow_handle_and_status_fields(dbos: Any) -> None:
    before = int(time.time() * 1000)
    handle = DBOS.start_workflow(apiwf_add, 3, b=1)
    assert isinstance(handle, WorkflowHandle)
    assert isinstance(handle.workflow_id, str) and handle.workflow_id
    assert handle.get_workflow_id() == handle.workflow_id
    assert handle.get_result() == 7
    status = handle.get_status()
    assert status.workflow_id == handle.workflow_id
    assert status.status == SUCCESS
    assert status.name == "apiwf_add"
    assert status.input == {"args": (3,), "kwargs": {"b": 1}}
    assert status.output == 7
    assert status.error is None
    assert status.executor_id == "local"
    assert isinstance(status.app_version, str) and status.app_version
    assert status.app_version == DBOS.list_workflows(workflow_ids=[handle.workflow_id])[
        0].app_version
    assert before - 1000 <= status.created_at <= status.updated_at <= int(time.time() * 1000)
    assert status.completed_at is not None and status.completed_at >= status.created_at
    assert status.recovery_attempts >= 1
    assert status.parent_workflow_id is None
    assert status.forked_from is None


def test_retrieve_workflow_and_get_workflow_status(dbos: Any) -> None:
    handle = DBOS.start_workflow(apiwf_add, 10)
    again = DBOS.retrieve_workflow(handle.workflow_id)
    assert again.workflow_id == handle.workflow_id
    assert again.get_result() == 20
    status = DBOS.get_workflow_status(handle.workflow_id)
    assert status is not None and status.status == SUCCESS and status.output == 20
    assert DBOS.get_workflow_status("no-such-workflow-" + uuid.uuid4().hex) is None


def test_workflow_exception_recorded_and_reraised_with_original_type(dbos: Any) -> None:
    with pytest.raises(ApiWfBoom, match="direct failure"):
        apiwf_fail("direct failure")
    handle = DBOS.start_workflow(apiwf_fail, "background failure")
    with pytest.raises(ApiWfBoom, match="background failure"):
        handle.get_result()
    status = handle.get_status()
    assert status.status == ERROR
    assert isinstance(status.error, ApiWfBoom)
    assert str(status.error) == "background failure"
    assert status.output is None
    # A second handle (reading the row, not the in-memory future) raises the same.
    with pytest.raises(ApiWfBoom, match="background failure"):
        DBOS.retrieve_workflow(handle.workflow_id).get_result()
    assert calls["apiwf_fail"] == 2


def test_set_workflow_id_is_idempotent(dbos: Any) -> None:
    wid = "apiwf-idem-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apiwf_add(4, b=1) == 9
    assert calls["apiwf_add"] == 1 and calls["apiwf_double"] == 1
    with SetWorkflowID(wid):
        assert apiwf_add(4, b=1) == 9
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(apiwf_add, 4, b=1)
    assert handle.workflow_id == wid
    assert handle.get_result() == 9
    assert calls["apiwf_add"] == 1 and calls["apiwf_double"] == 1
    assert [s.workflow_id for s in DBOS.list_workflows()] == [wid]
    # The ID applies to the next workflow only.
    other = DBOS.start_workflow(apiwf_add, 1)
    assert other.workflow_id != wid


def test_set_workflow_id_also_deduplicates_failed_workflows(dbos: Any) -> None:
    wid = "apiwf-idem-fail-" + uuid.uuid4().hex
    for _ in range(2):
        with SetWorkflowID(wid), pytest.raises(ApiWfBoom, match="once"):
            apiwf_fail("once")
    assert calls["apiwf_fail"] == 1


def test_set_workflow_id_while_the_workflow_is_still_running(dbos: Any) -> None:
    wid = "apiwf-running-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        first = DBOS.start_workflow(apiwf_waits)
    with SetWorkflowID(wid):
        second = DBOS.start_workflow(apiwf_waits)
    assert first.workflow_id == second.workflow_id == wid
    assert second.get_status().status == PENDING
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        second.get_result(timeout_seconds=0.2)
    assert 0.19 <= time.monotonic() - start < 2
    DBOS.send(wid, "released", topic="go")
    assert second.get_result(timeout_seconds=10) == "released"
    assert first.get_result() == "released"
    with SetWorkflowID(wid):
        assert apiwf_waits() == "released"
    assert calls["apiwf_waits"] == 1


def test_existing_id_with_other_workflow_function_conflicts(dbos: Any) -> None:
    wid = "apiwf-conflict-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        apiwf_add(1)
    with SetWorkflowID(wid), pytest.raises(WorkflowConflictError, match="apiwf_add"):
        apiwf_other(1)
    with SetWorkflowID(wid), pytest.raises(WorkflowConflictError):
        DBOS.start_workflow(apiwf_other, 1)
    [status] = DBOS.list_workflows()
    assert status.name == "apiwf_add"


def test_child_workflows_get_ids_derived_from_parent(dbos: Any) -> None:
    wid = "apiwf-parent-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        first, second, second_id = apiwf_parent(5)
    assert first == {"id": f"{wid}-0", "x": 5}
    assert second == {"id": f"{wid}-1", "x": 6}
    assert second_id == f"{wid}-1"
    for fid in (0, 1):
        status = DBOS.get_workflow_status(f"{wid}-{fid}")
        assert status is not None
        assert status.parent_workflow_id == wid
        assert status.name == "apiwf_child"
        assert status.status == SUCCESS
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["function_name"], s["child_workflow_id"]) for s in steps] == [
        (0, "apiwf_child", f"{wid}-0"), (1, "apiwf_child", f"{wid}-1")
    ]
    children = DBOS.list_workflows(name="apiwf_child")
    assert sorted(c.workflow_id for c in children) == [f"{wid}-0", f"{wid}-1"]


def test_workflow_id_and_step_id_inside_and_outside(dbos: Any) -> None:
    assert DBOS.workflow_id is None
    assert DBOS.step_id is None
    wid = "apiwf-ctx-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        got = apiwf_context()
    assert got["outer"] == {"workflow_id": wid, "step_id": None}
    assert got["inner"] == {"workflow_id": wid, "step_id": 1}
    assert DBOS.workflow_id is None and DBOS.step_id is None
    # A step called outside any workflow sees no workflow either.
    assert apiwf_context_step() == {"workflow_id": None, "step_id": None}


def test_logger_records_carry_workflow_id(dbos: Any, caplog: pytest.LogCaptureFixture) -> None:
    wid = "apiwf-log-" + uuid.uuid4().hex
    with caplog.at_level(logging.INFO, logger="relos"), SetWorkflowID(wid):
        apiwf_logs("hello")
        DBOS.logger.info("outside any workflow")
    inside = [r for r in caplog.records if "inside workflow: hello" in r.getMessage()]
    assert len(inside) == 1
    assert inside[0].workflow_id == wid  # type: ignore[attr-defined]
    assert inside[0].name == "relos"
    outside = [r for r in caplog.records if r.getMessage() == "outside any workflow"]
    assert len(outside) == 1
    assert outside[0].workflow_id == "-"  # type: ignore[attr-defined]


def test_run_step_checkpoints_a_plain_function(dbos: Any) -> None:
    wid = "apiwf-runstep-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apiwf_run_step(2) == 12
    assert calls["apiwf_plain_triple"] == 2
    assert seen["run_step_ids"] == (wid, 1)
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["function_name"], s["output"]) for s in steps] == [
        (0, "apiwf_plain_triple", 6), (1, "triple-again", 6)
    ]
    # Outside a workflow run_step is a plain call.
    assert DBOS.run_step(apiwf_plain_triple, 1) == 3
    assert seen["run_step_ids"] == (None, None)


def test_pending_while_running_then_success(dbos: Any) -> None:
    handle = DBOS.start_workflow(apiwf_add, 1)
    status = handle.get_status()
    assert status.status in (PENDING, SUCCESS)
    assert handle.get_result() == 2
    assert handle.get_status().status == SUCCESS


def test_launch_moves_the_startup_objects_out_of_the_collectors_way(dbos: Any) -> None:
    """After a launch, the objects alive at the process's first launch (modules,
    classes, the application's code) sit in the collector's permanent
    generation, so its full collections during the run do not walk them."""
    import gc

    from relos.runtime.runtime import Runtime

    assert gc.get_freeze_count() > 1000
    assert not any(obj is Runtime for obj in gc.get_objects())  # frozen, not collectable
    made_after: dict[str, Any] = {"a": [1, 2]}
    assert any(obj is made_after for obj in gc.get_objects())
