"""Queues: workflows started later, by any executor, within limits.

``Queue(name, ...)`` declares a queue in code; ``queue.enqueue(fn, *args)``
records the workflow as ENQUEUED (one transaction) and returns its handle at
once. Every executor that listens to the queue dequeues from it, and the
queue's limits hold across all of them because they are enforced in the
dequeue transaction (see :mod:`relos.store.queue_sql`):

- ``concurrency``: at most this many of the queue's workflows run at once in
  the whole cluster (per partition, for a partitioned queue);
- ``worker_concurrency``: at most this many at once in each executor process;
- ``limiter={"limit": n, "period": s}``: at most ``n`` starts in any ``s``
  seconds;
- ``priority_enabled``: lower ``priority`` values start first;
- ``partition_queue``: each ``queue_partition_key`` is limited on its own.

The limits are stored in the database (table ``queues``) at launch, and
``DBOS.register_queue`` changes them at run time for every executor.
"""

from __future__ import annotations

import contextvars
import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from relos import errors, identifiers
from relos.store.base import QueueRow

if TYPE_CHECKING:
    from collections.abc import Callable

    from relos.runtime.handles import WorkflowHandle, WorkflowHandleAsync

_queues: dict[str, Queue] = {}
_lock = threading.Lock()
#: The longest delay or limiter period accepted (about 31 years): beyond it the
#: times in milliseconds would not fit the database's 64-bit integers.
_MAX_SECONDS = 1e9
#: The largest limit: the database stores limits as 32-bit integers.
_MAX_INT = 2**31 - 1


def _positive_int(value: Any, what: str, queue: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_INT:
        raise errors.ConfigError(
            f"queue {queue!r}: {what} must be a whole number >= 1 (or None for no limit), "
            f"at most {_MAX_INT}, not {value!r}"
        )
    return value


def queue_row(name: str, concurrency: int | None = None, worker_concurrency: int | None = None,
              limiter: dict[str, Any] | None = None, priority_enabled: bool = False,
              partition_queue: bool = False, defined_by: str = "code") -> QueueRow:
    """Validate queue settings; the row to store. Raises ConfigError."""
    if not isinstance(name, str) or not name.strip():
        raise errors.ConfigError("a queue needs a non-empty string name")
    identifiers.check(name, "the queue name")
    concurrency = _positive_int(concurrency, "concurrency", name)
    worker_concurrency = _positive_int(worker_concurrency, "worker_concurrency", name)
    if concurrency is not None and worker_concurrency is not None \
            and worker_concurrency > concurrency:
        raise errors.ConfigError(
            f"queue {name!r}: worker_concurrency ({worker_concurrency}) cannot exceed "
            f"concurrency ({concurrency}): no executor could ever use the difference"
        )
    rate_limit = rate_period_ms = None
    if limiter is not None:
        if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
            raise errors.ConfigError(
                f"queue {name!r}: limiter must be a dict with exactly the keys 'limit' and "
                f"'period', e.g. {{'limit': 50, 'period': 30}}, not {limiter!r}"
            )
        rate_limit = _positive_int(limiter["limit"], "limiter['limit']", name)
        period = limiter["period"]
        if not isinstance(period, (int, float)) or isinstance(period, bool) \
                or not math.isfinite(period) or period <= 0 or period > _MAX_SECONDS:
            raise errors.ConfigError(
                f"queue {name!r}: limiter['period'] must be a positive number of seconds, "
                f"not {period!r}"
            )
        # At least 1 ms: a period rounded down to 0 would switch the limit off.
        rate_period_ms = max(1, round(period * 1000))
    return QueueRow(name, concurrency, worker_concurrency, rate_limit, rate_period_ms,
                    bool(priority_enabled), bool(partition_queue), defined_by)


def describe(row: QueueRow, polling_interval_sec: float | None = None) -> str:
    """A queue's settings as they would be written in ``Queue(...)``."""
    parts = [f"{k}={v!r}" for k, v in (("concurrency", row.concurrency),
                                       ("worker_concurrency", row.worker_concurrency))
             if v is not None]
    if row.rate_limit is not None and row.rate_period_ms is not None:
        parts.append(f"limiter={{'limit': {row.rate_limit}, "
                     f"'period': {row.rate_period_ms / 1000:g}}}")
    parts += [f"{k}=True" for k, v in (("priority_enabled", row.priority_enabled),
                                       ("partition_queue", row.partitioned)) if v]
    if polling_interval_sec is not None:
        parts.append(f"polling_interval_sec={polling_interval_sec:g}")
    return ", ".join(parts) or "no limits"


def check_polling_interval(name: str, seconds: Any) -> float | None:
    if seconds is None:
        return None
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) \
            or not math.isfinite(seconds) or not 0.001 <= seconds <= 3600:
        raise errors.ConfigError(
            f"queue {name!r}: polling_interval_sec must be a number of seconds from 0.001 "
            f"to 3600 (or None for the executor's poll_interval_seconds), not {seconds!r}")
    return float(seconds)


