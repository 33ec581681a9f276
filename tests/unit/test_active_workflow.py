"""ActiveWorkflow keeps its outcome without a future until someone waits."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest

from relos.runtime.context import WorkflowContext
from relos.runtime.runtime import ActiveWorkflow


def _active() -> ActiveWorkflow:
    return ActiveWorkflow(WorkflowContext("aw-1", "aw"))


def test_a_future_asked_for_after_the_outcome_has_it() -> None:
    aw = _active()
    aw.set_result(42)
    assert aw.future.result(timeout=0) == 42
    failed = _active()
    failed.set_exception(ValueError("no"))
    with pytest.raises(ValueError, match="no"):
        failed.future.result(timeout=0)


def test_a_waiter_before_the_outcome_is_woken_by_it() -> None:
    aw = _active()
    future = aw.future
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=5)))
    waiter.start()
    aw.set_result("done")
    waiter.join(5)
    assert got == ["done"]
    assert aw.future is future  # one future per workflow


def test_the_outcome_is_set_once() -> None:
    aw = _active()
    aw.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError, match="aw-1"):
        aw.set_exception(RuntimeError("late"))
    assert aw.future.result(timeout=0) == 1
