"""Public views of workflows: handles and status records."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from relos import errors, serialization
from relos.runtime import workflow
from relos.store.base import StepRow, WorkflowRow

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

R = TypeVar("R")


@dataclass
class WorkflowStatus:
    """A workflow's recorded state, as ``DBOS.get_workflow_status`` returns it."""

    workflow_id: str
    status: str
    name: str
    executor_id: str
    app_version: str | None
    app_id: str | None
    input: Any
    output: Any
    error: Any
    created_at: int
    updated_at: int
    recovery_attempts: int
    authenticated_user: str | None = None
    assumed_role: str | None = None
    queue_name: str | None = None
    parent_workflow_id: str | None = None
    forked_from: str | None = None
    workflow_timeout_ms: int | None = None
    workflow_deadline_epoch_ms: int | None = None
    priority: int = 0
    deduplication_id: str | None = None
    completed_at: int | None = None
    owner: str | None = None


def status_from_row(rt: Runtime, row: WorkflowRow, load_values: bool = True) -> WorkflowStatus:
    inputs = output = error = None
    if load_values:
        if row.inputs is not None:
            args, kwargs = serialization.deserialize_inputs(rt.serializer, row.inputs)
            inputs = {"args": args, "kwargs": kwargs}
        if row.output is not None:
            output = rt.serializer.loads(row.output)
        if row.error is not None:
            error = serialization.deserialize_exception(rt.serializer, row.error)
    return WorkflowStatus(
        workflow_id=row.workflow_id, status=row.status, name=row.name,
        executor_id=row.executor_id, app_version=row.application_version,
        app_id=row.application_id, input=inputs, output=output, error=error,
        created_at=row.created_at, updated_at=row.updated_at,
        recovery_attempts=row.recovery_attempts, authenticated_user=row.authenticated_user,
        assumed_role=row.assumed_role, queue_name=row.queue_name,
        parent_workflow_id=row.parent_workflow_id, forked_from=row.forked_from,
        workflow_timeout_ms=row.timeout_ms, workflow_deadline_epoch_ms=row.deadline_epoch_ms,
        priority=row.priority, deduplication_id=row.deduplication_id,
        completed_at=row.completed_at, owner=row.owner,
    )


def step_info(rt: Runtime, row: StepRow) -> dict[str, Any]:
    """One recorded step as ``DBOS.list_workflow_steps`` returns it."""
    return {
        "function_id": row.function_id,
        "function_name": row.function_name,
        "kind": row.kind,
        "output": None if row.output is None or row.kind == "DBOS.sleep"
        else rt.serializer.loads(row.output),
        "error": None if row.error is None
        else serialization.deserialize_exception(rt.serializer, row.error),
        "child_workflow_id": row.child_workflow_id,
        "started_at_epoch_ms": row.started_at,
        "completed_at_epoch_ms": row.completed_at,
        "wake_up_at_epoch_ms": int(row.output) if row.kind == "DBOS.sleep" and row.output
        else None,
    }


class WorkflowHandle(Generic[R]):
    """A started workflow: wait for its result or read its status, from any process."""

    def __init__(self, rt: Runtime, workflow_id: str) -> None:
        self._rt = rt
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        return self.workflow_id

    def get_result(self, timeout_seconds: float | None = None) -> R:
        """Block until the workflow finishes; return its result or raise its error
        (AwaitedWorkflowCancelledError if it was cancelled)."""
        result: R = workflow.wait_result(self._rt, self.workflow_id, timeout_seconds)
        return result

    def get_status(self) -> WorkflowStatus:
        row = self._rt.store.get_workflow(self.workflow_id)
        if row is None:
            raise errors.NonExistentWorkflowError(self.workflow_id)
        return status_from_row(self._rt, row)

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"


class WorkflowHandleAsync(Generic[R]):
    """As :class:`WorkflowHandle`, with awaitable methods."""

    def __init__(self, rt: Runtime, workflow_id: str) -> None:
        self._rt = rt
        self.workflow_id = workflow_id
        self._sync: WorkflowHandle[R] = WorkflowHandle(rt, workflow_id)

    def get_workflow_id(self) -> str:
        return self.workflow_id

    async def get_result(self, timeout_seconds: float | None = None) -> R:
        aw = self._rt.active(self.workflow_id)
        if aw is not None:
            try:
                result: R = await asyncio.wait_for(asyncio.wrap_future(aw.future),
                                                   timeout_seconds)
                return result
            except (errors.WorkflowCancelledError, errors.WorkflowConflictError):
                pass  # stopped here without an outcome: the row tells how it ended
        return await self._rt.run_blocking(self._sync.get_result, timeout_seconds)

    async def get_status(self) -> WorkflowStatus:
        return await self._rt.run_blocking(self._sync.get_status)

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"
