"""Steps and transactions: run once, record the outcome, replay it on recovery.

A step's first execution costs one INSERT of its outcome and nothing else: the
decision to run it is made in memory (a fresh workflow has nothing recorded; a
recovered one loaded its steps once). In a sync workflow that INSERT is held
until the workflow's next durable action or its completion, and committed with
it (``WorkflowContext.unwritten``). A plain step is at-least-once (the
process can die after the step ran and before its record committed). A
``@DBOS.transaction`` writes its record inside the user's database transaction,
so its effects happen exactly once.

Sync and async steps share planning and recording; only the call differs.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relos import errors, serialization
from relos.runtime import clock, context
from relos.runtime.context import WorkflowContext
from relos.runtime.registry import StepInfo
from relos.store.base import StepRow

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime


@dataclass
class Plan:
    """What to do for one step call."""

    ctx: WorkflowContext | None  # None: not in a workflow (or nested): a plain call
    function_id: int = -1
    replay: StepRow | None = None
    started_at: int = 0


def plan(info_name: str) -> Plan:
    """Allocate the step's function ID and look up its recorded outcome (no I/O)."""
    ctx = context.current()
    if ctx is None or context.in_step():
        return Plan(None)
    fid = ctx.next_function_id()
    rec = ctx.replayed(fid, info_name)
    if rec is None:
        ctx.check_cancelled()
    return Plan(ctx, fid, rec, clock.now_ms())


def replay(rt: Runtime, rec: StepRow) -> Any:
    """Return (or raise) what a step recorded."""
    if rec.error is not None:
        raise serialization.deserialize_exception(rt.serializer, rec.error)
    return None if rec.output is None else rt.serializer.loads(rec.output)


def step_row(rt: Runtime, p: Plan, name: str, kind: str, output: str | None,
             error: str | None) -> StepRow:
    assert p.ctx is not None
    return StepRow(p.ctx.workflow_id, p.function_id, name, kind, output, error, p.started_at,
                   clock.now_ms(), executor_id=rt.config.executor_id)


def outcome_row(rt: Runtime, p: Plan, info: StepInfo, result: Any,
                exc: BaseException | None) -> tuple[StepRow, BaseException | None]:
    """The record for a step's outcome; a result that cannot be serialized
    becomes the step's error."""
    if exc is None:
        try:
            out = serialization.serialize_value(
                rt.serializer, result, f"the return value of step {info.name!r}"
            )
            return step_row(rt, p, info.name, info.kind, out, None), None
        except errors.SerializationError as ser_exc:
            exc = ser_exc
    err = serialization.serialize_exception(rt.serializer, exc)
    return step_row(rt, p, info.name, info.kind, None, err), exc


def record(rt: Runtime, p: Plan, info: StepInfo, result: Any, exc: BaseException | None) -> Any:
    """Record the outcome (one commit), then return the result or raise the error."""
    if isinstance(exc, errors.WorkflowCancelledError) or (
        exc is not None and not isinstance(exc, Exception)
    ):
        raise exc
    row, exc = outcome_row(rt, p, info, result, exc)
    ctx = p.ctx
    if ctx is not None and ctx.write_unwritten is not None:
        ctx.unwritten.append(row)  # written with the workflow's next write
    else:
        rt.store.record_step(row)
    if exc is not None:
        raise exc
    return result


def enter(p: Plan) -> Token[bool]:
    """Mark a step body as running (pair with :func:`leave` in a ``finally``;
    plain calls, not a context manager: this is on every step's path)."""
    if p.ctx is not None:
        p.ctx.step_id = p.function_id
    return context.enter_step()


def leave(p: Plan, token: Token[bool]) -> None:
    context.leave_step(token)
    if p.ctx is not None:
        p.ctx.step_id = None


def _give_up(info: StepInfo, failures: list[Exception]) -> Exception:
    if info.retry.retries_allowed:
        return errors.MaxStepRetriesExceededError(info.name, len(failures), failures)
    return failures[-1]


def _backoff(p: Plan, info: StepInfo, attempt: int) -> float:
    """Seconds to wait before the next attempt; raises if the workflow was cancelled."""
    if p.ctx is not None:
        p.ctx.check_cancelled()
    return info.retry.delay(attempt)


def call(info: StepInfo, p: Plan, args: tuple[Any, ...], kwargs: dict[str, Any]
         ) -> tuple[Any, BaseException | None]:
    """Run a sync step body with its retry policy: (result, error)."""
    failures: list[Exception] = []
    for attempt in range(1, info.retry.attempts() + 1):
        token = enter(p)
        try:
            return info.func(*args, **kwargs), None
        except Exception as exc:
            failures.append(exc)
        finally:
            leave(p, token)
        if attempt < info.retry.attempts():
            delay = _backoff(p, info, attempt)
            if p.ctx is not None and p.ctx.cancelled.wait(delay):
                return None, errors.WorkflowCancelledError(p.ctx.workflow_id)
            if p.ctx is None:
                time.sleep(delay)
    return None, _give_up(info, failures)


async def call_async(info: StepInfo, p: Plan, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> tuple[Any, BaseException | None]:
    """As :func:`call` for an ``async def`` step."""
    failures: list[Exception] = []
    for attempt in range(1, info.retry.attempts() + 1):
        token = enter(p)
        try:
            return await info.func(*args, **kwargs), None
        except Exception as exc:
            failures.append(exc)
        finally:
            leave(p, token)
        if attempt < info.retry.attempts():
            await asyncio.sleep(_backoff(p, info, attempt))
    return None, _give_up(info, failures)


def run_step(rt: Runtime, info: StepInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    p = plan(info.name)
    if p.replay is not None:
        return replay(rt, p.replay)
    result, exc = call(info, p, args, kwargs)
    if p.ctx is None:
        if exc is not None:
            raise exc
        return result
    return record(rt, p, info, result, exc)


async def run_step_async(rt: Runtime, info: StepInfo, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
    p = plan(info.name)
    if p.replay is not None:
        return replay(rt, p.replay)
    result, exc = await call_async(info, p, args, kwargs)
    if p.ctx is None:
        if exc is not None:
            raise exc
        return result
    return await rt.run_blocking(record, rt, p, info, result, exc)
