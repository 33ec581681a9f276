"""write_batch: step records and completions of many workflows in one commit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from relos import errors
from relos.runtime.commits import GroupCommitter, Write
from relos.store import SystemStore
from relos.store.base import CANCELLED, PENDING, SUCCESS, Completion, StepRow, WorkflowRow

T1 = 1_700_000_001_000


def _pending(store: SystemStore, make_workflow: Callable[..., WorkflowRow], n: int) -> list[str]:
    ids = [f"wf-{i}" for i in range(n)]
    for wid in ids:
        assert store.insert_workflow(make_workflow(wid)) is None
    return ids


def test_steps_and_completions_of_many_workflows_commit_together(
        store: SystemStore, make_workflow: Callable[..., WorkflowRow],
        make_step: Callable[..., StepRow]) -> None:
    ids = _pending(store, make_workflow, 30)
    steps = [make_step(wid, 0, output=f'"{wid}"') for wid in ids]
    done = [Completion(wid, SUCCESS, f'"out-{wid}"', None, T1) for wid in ids]
    store.write_batch(steps, done)
    for wid in ids:
        row = store.get_workflow(wid)
        assert row is not None and row.status == SUCCESS and row.output == f'"out-{wid}"'
        assert row.completed_at == T1
        assert store.load_steps(wid)[0].output == f'"{wid}"'


def test_a_refused_step_writes_nothing_of_the_batch(
        store: SystemStore, make_workflow: Callable[..., WorkflowRow],
        make_step: Callable[..., StepRow]) -> None:
    ids = _pending(store, make_workflow, 5)
    store.record_step(make_step(ids[2], 0))  # already there: the batch's copy is refused
    with pytest.raises(errors.RelosError):
        store.write_batch([make_step(wid, 0) for wid in ids],
                          [Completion(wid, SUCCESS, "1", None, T1) for wid in ids])
    for wid in ids:
        row = store.get_workflow(wid)
        assert row is not None and row.status == PENDING
    assert [list(store.load_steps(w)) for w in ids] == [[], [], [0], [], []]


def test_a_completion_of_a_finished_workflow_changes_nothing(
        store: SystemStore, make_workflow: Callable[..., WorkflowRow]) -> None:
    ids = _pending(store, make_workflow, 3)
    store.set_workflow_status(ids[1], CANCELLED, T1)
    store.write_batch([], [Completion(wid, SUCCESS, "7", None, T1) for wid in ids])
    statuses = []
    for wid in ids:
        row = store.get_workflow(wid)
        assert row is not None
        statuses.append(row.status)
    assert statuses == [SUCCESS, CANCELLED, SUCCESS]


def test_the_committer_fails_only_the_refused_write(
        store: SystemStore, make_workflow: Callable[..., WorkflowRow],
        make_step: Callable[..., StepRow], concurrently: Any) -> None:
    ids = _pending(store, make_workflow, 40)
    store.set_workflow_status(ids[7], CANCELLED, T1)  # its step record will be refused
    committer = GroupCommitter(store)
    outcomes: dict[str, Any] = {}

    def finish(i: int) -> None:
        wid = ids[i]
        write = Write([make_step(wid, 0)], Completion(wid, SUCCESS, "1", None, T1),
                      lambda err, wid=wid: outcomes.__setitem__(wid, err))
        with contextlib.suppress(errors.RelosError):
            committer.submit(write, wait=True)

    try:
        concurrently(len(ids), finish)
    finally:
        committer.close()
    assert isinstance(outcomes.pop(ids[7]), errors.WorkflowCancelledError)
    assert set(outcomes) == set(ids) - {ids[7]}
    assert all(err is None for err in outcomes.values())
    for wid in ids:
        row = store.get_workflow(wid)
        assert row is not None
        assert row.status == (CANCELLED if wid == ids[7] else SUCCESS)
        assert len(store.load_steps(wid)) == (0 if wid == ids[7] else 1)


def test_the_committer_keeps_serving_after_a_write_the_driver_rejects(
        store: SystemStore, make_workflow: Callable[..., WorkflowRow],
        make_step: Callable[..., StepRow]) -> None:
    ids = _pending(store, make_workflow, 2)
    committer = GroupCommitter(store)
    try:
        unbindable = make_step(ids[0], 0, output=object())  # no driver can store this
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver says
            committer.submit(Write([unbindable]), wait=True)
        committer.submit(Write([make_step(ids[1], 0)], Completion(ids[1], SUCCESS, "1", None,
                                                                  T1)), wait=True)
    finally:
        committer.close()
    row = store.get_workflow(ids[1])
    assert row is not None and row.status == SUCCESS
    assert store.load_steps(ids[0]) == {}
