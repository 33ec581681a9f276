"""Steps through the public API: recorded outputs, retries, errors, replay of
recorded outcomes, and steps called outside workflows. Both backends."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest

from relos import (
    DBOS,
    ERROR,
    SUCCESS,
    MaxStepRetriesExceededError,
    SetWorkflowID,
)

calls: Counter[str] = Counter()


class ApiStepFlaky(Exception):
    pass


@DBOS.step()
def apistep_greet(name: str) -> str:
    calls["greet"] += 1
    return f"hello {name}"


@DBOS.step(name="apistep.custom-name")
def apistep_numbers(n: int) -> dict[str, Any]:
    calls["numbers"] += 1
    return {"n": n, "squares": [i * i for i in range(n)]}


@DBOS.step()
def apistep_none() -> None:
    calls["none"] += 1


@DBOS.workflow()
def apistep_three_steps(name: str) -> str:
    greeting = apistep_greet(name)
    apistep_none()
    data = apistep_numbers(3)
    return f"{greeting} {data['squares']}"


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01)
def apistep_fails_twice() -> str:
    calls["fails_twice"] += 1
    if calls["fails_twice"] < 3:
        raise ApiStepFlaky(f"attempt {calls['fails_twice']}")
    return "third time lucky"


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01)
def apistep_always_fails() -> None:
    calls["always_fails"] += 1
    raise ApiStepFlaky(f"always failing, attempt {calls['always_fails']}")


@DBOS.step()
def apistep_no_retries() -> None:
    calls["no_retries"] += 1
    raise ApiStepFlaky("no retries for me")


@DBOS.workflow()
def apistep_retry_wf() -> str:
    return apistep_fails_twice()


@DBOS.workflow()
def apistep_exhaust_wf() -> None:
    apistep_always_fails()


@DBOS.workflow()
def apistep_no_retry_wf() -> None:
    apistep_no_retries()


@DBOS.workflow()
def apistep_catches_wf() -> str:
    try:
        apistep_no_retries()  # function_id 0: its error is recorded
    except ApiStepFlaky as exc:
        caught = str(exc)
    after = apistep_greet("after")  # function_id 1
    return f"{caught} / {after}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def test_step_outputs_are_recorded(dbos: Any) -> None:
    wid = "apistep-outputs-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apistep_three_steps("ann") == "hello ann [0, 1, 4]"
    steps = DBOS.list_workflow_steps(wid)
    assert [(s["function_id"], s["function_name"], s["output"], s["error"]) for s in steps] == [
        (0, "apistep_greet", "hello ann", None),
        (1, "apistep_none", None, None),
        (2, "apistep.custom-name", {"n": 3, "squares": [0, 1, 4]}, None),
    ]
    for s in steps:
        assert s["started_at_epoch_ms"] <= s["completed_at_epoch_ms"]
    assert calls == Counter({"greet": 1, "none": 1, "numbers": 1})


def test_step_retries_until_success(dbos: Any) -> None:
    wid = "apistep-retry-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apistep_retry_wf() == "third time lucky"
    assert calls["fails_twice"] == 3
    [step] = DBOS.list_workflow_steps(wid)
    assert step["output"] == "third time lucky" and step["error"] is None


def test_step_exhausting_retries_raises_max_step_retries_exceeded(dbos: Any) -> None:
    wid = "apistep-exhaust-" + uuid.uuid4().hex
    with SetWorkflowID(wid), pytest.raises(MaxStepRetriesExceededError) as info:
        apistep_exhaust_wf()
    assert calls["always_fails"] == 3
    exc = info.value
    assert exc.attempts == 3
    assert len(exc.errors) == 3
    assert all(isinstance(e, ApiStepFlaky) for e in exc.errors)
    assert [str(e) for e in exc.errors] == [f"always failing, attempt {i}" for i in (1, 2, 3)]
    status = DBOS.get_workflow_status(wid)
    assert status is not None and status.status == ERROR
    assert "failed 3 times" in str(status.error)
    [step] = DBOS.list_workflow_steps(wid)
    assert "failed 3 times" in str(step["error"])


def test_recorded_max_step_retries_error_keeps_its_type(dbos: Any) -> None:
    wid = "apistep-exhaust-type-" + uuid.uuid4().hex
    with SetWorkflowID(wid), pytest.raises(MaxStepRetriesExceededError):
        apistep_exhaust_wf()
    status = DBOS.get_workflow_status(wid)
    assert status is not None
    assert isinstance(status.error, MaxStepRetriesExceededError)
    with pytest.raises(MaxStepRetriesExceededError, match="failed 3 times"):
        DBOS.retrieve_workflow(wid).get_result()


def test_step_without_retries_fails_after_one_attempt(dbos: Any) -> None:
    wid = "apistep-noretry-" + uuid.uuid4().hex
    with SetWorkflowID(wid), pytest.raises(ApiStepFlaky, match="no retries for me"):
        apistep_no_retry_wf()
    assert calls["no_retries"] == 1
    [step] = DBOS.list_workflow_steps(wid)
    assert isinstance(step["error"], ApiStepFlaky)
    assert str(step["error"]) == "no retries for me"
    assert step["output"] is None


def test_steps_outside_workflows_are_plain_calls(dbos: Any) -> None:
    assert apistep_greet("bob") == "hello bob"
    assert calls["greet"] == 1
    # Retries still apply outside a workflow.
    assert apistep_fails_twice() == "third time lucky"
    assert calls["fails_twice"] == 3
    with pytest.raises(ApiStepFlaky):
        apistep_no_retries()
    assert DBOS.list_workflows() == []


def test_recorded_step_error_is_replayed_by_a_fork(dbos: Any) -> None:
    wid = "apistep-caught-" + uuid.uuid4().hex
    with SetWorkflowID(wid):
        assert apistep_catches_wf() == "no retries for me / hello after"
    assert calls["no_retries"] == 1 and calls["greet"] == 1
    [failed, after] = DBOS.list_workflow_steps(wid)
    assert isinstance(failed["error"], ApiStepFlaky)
    assert after["output"] == "hello after"
    # Forking from step 1 replays step 0 (its recorded error) without running it.
    fork = DBOS.fork_workflow(wid, 1)
    assert fork.get_result() == "no retries for me / hello after"
    assert calls["no_retries"] == 1
    assert calls["greet"] == 2
    assert fork.get_status().status == SUCCESS
    # Forking from step 2 replays both.
    fork2 = DBOS.fork_workflow(wid, 2)
    assert fork2.get_result() == "no retries for me / hello after"
    assert calls["no_retries"] == 1 and calls["greet"] == 2
