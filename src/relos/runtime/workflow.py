"""Starting, running, finishing and recovering workflows.

A workflow start is one atomic insert of its status row (with its inputs);
from then on the row is the truth. The caller that created the row, or that
won the claim on a PENDING row whose owner died, runs the function; everyone
else gets a handle that waits for the row to reach a terminal status.

Sync and async workflows share everything here except the one line that calls
the user's function (:func:`execute` and :func:`execute_async`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relos import errors, serialization
from relos.runtime import clock, context, ids, registry, suspension
from relos.runtime.commits import Write
from relos.runtime.context import WorkflowContext
from relos.runtime.registry import WorkflowInfo
from relos.store.base import (
    CANCELLED,
    DELAYED,
    ENQUEUED,
    ERROR,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    PENDING,
    SUCCESS,
    TERMINAL_STATUSES,
    Completion,
    StepRow,
    WorkflowRow,
)

if TYPE_CHECKING:
    from relos.runtime.runtime import ActiveWorkflow, Runtime

logger = logging.getLogger("relos")

#: Failures of the machinery, not of the workflow: the workflow stays PENDING
#: (or CANCELLED) and is finished later by whoever owns it.
_NOT_THE_WORKFLOWS_FAULT = (
    errors.WorkflowCancelledError,
    errors.WorkflowConflictError,
    errors.DatabaseUnreachableError,
    errors.NotLaunchedError,
)

#: Refusals of an outcome's write that leave nothing to rerun here: the
#: workflow was cancelled or taken over meanwhile, or this runtime is
#: stopping (recovery, by the next process, finishes it).
_NOT_UNWRITTEN = (
    errors.WorkflowCancelledError,
    errors.WorkflowConflictError,
    errors.NotLaunchedError,
)


@dataclass
class Start:
    """The outcome of asking to start a workflow."""

    workflow_id: str
    #: Set when the caller must run the workflow now (it created or claimed it).
    run: ActiveWorkflow | None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


def begin(rt: Runtime, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Start:
    """Create the workflow's row (or find the existing one) before anything runs."""
    parent = None if context.in_step() else context.current()
    workflow_id = context.take_next_workflow_id()
    timeout = context.next_timeout()
    function_id: int | None = None
    if parent is not None:
        function_id = parent.next_function_id()
        rec = parent.replayed(function_id, info.name)
        if rec is not None and rec.child_workflow_id:
            workflow_id = rec.child_workflow_id
        elif workflow_id is None:
            workflow_id = f"{parent.workflow_id}-{function_id}"
    if workflow_id is None:
        workflow_id = ids.new_id()
    inputs = serialization.serialize_inputs(
        rt.serializer, info.func, args, kwargs, f"workflow {info.name!r}"
    )
    now = clock.now_ms()
    deadline = None
    if timeout is not None:
        deadline = now + int(timeout * 1000)
    elif parent is not None:
        deadline = parent.deadline_epoch_ms
    row = WorkflowRow(
        workflow_id=workflow_id, status=PENDING, name=info.name,
        executor_id=rt.config.executor_id, created_at=now, updated_at=now, inputs=inputs,
        owner=rt.instance_id, application_version=rt.app_version,
        application_id=rt.config.name,
        authenticated_user=parent.authenticated_user if parent else None,
        parent_workflow_id=parent.workflow_id if parent else None,
        timeout_ms=int(timeout * 1000) if timeout is not None else None,
        deadline_epoch_ms=deadline, started_at=now,
    )
    with rt.starting(workflow_id):
        if parent is not None and function_id is not None:
            step = StepRow(parent.workflow_id, function_id, info.name, "child", None, None, now,
                           now, child_workflow_id=workflow_id, executor_id=rt.config.executor_id)
            existing = rt.store.insert_child_workflow(row, step)
        else:
            existing = rt.store.insert_workflow(row)
        if existing is None:
            ctx = WorkflowContext(workflow_id, info.name, recorded=None,
                                  deadline_epoch_ms=deadline,
                                  authenticated_user=row.authenticated_user)
            return Start(workflow_id, rt.track(ctx, hold_steps=not info.is_async, starting=True),
                         args, kwargs)
    return _attach(rt, info, existing)  # (outside: it may claim the row to run it here)


