"""Rows, queues and shortcuts shared by the queue contract tests (the
enqueue and the dequeue/requeue halves)."""

from __future__ import annotations

from typing import Any

from relos.store.base import ENQUEUED, SUCCESS, QueueRow, SystemStore, WorkflowRow

T0 = 1_700_000_000_000
NAMES = ["queued_wf", "other_wf"]


def queued(workflow_id: str, queue: str | None = "q", *, at: int = 0, **overrides: Any) -> WorkflowRow:
    """An ENQUEUED row of ``queue``, created ``at`` ms after T0."""
    fields: dict[str, Any] = {
        "workflow_id": workflow_id, "status": ENQUEUED, "name": "queued_wf",
        "executor_id": "exec-a", "created_at": T0 + at, "updated_at": T0 + at,
        "inputs": '{"args": [], "kwargs": {}}', "queue_name": queue, "recovery_attempts": 0,
    }
    fields.update(overrides)
    return WorkflowRow(**fields)


def qrow(name: str = "q", **limits: Any) -> QueueRow:
    return QueueRow(name=name, updated_at=T0, **limits)


def dequeue(store: SystemStore, queue: QueueRow, *, now: int = T0, max_claim: int = 100,
            owner: str = "owner-a", version: str | None = "v1",
            names: list[str] | None = None) -> list[str]:
    """Dequeue and return the claimed IDs, in claim order."""
    rows = store.dequeue(queue, owner, "exec-a", now, max_claim, version,
                         NAMES if names is None else names)
    return [r.workflow_id for r in rows]


def finish(store: SystemStore, *ids: str, now: int = T0) -> None:
    for wid in ids:
        assert store.complete_workflow(wid, SUCCESS, '"ok"', None, now)


def status(store: SystemStore, wid: str) -> str:
    row = store.get_workflow(wid)
    assert row is not None, wid
    return row.status
