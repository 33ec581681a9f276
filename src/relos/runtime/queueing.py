"""Enqueueing workflows and the per-process dequeue loop.

Enqueue writes the workflow rows (status ENQUEUED, or DELAYED with a start
time) in one transaction and wakes dequeuers: in this process directly, in
others through NOTIFY on PostgreSQL (or their next poll). Called inside a
workflow, the enqueue is also a step of the caller, so a replay gets the same
workflow IDs back without enqueueing again.

The :class:`QueueRunner` thread of each executor claims work from the queues
it listens to, fairly (it starts each round at the next queue), as many
workflows per transaction as this process has room for under the queue's
``worker_concurrency`` and its free workflow threads.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from relos import errors, queues, serialization
from relos.runtime import context, registry, workflow
from relos.runtime.registry import WorkflowInfo
from relos.store.base import DELAYED, ENQUEUED, QueueRow, StepRow, WorkflowRow

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

logger = logging.getLogger("relos")

Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]


def _check_options(queue: QueueRow, opts: queues.EnqueueOptions) -> None:
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
            options: queues.EnqueueOptions | None = None) -> list[str]:
    """Enqueue one workflow per call; their IDs, in order."""
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
    if parent is not None:
        step_fid = parent.next_function_id()
        name = "DBOS.enqueue" if len(calls) == 1 else "DBOS.enqueueMany"
        rec = parent.replayed(step_fid, name)
        if rec is not None:  # replay: these workflows were enqueued before
            return list(rt.serializer.loads(rec.output or "[]"))
    now = _now()
    rows: list[WorkflowRow] = []
    for i, (args, kwargs) in enumerate(calls):
        if given_id is not None and len(calls) == 1:
            wid = given_id
        elif parent is not None:
            wid = f"{parent.workflow_id}-{step_fid}" + (f"-{i}" if len(calls) > 1 else "")
        else:
            wid = str(uuid.uuid4())
        what = f"workflow {info.name!r}" + (f" (call #{i})" if len(calls) > 1 else "")
        inputs = serialization.serialize_inputs(rt.serializer, info.func, args, kwargs, what)
        delay_ms = int((opts.delay_seconds or 0) * 1000)
        rows.append(WorkflowRow(
            workflow_id=wid, status=DELAYED if delay_ms > 0 else ENQUEUED, name=info.name,
            executor_id=rt.config.executor_id, created_at=now, updated_at=now, inputs=inputs,
            application_version=opts.app_version, application_id=rt.config.name,
            authenticated_user=parent.authenticated_user if parent else None,
            parent_workflow_id=parent.workflow_id if parent else None,
            queue_name=queue.name, deduplication_id=opts.deduplication_id,
            priority=opts.priority or 0, recovery_attempts=0,
            timeout_ms=int(timeout * 1000) if timeout is not None else None,
            queue_partition_key=opts.queue_partition_key,
            delay_until_epoch_ms=now + delay_ms if delay_ms > 0 else None,
        ))
    ids = [r.workflow_id for r in rows]
    step = None
    if parent is not None and step_fid is not None:
        name = "DBOS.enqueue" if len(calls) == 1 else "DBOS.enqueueMany"
        step = StepRow(parent.workflow_id, step_fid, name, name, rt.serializer.dumps(ids), None,
                       now, now, child_workflow_id=ids[0] if len(ids) == 1 else None,
                       executor_id=rt.config.executor_id)
    results = rt.store.enqueue(rows, step)
    rt.notifier.notify("queues", queue.name)
    for i, (row, existing) in enumerate(zip(rows, results, strict=True)):
        if existing is None:
            continue
        if existing.workflow_id == row.workflow_id:
            if existing.name != info.name:
                raise errors.WorkflowConflictError(
                    f"workflow ID {row.workflow_id!r} is already used by workflow "
                    f"{existing.name!r}, not {info.name!r}: use another ID")
            continue
        if opts.return_existing:
            ids[i] = existing.workflow_id
            continue
        raise errors.QueueDeduplicatedError(queue.name, str(row.deduplication_id),
                                            existing.workflow_id)
    return ids


def _now() -> int:
    return int(time.time() * 1000)


class QueueRunner:
    """Dequeues from the listened queues and runs what it claims."""

    def __init__(self, rt: Runtime, names: list[str] | None) -> None:
        self.rt = rt
        self.names = names
        self._running: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._turn = 0
        self._settings: dict[str, QueueRow] = {}
        self._settings_at = 0.0

    def listened(self) -> list[str]:
        if self.names is not None:
            return list(self.names)
        return sorted(queues.registered())

    def settings(self, name: str) -> QueueRow | None:
        """The queue's limits, refreshed from the database at most once a second."""
        if time.monotonic() - self._settings_at > 1.0:
            self._settings = {q.name: q for q in self.rt.store.get_queues()}
            self._settings_at = time.monotonic()
        return self._settings.get(name)

    def run(self, stop: threading.Event) -> None:
        rt = self.rt
        while not stop.is_set():
            names = self.listened()
            claimed_any = False
            try:
                for i in range(len(names)):
                    name = names[(self._turn + i) % len(names)]
                    claimed_any |= self._poll(name)
                self._turn += 1
            except errors.RelosError as exc:
                if not stop.is_set():
                    logger.warning("dequeue failed: %s", exc)
            if claimed_any:
                continue
            keys = [("queues", n) for n in names] + [("queues", "*")]
            rt.notifier.wait(keys, rt.poll_interval)

    def _poll(self, name: str) -> bool:
        rt = self.rt
        queue = self.settings(name)
        if queue is None:
            return False
        room = rt.free_workflow_slots()
        if queue.worker_concurrency is not None:
            with self._lock:
                room = min(room, queue.worker_concurrency - self._running[name])
        room = min(room, 1000)
        if room <= 0:
            return False
        rows = rt.store.dequeue(queue, rt.instance_id, rt.config.executor_id, _now(), room,
                                rt.app_version, sorted(registry.workflows()))
        for row in rows:
            self._start(name, row)
        return bool(rows)

    def _start(self, name: str, row: WorkflowRow) -> None:
        rt = self.rt
        try:
            info = registry.get_workflow(row.name)
            start = workflow.adopt(rt, row, load_steps=row.recovery_attempts > 1)
        except errors.RelosError as exc:
            logger.error("cannot start dequeued workflow %s: %s", row.workflow_id, exc)
            rt.store.requeue(row.workflow_id, rt.instance_id, _now())
            return
        if start is None or start.run is None:
            return
        with self._lock:
            self._running[name] += 1
        start.run.future.add_done_callback(lambda _f: self._finished(name))
        workflow.dispatch(rt, info, start)

    def _finished(self, name: str) -> None:
        with self._lock:
            self._running[name] -= 1
        self.rt.notifier.notify("queues", "*")