def _attach(rt: Runtime, info: WorkflowInfo, row: WorkflowRow) -> Start:
    """The ID already exists: reuse it, never run it twice."""
    if row.name != info.name:
        raise errors.WorkflowConflictError(
            f"workflow ID {row.workflow_id!r} is already used by workflow {row.name!r}, "
            f"not {info.name!r}: use another ID"
        )
    if row.status != PENDING or rt.active(row.workflow_id) is not None:
        return Start(row.workflow_id, None)
    if row.owner == rt.instance_id:
        # This process claimed it and is about to run it (a recovery or a
        # dequeue between its claim and its start): never claim it again.
        return Start(row.workflow_id, None)
    if row.owner is not None and rt.owner_alive(row.owner):
        return Start(row.workflow_id, None)
    return _claim(rt, row, True) or Start(row.workflow_id, None)


_ANY_OWNER = object()


def recover(rt: Runtime, workflow_id: str, expected_owner: object = _ANY_OWNER, *,
            counted: bool = True) -> Start | None:
    """Claim a PENDING workflow whose owner is gone and start it on the workflow
    threads. ``expected_owner`` is the owner the caller found dead: if the row
    has another owner by now (someone else claimed it), leave it alone. Returns
    None when another process got it first. Not ``counted``: this start (or,
    for a queued workflow, its next dequeue) does not add to its recovery
    attempts (its last run was stopped by the database: ``again.py``)."""
    row = rt.store.get_workflow(workflow_id)
    if row is None or row.status != PENDING:
        return None
    if expected_owner is not _ANY_OWNER and row.owner != expected_owner:
        return None
    if row.wake_at_epoch_ms is not None:
        return None  # suspended: not stuck, the waker resumes it when due
    registry.get_workflow(row.name)  # unknown function: raise before claiming
    if row.queue_name is not None:
        # A queued workflow goes back to its queue, so the queue's limits hold.
        if rt.store.requeue(row.workflow_id, row.owner, clock.now_ms(), counted=counted):
            rt.notifier.notify("queues", row.queue_name)
        return None
    start = _claim(rt, row, counted)
    if start is not None and start.run is not None:
        dispatch(rt, registry.get_workflow(row.name), start)
    return start


def recover_many(rt: Runtime, workflow_ids: list[str], expected_owner: str | None
                 ) -> tuple[list[str], list[str]]:
    """:func:`recover` for many workflows of one dead owner, in a few
    statements rather than three per workflow: claim those that are not
    queued and whose function this process has (one UPDATE), read their
    steps (one SELECT), start each; send the queued ones back to their queues
    (one UPDATE). Returns the IDs claimed here and the IDs left for
    :func:`recover` to look at one by one (claimed meanwhile by another
    process, suspended, or of a function this code does not define: it says
    which)."""
    now = clock.stamp_ms(clock.OTHER_CLAIMS)
    try:
        claimed = rt.store.claim_workflows(workflow_ids, expected_owner, rt.instance_id,
                                           rt.config.executor_id, now,
                                           sorted(registry.workflows()))
    except errors.DatabaseUnreachableError as exc:
        _perhaps_claimed(rt, workflow_ids, exc)
        raise
    started: list[str] = []
    if claimed:
        try:
            steps = rt.store.load_steps_many([row.workflow_id for row in claimed])
        except Exception as exc:
            for row in claimed:  # (claimed by this process: started again by it, later)
                rt.start_again_later(row.workflow_id, exc)
            raise
        for row in claimed:
            try:
                start = adopt(rt, row, load_steps=False, recorded=steps.get(row.workflow_id, {}))
            except Exception as exc:
                logger.exception("cannot start recovered workflow %s: trying again later",
                                 row.workflow_id)
                rt.start_again_later(row.workflow_id, exc)
                continue
            if start is None:
                continue  # (dead-lettered, or cancelled past its deadline)
            started.append(row.workflow_id)
            if start.run is not None:
                dispatch(rt, registry.get_workflow(row.name), start)
    done = {row.workflow_id for row in claimed}
    rest = [w for w in workflow_ids if w not in done]
    for workflow_id, queue_name in rt.store.requeue_many(rest, expected_owner, now):
        done.add(workflow_id)
        rt.notifier.notify("queues", queue_name)
    return started, [w for w in rest if w not in done]


