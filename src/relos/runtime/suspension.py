"""Suspended workflows: a long wait holds no thread.

A workflow blocked in ``DBOS.sleep``, ``DBOS.recv`` or ``DBOS.get_event`` for
longer than ``suspend_after_seconds`` is *suspended*: the wait raises
:class:`Suspend`, which unwinds the workflow's stack to
:func:`relos.runtime.workflow.execute`; that writes the suspension (status
stays PENDING, owner cleared, a wake-up time and what it waits for set) and
releases the thread. From then on the workflow is only rows.

Every executor runs a :class:`Waker` thread. It sleeps until the earliest
wake-up time among the suspended workflows it can run (or until told of an
earlier one: a suspension written here, a send or set_event that woke one,
here or, on PostgreSQL, anywhere through NOTIFY; polling is the fallback),
claims the due ones atomically (one executor wins each), and resumes each by
deterministic replay, exactly as recovery does: its recorded steps return their
outputs, the wait finds its wake-up time (or its timeout, message or event)
recorded, and the function continues live from there.

Why these rules:

* :class:`Suspend` derives from ``BaseException`` so that workflow code's
  ``except Exception`` cannot swallow it (``finally`` blocks and context
  managers do run as the stack unwinds, and run again on replay).
* A sleep's length is known, so a sleep longer than the threshold is
  suspended at once; a recv or get_event first waits the threshold in its
  thread (most waits are short) and is suspended after that.
* The wake-up time is never later than the workflow's deadline, so a
  suspended workflow's timeout still fires: resumed at its deadline, it is
  cancelled (see :func:`relos.runtime.workflow.adopt`).
* Recovery never claims a suspended workflow (it has no owner to be dead); a
  cancelled one is never claimed by the waker (it is no longer PENDING).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from relos import errors
from relos.runtime import clock, registry
from relos.runtime.context import WorkflowContext
from relos.runtime.failures import FailureLog
from relos.runtime.unanswered import UnansweredClaims
from relos.store.base import PENDING, StepRow, WorkflowRow

if TYPE_CHECKING:
    from relos.runtime.runtime import ActiveWorkflow, Runtime

logger = logging.getLogger("relos")

#: The most workflows the waker claims in one statement.
CLAIM_BATCH = 500
_LOOKING = 2**63


class Suspend(BaseException):  # noqa: N818 - a signal, not an error
    """Raised by a wait to unwind a workflow that is being suspended; caught by
    the code that runs the workflow, never seen by the user."""

    def __init__(self, wake_at_ms: int, topic: str | None = None,
                 event: tuple[str, str] | None = None, step: StepRow | None = None) -> None:
        super().__init__(wake_at_ms)
        self.wake_at_ms = wake_at_ms
        #: What the workflow waits for: a message on ``topic``, or the event
        #: (workflow ID, key); neither for a sleep.
        self.topic = topic
        self.event = event
        #: The sleep's record, not written yet: it goes with the suspension.
        self.step = step


def check_sleep(rt: Runtime, ctx: WorkflowContext, end: float,
                step: StepRow | None = None) -> None:
    """Suspend the workflow (raise :class:`Suspend`) if its sleep until ``end``
    (epoch seconds) lasts longer than the threshold. ``step`` is the sleep's
    record when it is not written yet (a first run): the suspension writes it
    in its own transaction, one commit for both."""
    after = rt.config.suspend_after_seconds
    if after is not None and end - clock.now() > after:
        ctx.check_cancelled()
        raise Suspend(int(end * 1000), step=step)


def check_wait(rt: Runtime, ctx: WorkflowContext, end: float, waited: float, *,
               topic: str | None = None, event: tuple[str, str] | None = None) -> float | None:
    """For a recv or get_event that has waited ``waited`` seconds so far and
    times out at ``end``: suspend it (raise :class:`Suspend`) once it has waited
    the threshold; else return how much longer it may wait in its thread
    before being suspended (None: never)."""
    after = rt.config.suspend_after_seconds
    if after is None:
        return None
    if waited >= after and end > clock.now():
        ctx.check_cancelled()
        raise Suspend(int(end * 1000), topic, event)
    return max(0.0, after - waited)


def write(rt: Runtime, aw: ActiveWorkflow, signal: Suspend) -> None:
    """Record the suspension of a workflow whose stack ``signal`` unwound, and
    settle its future: ``WorkflowSuspendedError`` (waiters read the row from
    then on), or why it could not be suspended (the workflow was cancelled or
    taken over meanwhile; on a database error it stays PENDING and owned here,
    like any run stopped by one)."""
    ctx = aw.ctx
    now = clock.now_ms()
    wake_at = signal.wake_at_ms
    if ctx.deadline_epoch_ms is not None:
        wake_at = min(wake_at, ctx.deadline_epoch_ms)
    try:
        ctx.flush()
        written = rt.store.suspend_workflow(ctx.workflow_id, rt.instance_id, wake_at, now,
                                            topic=signal.topic, event=signal.event,
                                            step=signal.step)
        row = None if written is not None else rt.store.get_workflow(ctx.workflow_id)
    except errors.RelosError as exc:
        if isinstance(exc, errors.DatabaseUnreachableError):
            rt.start_again_later(ctx.workflow_id, exc)  # (not suspended: still PENDING here)
        aw.set_exception(exc)
        return
    if written is None:
        if row is not None and row.status != PENDING:
            aw.set_exception(errors.WorkflowCancelledError(ctx.workflow_id))
        else:
            aw.set_exception(errors.WorkflowConflictError(
                f"workflow {ctx.workflow_id!r} is owned by another process now"))
        return
    logger.debug("workflow %s suspended until %d", ctx.workflow_id, written)
    rt.waker.note(written)
    aw.set_exception(errors.WorkflowSuspendedError(ctx.workflow_id))


class Waker:
    """Resumes due suspended workflows in this process (one thread)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        #: When the waker next looks (epoch ms); _LOOKING while it looks now
        #: (a note then makes it look once more: the round may have missed it).
        self._planned_ms = _LOOKING
        #: Claimed workflows handed to the workflow threads and not yet
        #: tracked there (they will take a thread: the next claim leaves room).
        self._starting = 0
        self._lock = threading.Lock()
        #: Claims whose commit went unanswered: taken in at each round.
        self._unanswered = UnansweredClaims(rt)
        self._failures = FailureLog("waking suspended workflows")

    def note(self, wake_at_ms: int) -> None:
        """A workflow was suspended (or woken) here: look earlier if it is due
        before the waker would next look."""
        if wake_at_ms < self._planned_ms:
            self.rt.notifier.notify("wake", "*")

    def run(self, stop: threading.Event) -> None:
        rt = self.rt
        with rt.notifier.subscribe([("wake", "*")]) as woke:
            while not stop.is_set():
                woke.clear()
                self._planned_ms = _LOOKING
                try:
                    delay = self.round()
                    self._failures.succeeded()
                except Exception as exc:  # the loop must outlive any one failure
                    if stop.is_set():
                        return
                    self._failures.failed(exc)
                    delay = rt.poll_interval
                self._planned_ms = clock.now_ms() + int(delay * 1000)
                if delay > 0:
                    woke.wait(delay)

    def round(self) -> float:
        """Claim and resume the due workflows this process has room for; how
        long to wait before the next round (at most one poll interval)."""
        rt = self.rt
        poll = rt.poll_interval
        with self._lock:
            starting = self._starting
        room = min(rt.free_workflow_slots() - starting, CLAIM_BATCH)
        names = sorted(registry.workflows())
        if room <= 0:
            # Every thread is busy: look again soon (a finishing workflow
            # does not announce itself to the waker).
            return min(poll, 0.005)
        rows = [r for _, taken in self._unanswered.take() for r in taken]
        stamp = clock.stamp_ms(clock.OTHER_CLAIMS)  # (this claim's own: unanswered.py)
        try:
            rows += rt.store.claim_due_workflows(rt.instance_id, rt.config.executor_id, stamp,
                                                 room - len(rows), rt.app_version, names)
        except errors.DatabaseUnreachableError:
            self._unanswered.note(stamp, None)
            if not rows:
                raise
            logger.warning("waking suspended workflows failed: the database is unreachable")
        if rows:
            with self._lock:
                self._starting += len(rows)
            for i, row in enumerate(rows):
                # Its steps are loaded on the thread that runs it, not here:
                # the waker goes on claiming meanwhile.
                try:
                    rt.workflow_pool.submit(self._resume, row)
                except RuntimeError:  # shutting down: recovered after this process
                    with self._lock:
                        self._starting -= len(rows) - i
                    raise
        if len(rows) == room:
            return 0.0
        nxt = rt.store.next_wake_time(rt.app_version, names)
        if nxt is None:
            return poll
        delay = min(poll, max(0.0, (nxt - clock.now_ms()) / 1000))
        # Due but not claimed: another executor holds it this instant.
        return delay if delay > 0 or rows else min(poll, 0.01)


    def _resume(self, row: WorkflowRow) -> None:
        """On a workflow thread: load a claimed workflow's steps and replay it."""
        from relos.runtime import workflow

        rt = self.rt
        try:
            start = workflow.adopt(rt, row, load_steps=True)
        except errors.RelosError as exc:
            logger.error("cannot resume suspended workflow %s: %s", row.workflow_id, exc)
            if isinstance(exc, errors.DatabaseUnreachableError):
                rt.start_again_later(row.workflow_id, exc)  # (claimed here: not left stranded)
            return
        finally:
            with self._lock:
                self._starting -= 1
        if start is None or start.run is None:
            return
        info = registry.get_workflow(row.name)
        if info.is_async:
            workflow.dispatch(rt, info, start)
        else:
            workflow.execute(rt, info, start)
