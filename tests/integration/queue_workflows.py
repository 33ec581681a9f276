"""What the queue tests share: their queues, workflows that record when
their steps run (``spans``), so limits are checked on what actually ran, and
helpers. Imported by ``test_queues.py`` and ``test_queue_usage.py``; some
names are also registered by ``queue_app.py``, run as another process.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbhelpers import eventually
from relos import (
    DBOS,
    Queue,
    QueueDeduplicatedError,
    SetEnqueueOptions,
    WorkflowHandle,
)
from relos.store import SystemStore
from relos.store.base import ListFilter

APP = Path(__file__).with_name("queue_app.py")
DEADLINE = 30.0

basic_queue = Queue("tq_basic")
conc_queue = Queue("tq_conc", concurrency=2)
worker_queue = Queue("tq_worker", worker_concurrency=2)
rate_queue = Queue("tq_rate", limiter={"limit": 3, "period": 1})
prio_queue = Queue("tq_prio", concurrency=1, priority_enabled=True)
dedup_queue = Queue("tq_dedup")
part_queue = Queue("tq_part", concurrency=1, partition_queue=True)
fair_a = Queue("tq_fair_a")
fair_b = Queue("tq_fair_b")
fair_block = Queue("tq_fair_block")
dyn_queue = Queue("tq_dyn", concurrency=1)
listen_a = Queue("tq_listen_a")
listen_b = Queue("tq_listen_b")
cancel_queue = Queue("tq_cancel", concurrency=1)
timeout_queue = Queue("tq_timeout", concurrency=1)
notify_queue = Queue("qapp_notify")  # also defined by queue_app.py


# --- what the workflows record ---------------------------------------------------------


@dataclass
class Span:
    key: Any
    workflow_id: str
    start: float
    end: float | None = None


_lock = threading.Lock()
spans: dict[str, list[Span]] = defaultdict(list)
gates: dict[str, threading.Event] = {}
calls: Counter[str] = Counter()


def new_tag() -> str:
    return uuid.uuid4().hex


def new_gate() -> str:
    name = uuid.uuid4().hex
    gates[name] = threading.Event()
    return name


def started(tag: str) -> list[Span]:
    with _lock:
        return sorted(spans[tag], key=lambda s: s.start)


def started_keys(tag: str) -> list[Any]:
    return [s.key for s in started(tag)]


def running(tag: str) -> int:
    with _lock:
        return sum(1 for s in spans[tag] if s.end is None)


def peak(tag: str) -> int:
    """The most steps of ``tag`` that were running at the same moment."""
    with _lock:
        marks = [(s.start, 1) for s in spans[tag]] + [
            (s.end if s.end is not None else float("inf"), -1) for s in spans[tag]]
    now = top = 0
    for _, delta in sorted(marks):  # at equal times an end (-1) sorts before a start
        now += delta
        top = max(top, now)
    return top


def overlap(a: Span, b: Span) -> bool:
    assert a.end is not None and b.end is not None
    return a.start < b.end and b.start < a.end


@DBOS.step()
def tq_span_step(tag: str, key: Any, seconds: float, gate: str | None) -> Any:
    span = Span(key, DBOS.workflow_id or "-", time.time())
    with _lock:
        spans[tag].append(span)
    if gate is not None:
        assert gates[gate].wait(DEADLINE), "the test never opened the gate"
    if seconds:
        time.sleep(seconds)
    with _lock:
        span.end = time.time()
    return key


@DBOS.workflow()
def tq_timed(tag: str, key: Any, seconds: float = 0.0) -> Any:
    calls[f"timed:{tag}"] += 1
    return tq_span_step(tag, key, seconds, None)


@DBOS.workflow()
def tq_gated(tag: str, key: Any, gate: str) -> Any:
    """Runs until the test opens ``gate``."""
    return tq_span_step(tag, key, 0.0, gate)


@DBOS.workflow()
def tq_add(a: int, b: int = 0) -> int:
    calls["tq_add"] += 1
    return a + b


@DBOS.workflow()
def tq_sleepy(tag: str, seconds: float) -> str:
    tq_span_step(tag, "sleepy", 0.0, None)
    DBOS.sleep(seconds)
    return "woke"


@DBOS.workflow()
def tq_child(tag: str, x: int) -> int:
    calls[f"child:{tag}"] += 1
    return x * 10


@DBOS.workflow()
def tq_parent(tag: str, x: int) -> list[Any]:
    handle = basic_queue.enqueue(tq_child, tag, x)  # function_id 0
    return [handle.workflow_id, handle.get_result(), tq_span_step(tag, "after", 0.0, None)]


@DBOS.workflow()
def tq_parent_many(tag: str) -> list[Any]:
    handles = basic_queue.enqueue_many(tq_child, [(tag, 1), (tag, 2)])  # function_id 0
    return [[h.workflow_id for h in handles], [h.get_result() for h in handles]]


@DBOS.workflow()
def tq_dedup_parent(tag: str, dedup_id: str, return_existing: bool) -> str:
    try:
        with SetEnqueueOptions(deduplication_id=dedup_id, return_existing=return_existing):
            handle = dedup_queue.enqueue(tq_timed, tag, "from-parent")  # function_id 0
    except QueueDeduplicatedError as exc:
        return f"deduplicated by {exc.existing_id}"
    return handle.workflow_id


@DBOS.workflow()
async def tq_async_wf(x: int) -> int:
    await asyncio.sleep(0)
    return x * 3


@DBOS.workflow()
async def tq_async_parent(x: int) -> list[Any]:
    handle = await basic_queue.enqueue_async(tq_async_wf, x)
    return [handle.workflow_id, await handle.get_result()]


@DBOS.step(name="tq.notify_step")
def tq_notify_step() -> float:
    return time.time()


@DBOS.workflow(name="qapp.notify_target")
def tq_notify_target(enqueued_at: float) -> list[float]:
    """queue_app.py enqueues this (by name) from another process."""
    return [enqueued_at, tq_notify_step()]


# --- helpers ---------------------------------------------------------------------------


def wait_until(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    return eventually(check, timeout, 0.005, what)


def status_of(handle: WorkflowHandle[Any] | str) -> str:
    wid = handle if isinstance(handle, str) else handle.workflow_id
    st = DBOS.get_workflow_status(wid)
    assert st is not None, wid
    return st.status


def results(handles: list[WorkflowHandle[Any]]) -> list[Any]:
    return [h.get_result(timeout_seconds=DEADLINE) for h in handles]


def workflows_named(store: SystemStore, name: str) -> list[str]:
    return [r.workflow_id for r in store.list_workflows(ListFilter(name=name))]


@contextmanager
def launched(db_url: str, listen: list[Any] | None = None, **config: Any) -> Iterator[None]:
    """A runtime with extra configuration (instead of the ``dbos`` fixture's),
    dequeueing only from ``listen`` if given."""
    DBOS.destroy()
    DBOS(config={"system_database_url": db_url, "executor_lease_seconds": 2,
                 "recovery_interval_seconds": 0.5, **config})
    if listen is not None:
        DBOS.listen_queues(listen)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()