def _claim(rt: Runtime, row: WorkflowRow, counted: bool) -> Start | None:
    try:
        claimed = rt.store.claim_workflow(
            row.workflow_id, row.owner, rt.instance_id, rt.config.executor_id,
            clock.stamp_ms(clock.OTHER_CLAIMS), counted=counted)
    except errors.DatabaseUnreachableError as exc:
        _perhaps_claimed(rt, [row.workflow_id], exc)
        raise
    if claimed is None:
        return None
    try:
        return adopt(rt, claimed, load_steps=True)
    except Exception as exc:
        rt.start_again_later(row.workflow_id, exc)  # (claimed by this process: not stranded)
        raise


def _perhaps_claimed(rt: Runtime, workflow_ids: list[str],
                     exc: errors.DatabaseUnreachableError) -> None:
    """A claim of these workflows went unanswered (the connection lost): if
    it committed they are PENDING under this process and run nowhere. The
    maintenance thread looks at each once the database answers and starts
    those that are this process's (``Runtime.start_again_later``)."""
    for workflow_id in workflow_ids:
        rt.start_again_later(workflow_id, exc)


def adopt(rt: Runtime, claimed: WorkflowRow, *, load_steps: bool,
          recorded: dict[int, StepRow] | None = None) -> Start | None:
    """Prepare a workflow this process just claimed (by recovery or dequeue)
    to run here: dead-letter it past its recovery attempts, cancel it past its
    deadline, else load its recorded steps (when it may have some, unless
    given as ``recorded``) and track it."""
    now = clock.now_ms()
    info = registry.get_workflow(claimed.name)
    if claimed.recovery_attempts > info.max_recovery_attempts + 1:
        rt.store.set_workflow_status(claimed.workflow_id, MAX_RECOVERY_ATTEMPTS_EXCEEDED, now,
                                     only_if=frozenset({PENDING}))
        rt.notifier.notify("status", claimed.workflow_id)
        logger.error("workflow %s exceeded %d recovery attempts: dead-lettered",
                     claimed.workflow_id, info.max_recovery_attempts)
        return None
    if claimed.deadline_epoch_ms is not None and claimed.deadline_epoch_ms <= now:
        rt.store.set_workflow_status(claimed.workflow_id, CANCELLED, now,
                                     only_if=frozenset({PENDING}))
        rt.notifier.notify("status", claimed.workflow_id)
        return None
    args, kwargs = serialization.deserialize_inputs(rt.serializer, claimed.inputs or "null")
    if load_steps:
        recorded = rt.store.load_steps(claimed.workflow_id)
    ctx = WorkflowContext(
        claimed.workflow_id, claimed.name, recorded=recorded,
        deadline_epoch_ms=claimed.deadline_epoch_ms,
        authenticated_user=claimed.authenticated_user,
    )
    return Start(claimed.workflow_id, rt.track(ctx, hold_steps=not info.is_async),
                 tuple(args), dict(kwargs))


def dispatch(rt: Runtime, info: WorkflowInfo, start: Start) -> None:
    """Run a started workflow in the background (thread pool or event loop)."""
    assert start.run is not None
    if info.is_async:
        rt.submit_coroutine(execute_async(rt, info, start))
    else:
        rt.workflow_pool.submit(execute, rt, info, start)


def execute(rt: Runtime, info: WorkflowInfo, start: Start, lead_commit: bool = True) -> None:
    """Run a sync workflow on this thread; the outcome goes to its future.
    Without ``lead_commit`` the outcome is always written by the committer
    thread, never by this one (see ``GroupCommitter.submit``)."""
    aw = start.run
    assert aw is not None
    token = context.set_workflow(aw.ctx)
    # A SetWorkflowTimeout around a direct call was for this workflow: its
    # children inherit its deadline instead of getting the timeout afresh.
    timeout_token = context._next_timeout.set(None)
    handed_over = False  # to the committer, which untracks it once written
    try:
        result = info.func(*start.args, **(start.kwargs or {}))
    except suspension.Suspend as signal:
        suspension.write(rt, aw, signal)
    except BaseException as exc:
        handed_over = _fail(rt, aw, exc, wait=False, lead=lead_commit)
    else:
        handed_over = _succeed(rt, aw, result, wait=False, lead=lead_commit)
    finally:
        context._next_timeout.reset(timeout_token)
        context.reset_workflow(token)
        if not handed_over:
            rt.untrack(aw.ctx.workflow_id)


