"""The ``DBOS`` facade: the public API, shaped like DBOS Transact's.

Thin by design: decorators register functions and wrap them; every other
method hands over to :mod:`relos.runtime`. Async variants (``*_async``) run the
one sync implementation on a helper thread, so there is a single source of
truth for each operation.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any, Generic, TypeVar

from relos import errors
from relos import queues as queues_mod
from relos import schedules as schedules_mod
from relos.config import Config, load_config
from relos.queues import Queue, queue_row
from relos.runtime import (
    clock,
    comm,
    context,
    management,
    registry,
    steps,
    suspension,
    transactions,
)
from relos.runtime import workflow as wf
from relos.runtime.handles import WorkflowHandle, WorkflowHandleAsync, WorkflowStatus
from relos.runtime.registry import RetryPolicy, StepInfo, WorkflowInfo
from relos.runtime.runtime import Runtime
from relos.store.base import ApplicationVersion, ScheduleRow

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("relos")


class _ContextFilter(logging.Filter):
    """Adds ``workflow_id`` and ``step_id`` to every record the relos logger emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = context.current()
        record.workflow_id = ctx.workflow_id if ctx else "-"
        record.step_id = ctx.step_id if ctx and ctx.step_id is not None else "-"
        return True


logger.addFilter(_ContextFilter())


class classproperty(Generic[T]):
    def __init__(self, fget: Callable[[Any], T]) -> None:
        self.fget = fget

    def __get__(self, obj: Any, owner: Any) -> T:
        return self.fget(owner)


_instance: DBOS | None = None
_runtime: Runtime | None = None
_listen: list[str] | None = None


def _rt() -> Runtime:
    if _runtime is None or not _runtime.launched:
        raise errors.NotLaunchedError(
            "relos is not launched: call DBOS(config=...) and then DBOS.launch() before "
            "running workflows"
        )
    return _runtime


def _workflow_info(func: Callable[..., Any]) -> WorkflowInfo:
    info = getattr(func, "__relos_workflow__", None)
    if not isinstance(info, WorkflowInfo):
        raise errors.ConfigError(
            f"{getattr(func, '__qualname__', func)!r} is not a workflow: decorate it with "
            f"@DBOS.workflow() (steps run inside workflows; call them from one)"
        )
    return info