class Queue:
    """A named queue of workflows; see the module documentation."""

    def __init__(self, name: str, concurrency: int | None = None,
                 limiter: dict[str, Any] | None = None, *,
                 worker_concurrency: int | None = None, priority_enabled: bool = False,
                 partition_queue: bool = False, polling_interval_sec: float | None = None
                 ) -> None:
        self.row = queue_row(name, concurrency, worker_concurrency, limiter, priority_enabled,
                             partition_queue)
        self.name = name
        #: How often at most an idle executor listening to this queue looks for
        #: its work unprompted (None: the executor's poll_interval_seconds).
        self.polling_interval_sec = check_polling_interval(name, polling_interval_sec)
        #: The settings as declared in code (``row`` follows DBOS.register_queue;
        #: None for a queue that only DBOS.register_queue made).
        self.declared: QueueRow | None = self.row
        with _lock:
            before = _queues.get(name)
            if before is not None and before.declared is not None and (
                    before.declared != self.declared
                    or before.polling_interval_sec != self.polling_interval_sec):
                raise errors.ConfigError(
                    f"queue {name!r} is already defined with other settings "
                    f"({describe(before.declared, before.polling_interval_sec)}; now "
                    f"{describe(self.row, self.polling_interval_sec)}): "
                    f"define each queue once, or change its limits at run time with "
                    f"DBOS.register_queue({name!r}, ...)")
            _queues[name] = self
        from relos import dbos

        rt = dbos._runtime
        if rt is not None and rt.launched:
            # Defined after the launch: the dequeuer listens to it from now on
            # (and stores its row; see QueueRunner.settings).
            rt.notifier.notify("queues", "*")

    @classmethod
    def stored(cls, row: QueueRow) -> Queue:
        """A handle on a queue only the database knows (DBOS.register_queue in
        another process): it enqueues, but this process does not listen to it."""
        queue = cls.__new__(cls)
        queue.row, queue.name, queue.declared = row, row.name, None
        queue.polling_interval_sec = None
        return queue

    # The limits as currently known here (the database's copy wins at run time).
    @property
    def concurrency(self) -> int | None:
        return self.row.concurrency

    @property
    def worker_concurrency(self) -> int | None:
        return self.row.worker_concurrency

    @property
    def priority_enabled(self) -> bool:
        return self.row.priority_enabled

    @property
    def partition_queue(self) -> bool:
        return self.row.partitioned

    def enqueue(self, func: Callable[..., Any], *args: Any, **kwargs: Any
                ) -> WorkflowHandle[Any]:
        """Record the workflow as ENQUEUED and return its handle; an executor
        listening to this queue runs it when the limits allow."""
        from relos.dbos import _rt, _workflow_info
        from relos.runtime import enqueueing
        from relos.runtime.handles import WorkflowHandle

        rt = _rt()
        [wid] = enqueueing.enqueue(rt, _workflow_info(func), self, [(args, kwargs)])
        return WorkflowHandle(rt, wid)

    async def enqueue_async(self, func: Callable[..., Any], *args: Any, **kwargs: Any
                            ) -> WorkflowHandleAsync[Any]:
        from relos.dbos import _rt, _workflow_info
        from relos.runtime import context, enqueueing
        from relos.runtime.handles import WorkflowHandleAsync

        rt = _rt()
        info = _workflow_info(func)
        options = current_options()
        # run_blocking runs in a copy of this context: take the SetWorkflowID ID
        # here, so it names this workflow only (as enqueue does), not every later one.
        given_id = context.take_next_workflow_id()

        def call() -> list[str]:
            if given_id is not None:
                context._next_workflow_id.set(given_id)
            return enqueueing.enqueue(rt, info, self, [(args, kwargs)], options)

        [wid] = await rt.run_blocking(call)
        return WorkflowHandleAsync(rt, wid)

    def enqueue_many(self, func: Callable[..., Any], calls: Iterable[Any]
                     ) -> list[WorkflowHandle[Any]]:
        """Enqueue one workflow per item of ``calls`` in one transaction. An item
        is a tuple of positional arguments, ``relos.queues.Call(args, kwargs)``
        for keyword arguments too, or any other value: the one argument."""
        from relos.dbos import _rt, _workflow_info
        from relos.runtime import enqueueing
        from relos.runtime.handles import WorkflowHandle

        if isinstance(calls, (str, bytes, dict)) or not isinstance(calls, Iterable):
            raise errors.ConfigError(
                f"enqueue_many takes an iterable of calls (a list of argument tuples, "
                f"say), not {type(calls).__name__}: enqueue_many(fn, [(1,), (2,)])")
        rt = _rt()
        batch: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
            (item, {}) if type(item) is tuple else as_call(item) for item in calls]
        ids = enqueueing.enqueue(rt, _workflow_info(func), self, batch)
        return [WorkflowHandle(rt, wid) for wid in ids]

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"