async def execute_async(rt: Runtime, info: WorkflowInfo, start: Start) -> None:
    """Run an async workflow in the current event loop; as :func:`execute`."""
    aw = start.run
    assert aw is not None
    token = context.set_workflow(aw.ctx)
    timeout_token = context._next_timeout.set(None)  # as in execute
    handed_over = False
    try:
        result = await info.func(*start.args, **(start.kwargs or {}))
    except suspension.Suspend as signal:
        await rt.run_blocking(suspension.write, rt, aw, signal)
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError) and aw.ctx.cancelled.is_set():
            exc = errors.WorkflowCancelledError(aw.ctx.workflow_id)  # runtime shutting down
        # Waits for the commit (off the event loop): the caller reads the future next.
        handed_over = await rt.run_blocking(_fail, rt, aw, exc, True)
    else:
        handed_over = await rt.run_blocking(_succeed, rt, aw, result, True)
    finally:
        context._next_timeout.reset(timeout_token)
        context.reset_workflow(token)
        if not handed_over:
            rt.untrack(aw.ctx.workflow_id)


def _succeed(rt: Runtime, aw: ActiveWorkflow, result: Any, wait: bool, lead: bool = True
             ) -> bool:
    """Record the success (with the last step's record) through the group
    committer; the future gets the result once it is written. Returns True:
    the committer untracks the workflow."""
    ctx = aw.ctx
    try:
        output = serialization.serialize_value(
            rt.serializer, result, f"the return value of workflow {ctx.name!r}"
        )
    except errors.SerializationError as exc:
        return _fail(rt, aw, exc, wait, lead)

    def done(error: BaseException | None) -> None:
        if error is None:
            aw.set_result(result)
        else:
            aw.set_exception(error)

    return _complete(rt, aw, Completion(ctx.workflow_id, SUCCESS, output, None, clock.now_ms()),
                     done, wait, lead)


def _fail(rt: Runtime, aw: ActiveWorkflow, exc: BaseException, wait: bool, lead: bool = True
          ) -> bool:
    """Record the failure as :func:`_succeed` records a success; the future gets
    ``exc`` (whether or not it could be recorded). A failure of the machinery
    (cancelled, taken over, database gone) records nothing. Returns whether
    the committer untracks the workflow (else the caller does)."""
    ctx = aw.ctx
    if isinstance(exc, errors.WorkflowCancelledError) and ctx.cancelled.is_set():
        exc = errors.WorkflowCancelledError(ctx.workflow_id)
    if not isinstance(exc, Exception) or isinstance(exc, _NOT_THE_WORKFLOWS_FAULT):
        ctx.unwritten = []
        if isinstance(exc, errors.DatabaseUnreachableError):
            # Stopped by the database, not by its code: still PENDING under
            # this process, it runs again (replayed from its recorded steps)
            # once the database answers.
            rt.start_again_later(ctx.workflow_id, exc)
        aw.set_exception(exc)
        return False
    if ctx.deadline_epoch_ms is not None and clock.now_ms() >= ctx.deadline_epoch_ms:
        # Failed past its deadline (typically because what it awaited was
        # cancelled by the same deadline): the outcome is the cancellation,
        # whichever the deadline reached first.
        ctx.unwritten = []
        try:
            rt.store.set_workflow_status(ctx.workflow_id, CANCELLED, clock.now_ms(),
                                         only_if=frozenset({PENDING}))
        except errors.RelosError as store_exc:
            logger.error("cannot cancel workflow %s past its deadline: %s", ctx.workflow_id,
                         store_exc)
        aw.set_exception(errors.WorkflowCancelledError(ctx.workflow_id))
        return False
    try:
        error = serialization.serialize_exception(rt.serializer, exc)
    except errors.RelosError as ser_exc:
        logger.error("cannot record the failure of workflow %s: %s", ctx.workflow_id, ser_exc)
        aw.set_exception(exc)
        return False

    def done(store_exc: BaseException | None) -> None:
        if store_exc is not None:
            logger.error("cannot record the failure of workflow %s: %s", ctx.workflow_id,
                         store_exc)
        aw.set_exception(exc)

    return _complete(rt, aw, Completion(ctx.workflow_id, ERROR, None, error, clock.now_ms()), done,
                     wait, lead)