class DBOS:
    """Create once with ``DBOS(config=...)``, then ``DBOS.launch()``."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        global _instance
        if _runtime is not None and _runtime.launched:
            raise errors.ConfigError(
                "relos is already launched in this process: call DBOS.destroy() before "
                "creating another DBOS instance"
            )
        self._config: Config = load_config(config)
        _instance = self

    # --- lifecycle --------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        """Connect, migrate the schema, register this executor and recover its
        PENDING workflows (in the background)."""
        global _runtime
        if _instance is None:
            cls()
        assert _instance is not None
        if _runtime is not None and _runtime.launched:
            return
        _configure_logging(_instance._config.log_level)
        rt = Runtime(_instance._config)
        rt.listen_queues = _listen
        # Published before launch starts its threads: a workflow that recovery
        # (or a queue, or a schedule) starts at once must find the runtime.
        _runtime = rt
        try:
            rt.launch()
        except BaseException:
            _runtime = None
            rt.destroy()
            raise

    @classmethod
    def destroy(cls, *, destroy_registry: bool = False) -> None:
        """Stop this process's runtime. Unfinished workflows stay PENDING and are
        recovered by the next launch (of this or another process)."""
        global _runtime, _instance, _listen
        rt, _runtime = _runtime, None
        _instance = None
        _listen = None  # listen_queues applies to one launch
        if rt is not None:
            rt.destroy()
        if destroy_registry:
            registry._workflows.clear()

    @classmethod
    def listen_queues(cls, queue_names: list[Any]) -> None:
        """Dequeue only from these queues (names or Queue objects) in this
        process; call before ``DBOS.launch()``. By default a process dequeues
        from every queue its code defines."""
        if _runtime is not None and _runtime.launched:
            raise errors.ConfigError("DBOS.listen_queues must be called before DBOS.launch()")
        names = [q.name if isinstance(q, Queue) else q for q in queue_names]
        for n in names:
            if not isinstance(n, str) or not n:
                raise errors.ConfigError(f"listen_queues takes queue names or Queues, not {n!r}")
        global _listen
        _listen = names

    @staticmethod
    def register_queue(name: str, concurrency: int | None = None,
                       limiter: dict[str, Any] | None = None, *,
                       worker_concurrency: int | None = None, priority_enabled: bool = False,
                       partition_queue: bool = False, polling_interval_sec: float | None = None
                       ) -> Queue:
        """Create or change a queue's limits in the database, for every executor
        (they pick the change up within about a second). ``polling_interval_sec``
        applies to this process (see ``Queue``)."""
        row = queue_row(name, concurrency, worker_concurrency, limiter, priority_enabled,
                        partition_queue, defined_by="runtime")
        interval = queues_mod.check_polling_interval(name, polling_interval_sec)
        queue = queues_mod.get(name)
        if queue is None:
            queue = Queue(name)
            queue.declared = None  # (the code may still declare it)
        queue.row = row
        if interval is not None:
            queue.polling_interval_sec = interval
        if _runtime is not None and _runtime.launched:
            queue.row = _runtime.store.save_queue(replace(row, updated_at=clock.now_ms()))
            _runtime.notifier.notify("queues", name)
        return queue

    @staticmethod
    def retrieve_queue(name: str) -> Queue:
        """The queue of that name: defined in this process's code, or stored in
        the database (by DBOS.register_queue anywhere); else QueueNotFoundError.
        A stored queue retrieved here can be enqueued on; this process does not
        run its workflows unless it defines or registers the queue."""
        if not isinstance(name, str):
            raise errors.ConfigError(f"a queue name is a string, not {type(name).__name__}")
        queue = queues_mod.get(name)
        if queue is not None:
            return queue
        found = _rt().store.get_queues([name])
        if not found:
            raise errors.QueueNotFoundError(name)
        return Queue.stored(found[0])

    @staticmethod
    def enqueue_workflow(queue_name: str, func: Callable[..., Any], *args: Any,
                         **kwargs: Any) -> WorkflowHandle[Any]:
        """``DBOS.retrieve_queue(queue_name).enqueue(func, *args, **kwargs)``."""
        return DBOS.retrieve_queue(queue_name).enqueue(func, *args, **kwargs)

    @staticmethod
    async def enqueue_workflow_async(queue_name: str, func: Callable[..., Any], *args: Any,
                                     **kwargs: Any) -> WorkflowHandleAsync[Any]:
        queue = await _rt().run_blocking(DBOS.retrieve_queue, queue_name)
        return await queue.enqueue_async(func, *args, **kwargs)

    @classmethod
    def recover_pending_workflows(cls) -> list[WorkflowHandle[Any]]:
        rt = _rt()
        return [WorkflowHandle(rt, wid) for wid in rt.recover_pending()]

    # --- decorators -------------------------------------------------------------------

    @staticmethod
    def workflow(*, name: str | None = None,
                 max_recovery_attempts: int = registry.DEFAULT_MAX_RECOVERY_ATTEMPTS
                 ) -> Callable[[F], F]:
        if not isinstance(max_recovery_attempts, int) or max_recovery_attempts < 0:
            raise errors.ConfigError(
                f"max_recovery_attempts must be an integer >= 0, not {max_recovery_attempts!r}"
            )

        def decorate(func: F) -> F:
            info = WorkflowInfo(name or registry.qualified_name(func), func,
                                max_recovery_attempts, inspect.iscoroutinefunction(func))
            registry.register_workflow(info)
            if info.is_async:
                @functools.wraps(func)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    rt = _rt()
                    start = await rt.run_blocking(_carry_next_id(wf.begin), rt, info, args, kwargs)
                    if start.run is None:
                        return await WorkflowHandleAsync(rt, start.workflow_id).get_result()
                    await wf.execute_async(rt, info, start)
                    try:
                        return start.run.future.result()
                    except errors.WorkflowSuspendedError:  # finishes when resumed
                        return await WorkflowHandleAsync(rt, start.workflow_id).get_result()

                run_async.__relos_workflow__ = info  # type: ignore[attr-defined]
                return run_async  # type: ignore[return-value]

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                rt = _rt()
                start = wf.begin(rt, info, args, kwargs)
                if start.run is None:
                    return wf.wait_result(rt, start.workflow_id)
                wf.execute(rt, info, start)
                return wf.outcome(rt, start)

            run.__relos_workflow__ = info  # type: ignore[attr-defined]
            return run  # type: ignore[return-value]

        return decorate

    @staticmethod
    def scheduled(cron: str, *, missed_tick_policy: str = "skip") -> Callable[[F], F]:
        """Start the decorated workflow at every tick of ``cron`` (UTC; 5 fields,
        or 6 with seconds first), as ``fn(scheduled_time, actual_time)``. Put it
        above ``@DBOS.workflow()``. The schedule is named after the workflow and
        stored in the database at launch; ``missed_tick_policy`` is ``"skip"``
        or ``"backfill"`` (see :func:`relos.schedules.plan`)."""
        spec = schedules_mod.parse_cron(cron)
        policy = schedules_mod.check_policy(missed_tick_policy)

        def decorate(func: F) -> F:
            if not isinstance(getattr(func, "__relos_workflow__", None), WorkflowInfo):
                raise errors.ConfigError(
                    f"@DBOS.scheduled({cron!r}) decorates "
                    f"{getattr(func, '__qualname__', func)!r}, which is not a workflow: put "
                    f"@DBOS.scheduled(...) above @DBOS.workflow()"
                )
            info = _workflow_info(func)
            schedules_mod.check_signature(info.func, f"workflow {info.name!r}")
            schedules_mod.declare(info.name, info.name, spec.expression, policy)
            if _runtime is not None and _runtime.launched:
                now = clock.now_ms()
                _runtime.store.save_schedule(replace(
                    schedules_mod.declared()[info.name], last_tick_epoch_ms=now,
                    created_at=now, updated_at=now))
            return func

        return decorate

    @staticmethod
    def step(*, name: str | None = None, retries_allowed: bool = False, max_attempts: int = 3,
             interval_seconds: float = 1.0, backoff_rate: float = 2.0) -> Callable[[F], F]:
        registry.check_retry_args(max_attempts, interval_seconds, backoff_rate)
        policy = RetryPolicy(retries_allowed, max_attempts, interval_seconds, backoff_rate)

        def decorate(func: F) -> F:
            info = StepInfo(name or registry.qualified_name(func), func, "step", policy,
                            is_async=inspect.iscoroutinefunction(func))
            wrapped: F = _wrap_step(info)
            return wrapped

        return decorate

    @staticmethod
    def transaction(*, isolation_level: str | None = None, name: str | None = None
                    ) -> Callable[[F], F]:
        level = registry.check_isolation(isolation_level)

        def decorate(func: F) -> F:
            if inspect.iscoroutinefunction(func):
                raise errors.ConfigError(
                    f"transaction {func.__qualname__!r} is async: database transactions "
                    f"run synchronously; make it a plain def (it can be called from async "
                    f"workflows)"
                )
            info = StepInfo(name or registry.qualified_name(func), func, "transaction",
                            isolation_level=level)

            @functools.wraps(func)
            def run(*args: Any, **kwargs: Any) -> Any:
                rt = _rt()
                return transactions.run_transaction(rt, info, args, kwargs)

            return run  # type: ignore[return-value]

        return decorate

    # --- workflows --------------------------------------------------------------------

    @staticmethod
    def start_workflow(func: Callable[..., Any], *args: Any, **kwargs: Any
                       ) -> WorkflowHandle[Any]:
        """Start a workflow in the background; the start is durable when this returns."""
        info = _workflow_info(func)
        rt = _rt()
        start = wf.begin(rt, info, args, kwargs)
        if start.run is not None:
            wf.dispatch(rt, info, start)
        return WorkflowHandle(rt, start.workflow_id)

    @staticmethod
    async def start_workflow_async(func: Callable[..., Any], *args: Any, **kwargs: Any
                                   ) -> WorkflowHandleAsync[Any]:
        info = _workflow_info(func)
        rt = _rt()
        start = await rt.run_blocking(_carry_next_id(wf.begin), rt, info, args, kwargs)
        if start.run is not None:
            wf.dispatch(rt, info, start)
        return WorkflowHandleAsync(rt, start.workflow_id)

    @staticmethod
    def retrieve_workflow(workflow_id: str) -> WorkflowHandle[Any]:
        rt = _rt()
        if rt.store.get_workflow(workflow_id) is None:
            raise errors.NonExistentWorkflowError(workflow_id)
        return WorkflowHandle(rt, workflow_id)

    @staticmethod
    async def retrieve_workflow_async(workflow_id: str) -> WorkflowHandleAsync[Any]:
        handle = await _rt().run_blocking(DBOS.retrieve_workflow, workflow_id)
        return WorkflowHandleAsync(_rt(), handle.workflow_id)

    @staticmethod
    def get_workflow_status(workflow_id: str) -> WorkflowStatus | None:
        return management.get_status(_rt(), workflow_id)

    @staticmethod
    async def get_workflow_status_async(workflow_id: str) -> WorkflowStatus | None:
        return await _rt().run_blocking(DBOS.get_workflow_status, workflow_id)

    @staticmethod
    def run_step(func: Callable[..., T], *args: Any, name: str | None = None,
                 retries_allowed: bool = False, max_attempts: int = 3,
                 interval_seconds: float = 1.0, backoff_rate: float = 2.0, **kwargs: Any) -> T:
        """Run ``func`` as a checkpointed step of the current workflow."""
        registry.check_retry_args(max_attempts, interval_seconds, backoff_rate)
        info = StepInfo(name or registry.qualified_name(func), func, "step",
                        RetryPolicy(retries_allowed, max_attempts, interval_seconds,
                                    backoff_rate))
        result: T = steps.run_step(_rt(), info, args, kwargs)
        return result

    @staticmethod
    async def run_step_async(func: Callable[..., Any], *args: Any, name: str | None = None,
                             **kwargs: Any) -> Any:
        info = StepInfo(name or registry.qualified_name(func), func, "step",
                        is_async=inspect.iscoroutinefunction(func))
        if info.is_async:
            return await steps.run_step_async(_rt(), info, args, kwargs)
        return await _rt().run_blocking(steps.run_step, _rt(), info, args, kwargs)

    # --- durable sleep, messages, events, streams -----------------------------------------

    @staticmethod
    def sleep(seconds: float) -> None:
        """Sleep durably: the wake-up time is recorded, so a recovered workflow
        sleeps only what remains."""
        comm.sleep(_rt(), seconds)

    @staticmethod
    async def sleep_async(seconds: float) -> None:
        import asyncio

        rt = _rt()
        ctx, end = await rt.run_blocking(comm.sleep_until, rt, seconds)
        if ctx is not None:
            suspension.check_sleep(rt, ctx, end)
        while (remaining := end - clock.now()) > 0:
            if ctx is not None:
                ctx.check_cancelled()
            await asyncio.sleep(min(remaining, 0.5))
        if ctx is not None:
            ctx.check_cancelled()

    @staticmethod
    def send(destination_id: str, message: Any, topic: str | None = None,
             idempotency_key: str | None = None) -> None:
        comm.send(_rt(), destination_id, message, topic, idempotency_key)

    @staticmethod
    async def send_async(destination_id: str, message: Any, topic: str | None = None,
                         idempotency_key: str | None = None) -> None:
        await _rt().run_blocking(DBOS.send, destination_id, message, topic, idempotency_key)

    @staticmethod
    def recv(topic: str | None = None, timeout_seconds: float = 60) -> Any:
        """The next message sent to this workflow on ``topic``, or None on timeout."""
        return comm.recv(_rt(), topic, timeout_seconds)

    @staticmethod
    async def recv_async(topic: str | None = None, timeout_seconds: float = 60) -> Any:
        return await _rt().run_blocking(DBOS.recv, topic, timeout_seconds)

    @staticmethod
    def set_event(key: str, value: Any) -> None:
        comm.set_event(_rt(), key, value)

    @staticmethod
    async def set_event_async(key: str, value: Any) -> None:
        await _rt().run_blocking(DBOS.set_event, key, value)

    @staticmethod
    def get_event(workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The workflow's event ``key``, waiting for it up to the timeout (then None)."""
        return comm.get_event(_rt(), workflow_id, key, timeout_seconds)

    @staticmethod
    async def get_event_async(workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        return await _rt().run_blocking(DBOS.get_event, workflow_id, key, timeout_seconds)

    @staticmethod
    def get_all_events(workflow_id: str) -> dict[str, Any]:
        return comm.get_all_events(_rt(), workflow_id)

    @staticmethod
    async def get_all_events_async(workflow_id: str) -> dict[str, Any]:
        return await _rt().run_blocking(DBOS.get_all_events, workflow_id)

    @staticmethod
    def write_stream(key: str, value: Any) -> None:
        comm.write_stream(_rt(), key, value)

    @staticmethod
    async def write_stream_async(key: str, value: Any) -> None:
        await _rt().run_blocking(DBOS.write_stream, key, value)

    @staticmethod
    def close_stream(key: str) -> None:
        comm.write_stream(_rt(), key, None, closed=True)

    @staticmethod
    async def close_stream_async(key: str) -> None:
        await _rt().run_blocking(DBOS.close_stream, key)

    @staticmethod
    def read_stream(workflow_id: str, key: str) -> Iterator[Any]:
        """Yield the stream's values until it is closed or the workflow ends."""
        return comm.read_stream(_rt(), workflow_id, key)

    @staticmethod
    async def read_stream_async(workflow_id: str, key: str) -> AsyncIterator[Any]:
        rt = _rt()
        it = comm.read_stream(rt, workflow_id, key)
        done = object()
        while (value := await rt.run_blocking(next, it, done)) is not done:
            yield value

    # --- management -------------------------------------------------------------------

    @staticmethod
    def list_workflows(**filters: Any) -> list[WorkflowStatus]:
        """Workflows by ``workflow_ids``, ``status``, ``name``, ``start_time``,
        ``end_time``, ``executor_id``, ``app_version``, ``queue_name``, ``limit``,
        ``offset``, ``sort_desc``, ``load_input``, ``load_output``."""
        return management.list_workflows(_rt(), **filters)

    @staticmethod
    async def list_workflows_async(**filters: Any) -> list[WorkflowStatus]:
        return await _rt().run_blocking(functools.partial(DBOS.list_workflows, **filters))

    @staticmethod
    def list_queued_workflows(**filters: Any) -> list[WorkflowStatus]:
        """The workflows of queues that have not finished (ENQUEUED, DELAYED or
        PENDING), oldest first; filters ``queue_name``, ``status``, ``name``,
        ``start_time``, ``end_time``, ``limit``, ``offset``, ``sort_desc``,
        ``load_input``."""
        return management.list_queued_workflows(_rt(), **filters)

    @staticmethod
    async def list_queued_workflows_async(**filters: Any) -> list[WorkflowStatus]:
        return await _rt().run_blocking(
            functools.partial(DBOS.list_queued_workflows, **filters))

    @staticmethod
    def list_workflow_steps(workflow_id: str) -> list[dict[str, Any]]:
        return management.list_steps(_rt(), workflow_id)

    @staticmethod
    async def list_workflow_steps_async(workflow_id: str) -> list[dict[str, Any]]:
        return await _rt().run_blocking(DBOS.list_workflow_steps, workflow_id)

    @staticmethod
    def cancel_workflow(workflow_id: str) -> None:
        management.cancel(_rt(), workflow_id)

    @staticmethod
    async def cancel_workflow_async(workflow_id: str) -> None:
        await _rt().run_blocking(DBOS.cancel_workflow, workflow_id)

    @staticmethod
    def resume_workflow(workflow_id: str) -> WorkflowHandle[Any]:
        management.resume(_rt(), workflow_id)
        return WorkflowHandle(_rt(), workflow_id)

    @staticmethod
    async def resume_workflow_async(workflow_id: str) -> WorkflowHandleAsync[Any]:
        await _rt().run_blocking(DBOS.resume_workflow, workflow_id)
        return WorkflowHandleAsync(_rt(), workflow_id)

    @staticmethod
    def fork_workflow(workflow_id: str, start_step: int, *,
                      application_version: str | None = None) -> WorkflowHandle[Any]:
        """A new workflow that replays ``workflow_id``'s steps before ``start_step``
        and runs the rest again."""
        new_id = management.fork(_rt(), workflow_id, start_step,
                                 new_workflow_id=context.take_next_workflow_id(),
                                 application_version=application_version)
        return WorkflowHandle(_rt(), new_id)

    @staticmethod
    async def fork_workflow_async(workflow_id: str, start_step: int, *,
                                  application_version: str | None = None
                                  ) -> WorkflowHandleAsync[Any]:
        handle = await _rt().run_blocking(_carry_next_id(
            functools.partial(DBOS.fork_workflow, workflow_id, start_step,
                              application_version=application_version)))
        return WorkflowHandleAsync(_rt(), handle.workflow_id)

    @staticmethod
    def garbage_collect(cutoff_epoch_timestamp_ms: int) -> int:
        """Delete workflows finished before the cutoff, with their history."""
        return _rt().store.garbage_collect(int(cutoff_epoch_timestamp_ms))

    # --- schedules --------------------------------------------------------------------

    @staticmethod
    def create_schedule(name: str, workflow_fn: Callable[..., Any], cron: str, *,
                        missed_tick_policy: str = "skip") -> schedules_mod.ScheduleInfo:
        """Create (or redefine) a schedule at run time, for every executor: it
        fires the first tick after now. Redefining keeps its paused state and
        cursor."""
        schedules_mod.check_schedule_name(name)
        spec = schedules_mod.parse_cron(cron)
        policy = schedules_mod.check_policy(missed_tick_policy)
        info = _workflow_info(workflow_fn)
        schedules_mod.check_signature(info.func, f"workflow {info.name!r}")
        rt = _rt()
        now = clock.now_ms()
        saved = rt.store.save_schedule(ScheduleRow(
            name=name, workflow_name=info.name, cron=spec.expression, last_tick_epoch_ms=now,
            missed_tick_policy=policy, defined_by="runtime", created_at=now, updated_at=now))
        return schedules_mod.info_of(saved)

    @staticmethod
    def list_schedules() -> list[schedules_mod.ScheduleInfo]:
        return [schedules_mod.info_of(r) for r in _rt().store.get_schedules()]

    @staticmethod
    def get_schedule(name: str) -> schedules_mod.ScheduleInfo:
        """The schedule; ScheduleNotFoundError when there is none by that name."""
        return schedules_mod.info_of(_schedule_row(name))

    @staticmethod
    def pause_schedule(name: str) -> None:
        """Stop firing the schedule (in every executor, within about a second)."""
        if not _rt().store.set_schedule_paused(name, True, clock.now_ms()):
            raise errors.ScheduleNotFoundError(name)

    @staticmethod
    def resume_schedule(name: str) -> None:
        """Fire the schedule again from its next tick; ticks that passed while it
        was paused are not fired, whatever its missed-tick policy."""
        if not _rt().store.set_schedule_paused(name, False, clock.now_ms()):
            raise errors.ScheduleNotFoundError(name)

    @staticmethod
    def delete_schedule(name: str) -> None:
        """Delete the schedule (its workflows stay). A schedule declared with
        @DBOS.scheduled is written again at the next launch of that code."""
        if not _rt().store.delete_schedule(name):
            raise errors.ScheduleNotFoundError(name)

    @staticmethod
    def trigger_schedule(name: str) -> WorkflowHandle[Any]:
        """Start the schedule's workflow once now (scheduled_time = now), outside
        its ticks; the ID is ``sched:<name>:trigger:<uuid>`` unless SetWorkflowID
        gives one."""
        import uuid

        from relos.runtime.scheduler import start_tick

        rt = _rt()
        row = _schedule_row(name)
        info = registry.get_workflow(row.workflow_name)
        wid = context.take_next_workflow_id() or f"sched:{name}:trigger:{uuid.uuid4().hex}"
        return WorkflowHandle(rt, start_tick(rt, info, name, clock.now_ms(), wid))

    @staticmethod
    def backfill_schedule(name: str, start: Any, end: Any) -> list[WorkflowHandle[Any]]:
        """Start the schedule's workflow for every tick in [start, end)
        (datetimes, naive meaning UTC, or epoch ms), oldest first, each exactly
        once: a tick already started (by the scheduler or an earlier backfill)
        is not started again, and its handle is returned. At most
        ``relos.schedules.BACKFILL_MAX_TICKS`` (10000) ticks per call."""
        from relos.runtime.scheduler import start_tick

        rt = _rt()
        row = _schedule_row(name)
        info = registry.get_workflow(row.workflow_name)
        lo = schedules_mod.to_epoch_ms(start, "start")
        hi = schedules_mod.to_epoch_ms(end, "end")
        ticks = schedules_mod.parse_cron(row.cron, stored=True).ticks(
            lo - 1, hi - 1, schedules_mod.BACKFILL_MAX_TICKS + 1)
        if len(ticks) > schedules_mod.BACKFILL_MAX_TICKS:
            raise errors.ConfigError(
                f"backfilling schedule {name!r} from {start} to {end} would start more than "
                f"{schedules_mod.BACKFILL_MAX_TICKS} workflows: backfill a shorter range at "
                f"a time"
            )
        return [WorkflowHandle(rt, start_tick(rt, info, name, t)) for t in ticks]

    # --- application versions -----------------------------------------------------------

    @staticmethod
    def list_application_versions() -> list[ApplicationVersion]:
        """Every application version executors have launched with, the latest
        first."""
        return _rt().store.list_application_versions()

    @staticmethod
    def get_latest_application_version() -> ApplicationVersion:
        """The latest application version: the one whose executors dequeue the
        workflows enqueued without a version."""
        latest = _rt().store.get_latest_application_version()
        if latest is None:  # only if the table was emptied by hand
            raise errors.RelosError(
                "no application version is recorded: relaunch an executor to record its own")
        return latest

    @staticmethod
    def set_latest_application_version(version_name: str) -> None:
        """Make a known version the latest (its timestamp becomes now), e.g. to
        roll back a deploy: from then on only its executors dequeue workflows
        enqueued without a version (every executor notices within about a
        second). Raises ApplicationVersionNotFoundError for an unknown name."""
        rt = _rt()
        if not rt.store.set_latest_application_version(version_name, clock.now_ms()):
            known = [v.version_name for v in rt.store.list_application_versions()]
            raise errors.ApplicationVersionNotFoundError(version_name, known)
        if rt.queue_runner is not None:
            rt.queue_runner.latest_version_changed()

    # --- context ----------------------------------------------------------------------

    @classproperty
    def workflow_id(cls) -> str | None:
        ctx = context.current()
        return ctx.workflow_id if ctx else None

    @classproperty
    def step_id(cls) -> int | None:
        ctx = context.current()
        return ctx.step_id if ctx else None

    @classproperty
    def logger(cls) -> logging.Logger:
        return logger

    @classproperty
    def sql_connection(cls) -> Any:
        """The DB-API connection of the running ``@DBOS.transaction``."""
        conn = context._tx_connection.get()
        if conn is None:
            raise errors.RelosError(
                "DBOS.sql_connection is only available inside a @DBOS.transaction function"
            )
        return conn

    @classproperty
    def sql_session(cls) -> Any:
        """A SQLAlchemy session bound to the running ``@DBOS.transaction``."""
        from relos.runtime import sqla

        return sqla.session()

    @classproperty
    def config(cls) -> Config | None:
        return _instance._config if _instance else None


def _schedule_row(name: str) -> ScheduleRow:
    found = _rt().store.get_schedules([name])
    if not found:
        raise errors.ScheduleNotFoundError(name)
    return found[0]


def _carry_next_id(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` for ``run_blocking``, taking this context's SetWorkflowID ID now:
    ``run_blocking`` runs ``fn`` in a copy of the context, where taking it would
    leave it set here for every later start."""
    workflow_id = context.take_next_workflow_id()

    def call(*args: Any) -> T:
        if workflow_id is not None:
            context._next_workflow_id.set(workflow_id)
        return fn(*args)

    return call


def _wrap_step(info: StepInfo) -> Any:
    if info.is_async:
        @functools.wraps(info.func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await steps.run_step_async(_rt(), info, args, kwargs)

        return run_async

    @functools.wraps(info.func)
    def run(*args: Any, **kwargs: Any) -> Any:
        return steps.run_step(_rt(), info, args, kwargs)

    return run


def _configure_logging(level: str) -> None:
    logger.setLevel(level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s relos [%(workflow_id)s:%(step_id)s] %(message)s"
        ))
        logger.addHandler(handler)