def as_call(item: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One item of ``enqueue_many``'s calls as (args, kwargs)."""
    if isinstance(item, Call):
        return tuple(item.args), dict(item.kwargs or {})
    if isinstance(item, tuple):  # a subclass (a named tuple)
        return item, {}
    return (item,), {}


@dataclass(frozen=True)
class Call:
    """One call in ``Queue.enqueue_many``: positional and keyword arguments."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.kwargs is None:
            object.__setattr__(self, "kwargs", {})


@dataclass(frozen=True)
class EnqueueSettings:
    deduplication_id: str | None = None
    priority: int | None = None
    delay_seconds: float | None = None
    queue_partition_key: str | None = None
    app_version: str | None = None
    return_existing: bool = False


_NO_OPTIONS = EnqueueSettings()
_options: contextvars.ContextVar[EnqueueSettings | None] = contextvars.ContextVar(
    "relos_enqueue_options", default=None
)


def current_options() -> EnqueueSettings:
    return _options.get() or _NO_OPTIONS


class SetEnqueueOptions:
    """Options for workflows enqueued in the block::

        with SetEnqueueOptions(deduplication_id="order-7", priority=1):
            queue.enqueue(process_order, 7)

    ``deduplication_id``: refuse (QueueDeduplicatedError) a second unfinished
    workflow with this ID in the queue, or with ``return_existing=True`` return
    the existing one's handle; ``priority``: lower runs first (queues with
    ``priority_enabled``); ``delay_seconds``: start no earlier than this (status
    DELAYED until then); ``queue_partition_key``: the partition (partitioned
    queues); ``app_version``: only executors of this version may run it.
    """

    def __init__(self, *, deduplication_id: str | None = None, priority: int | None = None,
                 delay_seconds: float | None = None, queue_partition_key: str | None = None,
                 app_version: str | None = None, return_existing: bool = False) -> None:
        if deduplication_id is not None and (
                not isinstance(deduplication_id, str) or not deduplication_id):
            raise errors.ConfigError("deduplication_id must be a non-empty string")
        if deduplication_id is not None:
            identifiers.check(deduplication_id, "the deduplication_id")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                     or not 0 <= priority <= 2**31 - 1):
            raise errors.ConfigError(
                f"priority must be a whole number from 0 (first) to 2147483647, not {priority!r}")
        if delay_seconds is not None and (
                not isinstance(delay_seconds, (int, float)) or isinstance(delay_seconds, bool)
                or not math.isfinite(delay_seconds) or not 0 <= delay_seconds <= _MAX_SECONDS):
            raise errors.ConfigError(
                f"delay_seconds must be a number of seconds >= 0 (at most {_MAX_SECONDS:.0e}), "
                f"not {delay_seconds!r}")
        if queue_partition_key is not None:
            if not isinstance(queue_partition_key, str):
                raise errors.ConfigError("queue_partition_key must be a string")
            identifiers.check(queue_partition_key, "the queue_partition_key")
        if app_version is not None:
            if not isinstance(app_version, str) or not app_version:
                raise errors.ConfigError(
                    f"app_version must be a non-empty string (an application version, "
                    f"as `relos versions list` shows them), not {app_version!r}")
            identifiers.check(app_version, "the app_version")
        self.options = EnqueueSettings(deduplication_id, priority, delay_seconds,
                                      queue_partition_key, app_version, return_existing)
        self._token: contextvars.Token[EnqueueSettings | None] | None = None

    def __enter__(self) -> SetEnqueueOptions:
        self._token = _options.set(replace(self.options))
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _options.reset(self._token)


def registered() -> dict[str, Queue]:
    with _lock:
        return dict(_queues)


def get(name: str) -> Queue | None:
    # One read of the registry needs no lock (a dict lookup is atomic in
    # CPython); the queue runner asks this once per finished workflow.
    return _queues.get(name)
