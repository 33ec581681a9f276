"""Per-workflow execution state, carried in context variables.

A :class:`WorkflowContext` exists for each running workflow. It hands out the
deterministic function IDs that key the step log, and holds the recorded steps
of a recovered workflow (loaded once, then consulted in memory). Because it
lives in a ``contextvars.ContextVar``, sync code on the workflow's thread and
async code in the workflow's task both see it, and ``run_blocking`` carries it
into helper threads.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relos import errors, identifiers

if TYPE_CHECKING:
    from relos.store.base import StepRow


_EVENT_LOCK = threading.Lock()


@dataclass
class WorkflowContext:
    workflow_id: str
    name: str
    #: Recorded steps by function_id; None for a fresh workflow (nothing to replay).
    recorded: dict[int, StepRow] | None = None
    deadline_epoch_ms: int | None = None
    authenticated_user: str | None = None
    next_id: int = 0
    #: The function_id of the step now running (None between steps).
    step_id: int | None = None
    #: Set when the workflow is cancelled; created on first use (see ``cancelled``).
    _cancel_event: threading.Event | None = None
    #: The outcome of the last step, not written yet. It is written before the
    #: workflow's next durable action (every one starts by taking a function
    #: ID) or with the workflow's completion, in the same transaction: a
    #: one-step workflow commits once. Until then a crash re-runs the step,
    #: which steps allow (at least once), and nothing the workflow did after
    #: the step has reached the database.
    unwritten: list[StepRow] = field(default_factory=list)
    #: Writes ``unwritten`` (set by the runtime; None: steps are written at once).
    write_unwritten: Callable[[WorkflowContext], None] | None = None

    def next_function_id(self) -> int:
        if self.unwritten:
            self.flush()
        fid = self.next_id
        self.next_id += 1
        return fid

    def flush(self) -> None:
        """Write the held step outcome now (raises what writing it raises)."""
        if self.unwritten and self.write_unwritten is not None:
            self.write_unwritten(self)

    def replayed(self, function_id: int, called: str) -> StepRow | None:
        """The recorded step at ``function_id``, checking it is the same call."""
        if self.recorded is None:
            return None
        rec = self.recorded.get(function_id)
        if rec is not None and rec.function_name != called:
            raise errors.NonDeterministicWorkflowError(
                self.workflow_id, function_id, rec.function_name, called
            )
        return rec

    @property
    def cancelled(self) -> threading.Event:
        """The event set when this workflow is cancelled (most workflows never
        wait on it, so it is made only when first asked for)."""
        event = self._cancel_event
        if event is None:
            with _EVENT_LOCK:
                if self._cancel_event is None:
                    self._cancel_event = threading.Event()
                event = self._cancel_event
        return event

    def check_cancelled(self) -> None:
        event = self._cancel_event
        if event is not None and event.is_set():
            raise errors.WorkflowCancelledError(self.workflow_id)


_workflow: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "relos_workflow", default=None
)
#: True while a step (or transaction) body runs: nested steps then run as plain calls.
_in_step: contextvars.ContextVar[bool] = contextvars.ContextVar("relos_in_step", default=False)
#: Options for the next workflow started in this context (SetWorkflowID, ...).
_next_workflow_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "relos_next_workflow_id", default=None
)
_next_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "relos_next_timeout", default=None
)
#: The DB-API connection of the running @DBOS.transaction.
_tx_connection: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "relos_tx_connection", default=None
)


def current() -> WorkflowContext | None:
    """The running workflow's context, or None outside a workflow."""
    return _workflow.get()


def in_step() -> bool:
    return _in_step.get()


def set_workflow(ctx: WorkflowContext | None) -> contextvars.Token[WorkflowContext | None]:
    return _workflow.set(ctx)


def reset_workflow(token: contextvars.Token[WorkflowContext | None]) -> None:
    _workflow.reset(token)


def enter_step() -> contextvars.Token[bool]:
    return _in_step.set(True)


def leave_step(token: contextvars.Token[bool]) -> None:
    _in_step.reset(token)


def take_next_workflow_id() -> str | None:
    """The ID set by SetWorkflowID for the next workflow, consumed by this call."""
    wid = _next_workflow_id.get()
    if wid is not None:
        _next_workflow_id.set(None)
    return wid


def next_timeout() -> float | None:
    return _next_timeout.get()


class SetWorkflowID:
    """``with SetWorkflowID("id"):`` gives the next workflow started in the block
    that ID, making the start idempotent: a second start with the same ID returns
    the first one's handle (or result) instead of running again."""

    def __init__(self, workflow_id: str) -> None:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise errors.ConfigError("SetWorkflowID needs a non-empty string ID")
        self.workflow_id = identifiers.check(workflow_id, "the workflow ID")
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> SetWorkflowID:
        self._token = _next_workflow_id.set(self.workflow_id)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _next_workflow_id.reset(self._token)


class SetWorkflowTimeout:
    """``with SetWorkflowTimeout(seconds):`` gives workflows started in the block a
    deadline; a workflow still running at its deadline is cancelled (its children
    inherit the deadline). ``None`` removes an enclosing timeout."""

    def __init__(self, workflow_timeout_sec: float | None) -> None:
        if workflow_timeout_sec is not None and (
            not isinstance(workflow_timeout_sec, (int, float)) or workflow_timeout_sec <= 0
        ):
            raise errors.ConfigError(
                f"SetWorkflowTimeout needs a positive number of seconds, "
                f"not {workflow_timeout_sec!r}"
            )
        self.timeout = workflow_timeout_sec
        self._token: contextvars.Token[float | None] | None = None

    def __enter__(self) -> SetWorkflowTimeout:
        self._token = _next_timeout.set(self.timeout)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _next_timeout.reset(self._token)
