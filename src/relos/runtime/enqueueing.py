"""Enqueueing workflows (the dequeue loop is ``queueing.py``).

Enqueue writes the workflow rows (status ENQUEUED, or DELAYED with a start
time) in one transaction and wakes dequeuers: in this process directly, in
others through NOTIFY on PostgreSQL (or their next poll). Called inside a
workflow, the enqueue is also a step of the caller, so a replay gets the same
workflow IDs back without enqueueing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, overload

from relos import errors, queues, serialization
from relos.runtime import clock, context
from relos.runtime.ids import new_ids
from relos.runtime.registry import WorkflowInfo
from relos.store.base import DELAYED, ENQUEUED, QueueRow, RowBatch, StepRow, WorkflowRow

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]


def _check_options(queue: QueueRow, opts: queues.EnqueueSettings) -> None:
    if opts.priority is not None and opts.priority != 0 and not queue.priority_enabled:
        raise errors.ConfigError(
            f"queue {queue.name!r} does not have priorities: create it with "
            f"Queue({queue.name!r}, priority_enabled=True) to enqueue with a priority"
        )
    if queue.partitioned and opts.queue_partition_key is None:
        raise errors.ConfigError(
            f"queue {queue.name!r} is partitioned: enqueue with "
            f"SetEnqueueOptions(queue_partition_key=...)"
        )
    if not queue.partitioned and opts.queue_partition_key is not None:
        raise errors.ConfigError(
            f"queue {queue.name!r} is not partitioned: create it with "
            f"Queue({queue.name!r}, partition_queue=True) to use queue_partition_key"
        )


def enqueue(rt: Runtime, info: WorkflowInfo, queue: queues.Queue, calls: Calls,
            options: queues.EnqueueSettings | None = None, *,
            authenticated_user: str | None = None) -> list[str]:
    """Enqueue one workflow per call; their IDs, in order. Called from a
    workflow, they run as its user; else as ``authenticated_user``."""
    opts = options or queues.current_options()
    row_q = rt.queue_settings(queue.name) or queue.row
    _check_options(row_q, opts)
    if opts.deduplication_id is not None and len(calls) > 1:
        raise errors.ConfigError(
            "a deduplication ID names one workflow: enqueue_many cannot use it")
    parent = None if context.in_step() else context.current()
    given_id = context.take_next_workflow_id()
    timeout = context.next_timeout()
    step_fid: int | None = None
    step_name = "DBOS.enqueue" if len(calls) == 1 else "DBOS.enqueueMany"
    if parent is not None:
        step_fid = parent.next_function_id()
        rec = parent.replayed(step_fid, step_name)
        if rec is not None:  # replay: these workflows were enqueued (or refused) before
            if rec.error is not None:
                raise serialization.deserialize_exception(rt.serializer, rec.error)
            return list(rt.serializer.loads(rec.output or "[]"))
    now = clock.now_ms()
    if given_id is not None and len(calls) == 1:
        ids = [given_id]
    elif parent is not None:
        base = f"{parent.workflow_id}-{step_fid}"
        ids = [base] if len(calls) == 1 else [f"{base}-{i}" for i in range(len(calls))]
    else:
        ids = new_ids(len(calls))
    delay_ms = int((opts.delay_seconds or 0) * 1000)
    # What every row of the batch shares, and what each row adds to it.
    shared: dict[str, Any] = dict(
        status=DELAYED if delay_ms > 0 else ENQUEUED, name=info.name,
        executor_id=rt.config.executor_id, created_at=now, updated_at=now,
        application_version=opts.app_version, application_id=rt.config.name,
        authenticated_user=parent.authenticated_user if parent else authenticated_user,
        parent_workflow_id=parent.workflow_id if parent else None,
        queue_name=queue.name, deduplication_id=opts.deduplication_id,
        priority=opts.priority or 0, recovery_attempts=0,
        timeout_ms=int(timeout * 1000) if timeout is not None else None,
        queue_partition_key=opts.queue_partition_key,
        delay_until_epoch_ms=now + delay_ms if delay_ms > 0 else None,
    )
    rows = RowBatch(WorkflowRow(workflow_id="", **shared), ids, _Inputs(rt, info, calls))
    step = None
    # With a deduplication ID the outcome (this workflow, the one holding the
    # ID, or a refusal) is known only after the insert, and the parent's step
    # must record that outcome for a replay to see the same: record it after.
    # Should the process die in between, the replay enqueues again under the
    # same (derived) ID, which is idempotent.
    record_after = parent is not None and opts.deduplication_id is not None
    if parent is not None and step_fid is not None and not record_after:
        step = StepRow(parent.workflow_id, step_fid, step_name, step_name,
                       rt.serializer.dumps(ids), None, now, now,
                       child_workflow_id=ids[0] if len(ids) == 1 else None,
                       executor_id=rt.config.executor_id)
    results = rt.store.enqueue(rows, step)
    if delay_ms > 0 and rt.queue_runner is not None:
        rt.queue_runner.idle_wait.tell_delay_end(now + delay_ms)
    rt.notifier.notify("queues", queue.name)
    refused: errors.QueueDeduplicatedError | None = None
    for i, existing in enumerate(results):
        if existing is None:
            continue
        row = rows[i]
        if existing.workflow_id == row.workflow_id:
            if existing.name != info.name:
                raise errors.WorkflowConflictError(
                    f"workflow ID {row.workflow_id!r} is already used by workflow "
                    f"{existing.name!r}, not {info.name!r}: use another ID")
            continue
        if opts.return_existing:
            ids[i] = existing.workflow_id
            continue
        refused = errors.QueueDeduplicatedError(queue.name, str(row.deduplication_id),
                                                existing.workflow_id)
    if record_after and parent is not None and step_fid is not None:
        rt.store.record_step(StepRow(
            parent.workflow_id, step_fid, step_name, step_name,
            None if refused else rt.serializer.dumps(ids),
            serialization.serialize_exception(rt.serializer, refused) if refused else None,
            now, clock.now_ms(), child_workflow_id=None if refused else ids[0],
            executor_id=rt.config.executor_id))
    if refused is not None:
        raise refused
    return ids


#: Calls serialized at a time by ``_Inputs``.
INPUTS_CHUNK = 256


class _Inputs(Sequence[str]):
    """The calls' serialized inputs, written as the store reads them, a chunk
    at a time: a bulk write streams the first rows to the server while the
    next are written. A call that cannot be serialized raises the error
    naming the argument (and the call) at fault, and the store's write, all
    or nothing, stores none."""

    def __init__(self, rt: Runtime, info: WorkflowInfo, calls: Calls) -> None:
        self._rt, self._info, self._calls = rt, info, calls
        self._write = serialization.inputs_writer(rt.serializer)
        self._done: list[str] = []

    def __len__(self) -> int:
        return len(self._calls)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            self._fill(stop)
            return self._done[start:stop:step]
        self._fill(range(len(self))[index] + 1)
        return self._done[index]

    def _fill(self, upto: int) -> None:
        done, calls = len(self._done), self._calls
        if upto <= done:
            return
        upto = max(upto, min(len(calls), done + INPUTS_CHUNK))  # (row by row readers too)
        write = self._write
        try:
            self._done += [write(args, kwargs) for args, kwargs in calls[done:upto]]
        except Exception:  # again, to say which argument of which call is at fault
            for i in range(done, upto):
                args, kwargs = calls[i]
                what = f"workflow {self._info.name!r}" + (
                    f" (call #{i})" if len(calls) > 1 else "")
                self._done.append(serialization.serialize_inputs(
                    self._rt.serializer, self._info.func, args, kwargs, what))
