"""Operations on workflows from outside them: list, inspect, cancel, resume, fork.

These work on rows, so they act on workflows of any process; a workflow
running here is also told at once (cancel wakes its waits).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from relos import errors
from relos.runtime import clock, context, ids, registry, workflow
from relos.runtime.handles import WorkflowStatus, status_from_row, step_info
from relos.store.base import (
    ALL_STATUSES,
    CANCELLED,
    DELAYED,
    ENQUEUED,
    PENDING,
    SUCCESS,
    ListFilter,
    WorkflowRow,
)

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime


def _row(rt: Runtime, workflow_id: str) -> Any:
    row = rt.store.get_workflow(workflow_id)
    if row is None:
        raise errors.NonExistentWorkflowError(workflow_id)
    return row


def cancel(rt: Runtime, workflow_id: str, *, timed_out: bool = False) -> None:
    """Cancel a PENDING or ENQUEUED workflow; a finished one is left as it is."""
    row = _row(rt, workflow_id)
    changed = rt.store.set_workflow_status(
        workflow_id, CANCELLED, clock.now_ms(), only_if=frozenset({PENDING, ENQUEUED, DELAYED})
    )
    if changed or row.status == CANCELLED:
        rt.cancel_local(workflow_id)
        rt.notifier.notify("status", workflow_id)


def resume(rt: Runtime, workflow_id: str) -> None:
    """Make a cancelled, failed or dead-lettered workflow PENDING again and start
    it here; it replays its recorded steps and continues from the first missing one."""
    row = _row(rt, workflow_id)
    if row.status == SUCCESS:
        return
    if row.status == PENDING and (rt.active(workflow_id) or rt.owner_alive(row.owner)):
        return
    if row.status == PENDING and row.wake_at_epoch_ms is not None:
        return  # suspended, not stuck: it resumes when due
    registry.get_workflow(row.name)
    # A cancelled (or just failed) run here may still be unwinding: it stops at
    # its next step. Let it go first, or two runs of one workflow would race.
    with rt.notifier.subscribe([("status", workflow_id)]) as woke:
        while True:
            woke.clear()
            if rt.active(workflow_id) is None:
                break
            woke.wait(rt.poll_interval)
    rt.store.resume_workflow(workflow_id, clock.now_ms())
    workflow.recover(rt, workflow_id)


def fork(rt: Runtime, workflow_id: str, start_step: int, *, new_workflow_id: str | None = None,
         application_version: str | None = None) -> str:
    """Start a new workflow with the same inputs that replays the original's
    steps before ``start_step`` and runs the rest anew. Returns its ID."""
    if not isinstance(start_step, int) or start_step < 0:
        raise errors.ConfigError(f"start_step must be an integer >= 0, not {start_step!r}")
    src = _row(rt, workflow_id)
    registry.get_workflow(src.name)  # fail before writing if the function is unknown
    new_id = new_workflow_id or ids.new_id()
    new = fork_row(src, new_id, clock.now_ms(),
                   application_version=application_version or rt.app_version,
                   executor_id=rt.config.executor_id)
    rt.store.fork_workflow(workflow_id, new_id, start_step, new)
    workflow.recover(rt, new_id)
    return new_id


def fork_row(src: WorkflowRow, new_id: str, now: int, *,
             application_version: str | None = None,
             executor_id: str | None = None) -> WorkflowRow:
    """The row of a fork of ``src``: its name and inputs, PENDING with no owner,
    out of any queue, no outcome, no deadline, not suspended; the application
    version and executor ID given, else ``src``'s."""
    new = WorkflowRow(**vars(src))
    new.workflow_id = new_id
    new.status = PENDING
    new.owner = None
    new.output = new.error = None
    new.created_at = new.updated_at = new.started_at = now
    new.completed_at = None
    new.recovery_attempts = 0
    new.forked_from = src.workflow_id
    new.deadline_epoch_ms = None
    new.wake_at_epoch_ms = new.waiting_for = None  # the fork runs now, not when src wakes
    new.queue_name = None
    new.deduplication_id = None
    if application_version is not None:
        new.application_version = application_version
    if executor_id is not None:
        new.executor_id = executor_id
    return new


def _epoch_ms(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return int(dt.datetime.fromisoformat(value).timestamp() * 1000)
        except ValueError:
            raise errors.ConfigError(
                f"{what} must be an ISO 8601 time (e.g. 2026-01-31T12:00:00) or epoch "
                f"milliseconds, not {value!r}"
            ) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    raise errors.ConfigError(f"{what} must be a datetime, ISO string or epoch ms, not {value!r}")


def list_workflows(
    rt: Runtime, *, workflow_ids: list[str] | None = None, status: str | list[str] | None = None,
    name: str | None = None, start_time: Any = None, end_time: Any = None,
    limit: int | None = None, offset: int | None = None, sort_desc: bool = False,
    executor_id: str | None = None, app_version: str | None = None,
    queue_name: str | None = None, queued: bool = False,
    load_input: bool = True, load_output: bool = True,
) -> list[WorkflowStatus]:
    statuses = [status] if isinstance(status, str) else status
    for s in statuses or []:
        if s not in ALL_STATUSES:
            raise errors.ConfigError(
                f"unknown workflow status {s!r}: use one of {', '.join(sorted(ALL_STATUSES))}"
            )
    for what, n in (("limit", limit), ("offset", offset)):
        if n is not None and (not isinstance(n, int) or n < 0):
            raise errors.ConfigError(f"{what} must be an integer >= 0, not {n!r}")
    flt = ListFilter(
        workflow_ids=workflow_ids, status=statuses, name=name,
        start_time=_epoch_ms(start_time, "start_time"), end_time=_epoch_ms(end_time, "end_time"),
        executor_id=executor_id, application_version=app_version, queue_name=queue_name,
        queued=queued, limit=limit, offset=offset,
        sort_desc=sort_desc, load_values=load_input or load_output,
    )
    return [status_from_row(rt, row, load_input or load_output)
            for row in rt.store.list_workflows(flt)]


#: What ``list_queued_workflows`` lists unless told: the workflows of queues
#: that have not finished.
QUEUED_STATUSES = [ENQUEUED, DELAYED, PENDING]


def list_queued_workflows(
    rt: Runtime, *, queue_name: str | None = None, status: str | list[str] | None = None,
    name: str | None = None, start_time: Any = None, end_time: Any = None,
    limit: int | None = None, offset: int | None = None, sort_desc: bool = False,
    load_input: bool = True,
) -> list[WorkflowStatus]:
    return list_workflows(
        rt, status=QUEUED_STATUSES if status is None else status, name=name,
        start_time=start_time, end_time=end_time, limit=limit, offset=offset,
        sort_desc=sort_desc, queue_name=queue_name, queued=True, load_input=load_input,
        load_output=False)


def list_steps(rt: Runtime, workflow_id: str) -> list[dict[str, Any]]:
    _row(rt, workflow_id)
    ctx = context.current()
    if ctx is not None and ctx.workflow_id == workflow_id:
        ctx.flush()  # a workflow listing its own steps sees its last one
    return [step_info(rt, s) for s in rt.store.load_steps(workflow_id).values()]


def get_status(rt: Runtime, workflow_id: str) -> WorkflowStatus | None:
    row = rt.store.get_workflow(workflow_id)
    return None if row is None else status_from_row(rt, row)