def _complete(rt: Runtime, aw: ActiveWorkflow, completion: Completion,
              settle: Callable[[BaseException | None], None], wait: bool, lead: bool = True
              ) -> bool:
    steps, aw.ctx.unwritten = aw.ctx.unwritten, []
    workflow_id = aw.ctx.workflow_id

    def done(error: BaseException | None) -> None:
        settle(error)
        rt.untrack(workflow_id)
        if error is not None and not isinstance(error, _NOT_UNWRITTEN):
            rt.start_again_later(workflow_id, error)

    write = Write(steps, completion, done)
    if not wait:
        rt.release_thread(aw)
    try:
        rt.committer.submit(write, wait=wait, lead=lead)
    except errors.RelosError as exc:
        if not write.settled:  # refused before it was queued (shutting down)
            done(exc)
    return True


def outcome(rt: Runtime, start: Start) -> Any:
    """The result of a workflow the caller ran itself (``execute`` returned):
    its run's, or, if it was suspended, the row's once it finishes (here or
    in another process)."""
    assert start.run is not None
    try:
        return start.run.future.result()
    except errors.WorkflowSuspendedError:
        return wait_result(rt, start.workflow_id)


def result_from_row(rt: Runtime, row: WorkflowRow) -> Any:
    """The result a finished workflow's row records (or raise what it recorded)."""
    if row.status == SUCCESS:
        return rt.serializer.loads(row.output) if row.output is not None else None
    if row.status == ERROR:
        raise serialization.deserialize_exception(rt.serializer, row.error or "null")
    if row.status == CANCELLED:
        raise errors.AwaitedWorkflowCancelledError(row.workflow_id)
    if row.status == MAX_RECOVERY_ATTEMPTS_EXCEEDED:
        raise errors.MaxRecoveryAttemptsExceededError(row.workflow_id, row.recovery_attempts)
    raise AssertionError(f"status {row.status} is not terminal")


#: A workflow running in another process is awaited by reading its row (no
#: notice of its end reaches this process): the second reading this long
#: after the first, each next one twice as long after the last, up to the
#: poll interval. A short workflow's result is read within milliseconds of
#: its end, where a steady poll interval added up to a second on PostgreSQL
#: (benchmarks/bench_client.py: 1,003 -> 2.9 ms p50 for a one-step workflow,
#: at most 10 readings in its first second for a long one).
RESULT_FIRST_POLL_SECONDS = 0.002


def wait_result(rt: Runtime, workflow_id: str, timeout: float | None = None) -> Any:
    """Block until the workflow finishes (here or in any process); its result."""
    import time

    end = None if timeout is None else time.monotonic() + timeout
    stopped_here = False
    # A workflow waiting for another (its child) stops waiting when it is itself
    # cancelled or its runtime shuts down: it must not hold up destroy().
    waiter = None if context.in_step() else context.current()
    keys = [("status", workflow_id)]
    if waiter is not None:
        keys.append(("cancel", waiter.workflow_id))
    poll = RESULT_FIRST_POLL_SECONDS
    with rt.notifier.subscribe(keys) as woke:
        while True:
            woke.clear()
            if waiter is not None:
                waiter.check_cancelled()
            aw = None if stopped_here else rt.active(workflow_id)
            if aw is not None:
                remaining = None if end is None else max(0.0, end - time.monotonic())
                if waiter is not None:
                    remaining = (rt.poll_interval if remaining is None
                                 else min(remaining, rt.poll_interval))
                try:
                    return aw.future.result(remaining)
                except (errors.WorkflowCancelledError, errors.WorkflowConflictError,
                        errors.DatabaseUnreachableError):
                    # Stopped here without an outcome of its own (cancelled,
                    # another process owns it now, or stopped by the database,
                    # to run again): the row tells how it ends.
                    stopped_here = True
                    continue
                except concurrent.futures.TimeoutError:
                    if waiter is not None and (end is None or time.monotonic() < end):
                        continue  # re-check whether the waiter was cancelled
                    raise TimeoutError(
                        f"workflow {workflow_id!r} did not finish in time") from None
            row = rt.store.get_workflow(workflow_id)
            if row is None:
                raise errors.NonExistentWorkflowError(workflow_id)
            if row.status in TERMINAL_STATUSES:
                return result_from_row(rt, row)
            if row.status not in (PENDING, ENQUEUED, DELAYED):
                raise errors.StoreError(
                    f"workflow {workflow_id!r} has unknown status {row.status}")
            remaining = min(poll, rt.poll_interval)
            poll *= 2
            if end is not None:
                remaining = min(remaining, end - time.monotonic())
                if remaining <= 0:
                    raise TimeoutError(f"workflow {workflow_id!r} did not finish in time")
            woke.wait(remaining)
