"""Durable sleep, messages, events and streams.

Each is a step of the calling workflow (its outcome recorded under a function
ID), so a recovered workflow gets the same answers: a sleep's wake-up time is
recorded before it sleeps (a restarted workflow sleeps only the remainder), a
received message is consumed and recorded in one transaction (never lost, never
delivered twice), and a wait's timeout is recorded when the wait begins.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from relos import errors, identifiers, serialization
from relos.runtime import clock, context, suspension
from relos.runtime.context import WorkflowContext
from relos.store.base import TERMINAL_STATUSES, StepRow

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

DEFAULT_TOPIC = ""


def _row(rt: Runtime, ctx: WorkflowContext, fid: int, name: str, output: str | None,
         started: int) -> StepRow:
    return StepRow(ctx.workflow_id, fid, name, name, output, None, started, clock.now_ms(),
                   executor_id=rt.config.executor_id)


def _workflow_only(what: str) -> WorkflowContext:
    ctx = context.current()
    if ctx is None or context.in_step():
        raise errors.RelosError(
            f"DBOS.{what} must be called from a workflow (not from a step or outside one)"
        )
    return ctx


def _check_seconds(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
        raise errors.ConfigError(f"{what} must be a number of seconds, not {value!r}")
    return float(value)


# --- sleep -------------------------------------------------------------------------------


def sleep_until(rt: Runtime, seconds: float) -> tuple[WorkflowContext | None, float]:
    """Record (or replay) the wake-up time; returns (ctx, wake-up epoch seconds)."""
    seconds = max(0.0, _check_seconds(seconds, "DBOS.sleep's argument"))
    ctx = None if context.in_step() else context.current()
    if ctx is None:
        return None, clock.now() + seconds
    fid = ctx.next_function_id()
    rec = ctx.replayed(fid, "DBOS.sleep")
    if rec is not None:
        return ctx, float(rt.serializer.loads(rec.output or "0")) / 1000
    ctx.check_cancelled()
    started = clock.now_ms()
    end_ms = started + int(seconds * 1000)
    step = _row(rt, ctx, fid, "DBOS.sleep", str(end_ms), started)
    # A long sleep is suspended at once, its record written with the suspension.
    suspension.check_sleep(rt, ctx, end_ms / 1000, step)
    rt.store.record_step(step)
    return ctx, end_ms / 1000


def sleep(rt: Runtime, seconds: float) -> None:
    ctx, end = sleep_until(rt, seconds)
    _wait_until(rt, ctx, end)


def _wait_until(rt: Runtime, ctx: WorkflowContext | None, end: float) -> None:
    while True:
        remaining = end - clock.now()
        if remaining <= 0:
            return
        if ctx is None:
            time.sleep(remaining)
            return
        suspension.check_sleep(rt, ctx, end)
        if ctx.cancelled.wait(remaining):
            raise errors.WorkflowCancelledError(ctx.workflow_id)


# --- messages ------------------------------------------------------------------------------


def send(rt: Runtime, destination_id: str, message: Any, topic: str | None,
         idempotency_key: str | None) -> None:
    if not isinstance(destination_id, str) or not destination_id:
        raise errors.ConfigError("DBOS.send needs the destination workflow's ID (a string)")
    topic = _topic(topic)
    text = serialization.serialize_value(rt.serializer, message, "the message given to DBOS.send")
    ctx = None if context.in_step() else context.current()
    now = clock.now_ms()
    if ctx is None:
        message_id = (f"key:{destination_id}:{idempotency_key}" if idempotency_key
                      else uuid.uuid4().hex)
        woke = rt.store.send(destination_id, topic, text, message_id, None, now, None)
    else:
        fid = ctx.next_function_id()
        if ctx.replayed(fid, "DBOS.send") is not None:
            return
        ctx.check_cancelled()
        message_id = f"wf:{ctx.workflow_id}:{fid}"
        woke = rt.store.send(destination_id, topic, text, message_id, ctx.workflow_id, now,
                             _row(rt, ctx, fid, "DBOS.send", None, now))
    rt.notifier.notify("notifications", destination_id)
    if woke:  # the destination was suspended: resume it now
        rt.waker.note(now)


def _topic(topic: str | None) -> str:
    if topic is None:
        return DEFAULT_TOPIC
    if not isinstance(topic, str):
        raise errors.ConfigError(f"a topic must be a string, not {type(topic).__name__}")
    return identifiers.check(topic, "the topic")


def _durable_wait(rt: Runtime, ctx: WorkflowContext, name: str, timeout: float,
                  keys: list[tuple[str, str]], attempt: Callable[[int], Any | None], *,
                  topic: str | None = None, event: tuple[str, str] | None = None) -> Any:
    """The shared shape of recv and get_event inside a workflow: function ID
    ``fid`` records the answer, ``fid + 1`` the deadline (recorded only if the
    answer was not there at once). ``attempt(fid)`` returns the answer's text or
    None; on timeout the answer recorded is None. A wait longer than
    ``suspend_after_seconds`` is suspended, waiting for a message on ``topic``
    or for ``event`` (see suspension.py)."""
    timeout = max(0.0, _check_seconds(timeout, "timeout_seconds"))
    fid = ctx.next_function_id()
    timeout_fid = ctx.next_function_id()
    rec = ctx.replayed(fid, name)
    if rec is not None:
        return None if rec.output is None else rt.serializer.loads(rec.output)
    sleep_rec = ctx.replayed(timeout_fid, "DBOS.sleep")
    end = None if sleep_rec is None else float(sleep_rec.output or "0") / 1000
    began = time.monotonic()
    with rt.notifier.subscribe(keys + [("cancel", ctx.workflow_id)]) as woke:
        while True:
            woke.clear()
            ctx.check_cancelled()
            found = attempt(fid)
            if found is not None:
                return rt.serializer.loads(found)
            now = clock.now_ms()
            if end is None:
                end = now / 1000 + timeout
                rt.store.record_step(_row(rt, ctx, timeout_fid, "DBOS.sleep",
                                          str(int(end * 1000)), now))
            remaining = end - clock.now()
            if remaining <= 0:
                rt.store.record_step(_row(rt, ctx, fid, name, rt.serializer.dumps(None), now))
                return None
            before_suspending = suspension.check_wait(
                rt, ctx, end, time.monotonic() - began, topic=topic, event=event)
            if before_suspending is not None:
                remaining = min(remaining, before_suspending)
            woke.wait(min(remaining, rt.poll_interval))


def recv(rt: Runtime, topic: str | None, timeout_seconds: float) -> Any:
    ctx = _workflow_only("recv")
    topic = _topic(topic)

    def attempt(fid: int) -> str | None:
        now = clock.now_ms()
        step = _row(rt, ctx, fid, "DBOS.recv", None, now)
        return rt.store.recv(ctx.workflow_id, topic, step, now)

    return _durable_wait(rt, ctx, "DBOS.recv", timeout_seconds,
                         [("notifications", ctx.workflow_id)], attempt, topic=topic)


# --- events --------------------------------------------------------------------------------


def set_event(rt: Runtime, key: str, value: Any) -> None:
    ctx = context.current()
    if ctx is None:
        raise errors.RelosError("DBOS.set_event must be called from a workflow or its steps")
    if not isinstance(key, str):
        raise errors.ConfigError(f"an event key must be a string, not {type(key).__name__}")
    identifiers.check(key, "the event key")
    text = serialization.serialize_value(rt.serializer, value, f"the value of event {key!r}")
    now = clock.now_ms()
    if context.in_step():
        woke = rt.store.set_event(ctx.workflow_id, key, text, now, None, ctx.step_id)
    else:
        fid = ctx.next_function_id()
        if ctx.replayed(fid, "DBOS.setEvent") is not None:
            return
        ctx.check_cancelled()
        woke = rt.store.set_event(ctx.workflow_id, key, text, now,
                                  _row(rt, ctx, fid, "DBOS.setEvent", None, now))
    rt.notifier.notify("events", ctx.workflow_id)
    if woke:  # workflows suspended waiting for it: resume them now
        rt.waker.note(now)


def get_event(rt: Runtime, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    ctx = None if context.in_step() else context.current()
    keys = [("events", workflow_id)]
    if ctx is not None:
        def attempt(fid: int) -> str | None:
            found, value = rt.store.get_event(workflow_id, key)
            if not found:
                return None
            now = clock.now_ms()
            rt.store.record_step(_row(rt, ctx, fid, "DBOS.getEvent", value, now))
            return value

        return _durable_wait(rt, ctx, "DBOS.getEvent", timeout_seconds, keys, attempt,
                             event=(workflow_id, key))
    end = clock.now() + max(0.0, _check_seconds(timeout_seconds, "timeout_seconds"))
    with rt.notifier.subscribe(keys) as woke:
        while True:
            woke.clear()
            found, value = rt.store.get_event(workflow_id, key)
            if found:
                return None if value is None else rt.serializer.loads(value)
            remaining = end - clock.now()
            if remaining <= 0:
                return None
            woke.wait(min(remaining, rt.poll_interval))


def get_all_events(rt: Runtime, workflow_id: str) -> dict[str, Any]:
    return {k: (None if v is None else rt.serializer.loads(v))
            for k, v in rt.store.get_all_events(workflow_id).items()}


# --- streams -------------------------------------------------------------------------------


def write_stream(rt: Runtime, key: str, value: Any, closed: bool = False) -> None:
    ctx = context.current()
    what = "close_stream" if closed else "write_stream"
    if ctx is None:
        raise errors.RelosError(f"DBOS.{what} must be called from a workflow or its steps")
    if not isinstance(key, str):
        raise errors.ConfigError(f"a stream key must be a string, not {type(key).__name__}")
    identifiers.check(key, "the stream key")
    text = None if closed else serialization.serialize_value(
        rt.serializer, value, f"the value written to stream {key!r}")
    now = clock.now_ms()
    if context.in_step():
        rt.store.write_stream(ctx.workflow_id, key, text, closed, now, None, ctx.step_id)
    else:
        name = "DBOS.closeStream" if closed else "DBOS.writeStream"
        fid = ctx.next_function_id()
        if ctx.replayed(fid, name) is not None:
            return
        ctx.check_cancelled()
        rt.store.write_stream(ctx.workflow_id, key, text, closed, now,
                              _row(rt, ctx, fid, name, None, now), fid)
    rt.notifier.notify("streams", ctx.workflow_id)


def read_stream(rt: Runtime, workflow_id: str, key: str) -> Iterator[Any]:
    """Yield the stream's values in order until it is closed or its workflow ends."""
    position = 0
    keys = [("streams", workflow_id), ("status", workflow_id)]
    while True:
        # Subscribed before reading, so a write between the read and the wait
        # ends the wait at once; never subscribed while the consumer holds a value.
        with rt.notifier.subscribe(keys) as woke:
            entries = rt.store.read_stream(workflow_id, key, position)
            if not entries:
                row = rt.store.get_workflow(workflow_id)
                if row is None:
                    raise errors.NonExistentWorkflowError(workflow_id)
                if row.status in TERMINAL_STATUSES:
                    if not rt.store.read_stream(workflow_id, key, position):
                        return
                    continue
                woke.wait(rt.poll_interval)
                continue
        for pos, value, closed in entries:
            if closed:
                return
            position = pos + 1
            yield None if value is None else rt.serializer.loads(value)
