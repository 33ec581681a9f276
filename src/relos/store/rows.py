"""The rows and values that cross the storage interface (:mod:`relos.store.base`):
workflow statuses, one plain dataclass per kind of row, and the column
order each row is read and written in. Times are integer milliseconds since
the Unix epoch; values are serialized text.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

#: Workflow status values (the state machine is documented in the migration).
PENDING = "PENDING"
SUCCESS = "SUCCESS"
ERROR = "ERROR"
CANCELLED = "CANCELLED"
ENQUEUED = "ENQUEUED"
DELAYED = "DELAYED"
MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
TERMINAL_STATUSES = frozenset({SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED})
#: Waiting in a queue: to start now, or (DELAYED) when the delay ends. An
#: enqueue of such rows is announced to the queue's listeners (PostgreSQL).
QUEUED_STATUSES = frozenset({ENQUEUED, DELAYED})
ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")
ALL_STATUSES = frozenset({PENDING, SUCCESS, ERROR, CANCELLED, ENQUEUED, DELAYED,
                          MAX_RECOVERY_ATTEMPTS_EXCEEDED})


@dataclass
class WorkflowRow:
    """One row of ``workflow_status``."""

    workflow_id: str
    status: str
    name: str
    executor_id: str
    created_at: int
    updated_at: int
    inputs: str | None = None
    output: str | None = None
    error: str | None = None
    owner: str | None = None
    class_name: str | None = None
    config_name: str | None = None
    application_version: str | None = None
    application_id: str | None = None
    authenticated_user: str | None = None
    assumed_role: str | None = None
    authenticated_roles: str | None = None
    parent_workflow_id: str | None = None
    forked_from: str | None = None
    queue_name: str | None = None
    deduplication_id: str | None = None
    priority: int = 0
    recovery_attempts: int = 1
    timeout_ms: int | None = None
    deadline_epoch_ms: int | None = None
    started_at: int | None = None
    completed_at: int | None = None
    queue_partition_key: str | None = None
    delay_until_epoch_ms: int | None = None
    #: Set while the workflow is suspended (PENDING, no owner): when it may be
    #: resumed, and what it waits for (see migration 0005).
    wake_at_epoch_ms: int | None = None
    waiting_for: str | None = None


#: Column order used by every query that reads or writes a whole WorkflowRow.
WORKFLOW_COLUMNS: tuple[str, ...] = tuple(WorkflowRow.__dataclass_fields__)
#: Columns of ``workflow_status`` beyond WORKFLOW_COLUMNS, nullable, read and
#: written by the queue SQL alone: whether the claim gave the workflow its
#: application version (to take it back if the workflow is given back unstarted).
WORKFLOW_SQL_ONLY_COLUMNS: tuple[str, ...] = ("version_from_claim",)
#: The columns of a row ``dequeue`` returns: what running the claimed workflow
#: needs. A tiny task's claim is most of its client-side cost, and half the
#: columns (outputs, errors, roles, links to other workflows) are always empty
#: or unused at that point; the rest of a claimed row keeps its defaults.
CLAIMED_COLUMNS: tuple[str, ...] = (
    "workflow_id", "status", "name", "executor_id", "created_at", "updated_at", "inputs",
    "owner", "authenticated_user", "queue_name", "priority", "recovery_attempts",
    "deadline_epoch_ms", "started_at", "application_version",
)


class RowBatch(Sequence[WorkflowRow]):
    """Workflow rows that differ only in their IDs and inputs (one enqueue
    call's): kept as the shared row and the two sequences, each row made only
    when asked for. A store may write the batch from the parts directly, and
    should read the inputs in order, a slice at a time: they may be made as
    they are read (see ``enqueueing._Inputs``)."""

    def __init__(self, shared: WorkflowRow, ids: Sequence[str],
                 inputs: Sequence[str | None]) -> None:
        if len(ids) != len(inputs):
            raise ValueError("a row batch needs one input per workflow ID")
        self.shared, self.ids, self.inputs = shared, ids, inputs
        self._template = vars(shared)

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> WorkflowRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[WorkflowRow]: ...

    def __getitem__(self, index: int | slice) -> WorkflowRow | list[WorkflowRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row: WorkflowRow = object.__new__(WorkflowRow)
        row.__dict__ = {**self._template, "workflow_id": self.ids[index],
                        "inputs": self.inputs[index]}
        return row


@dataclass
class StepRow:
    """One row of ``operation_outputs``: a step a workflow performed."""

    workflow_id: str
    function_id: int
    function_name: str
    kind: str
    output: str | None
    error: str | None
    started_at: int
    completed_at: int
    child_workflow_id: str | None = None
    executor_id: str | None = None


STEP_COLUMNS: tuple[str, ...] = tuple(StepRow.__dataclass_fields__)


@functools.cache
def column_kinds(row_class: type) -> dict[str, str]:
    """Each field of a row dataclass, in order, with the PostgreSQL type its
    value is read as from JSON (``int`` fields bigint, the rest text)."""
    fields: dict[str, Any] = row_class.__dataclass_fields__  # type: ignore[attr-defined]
    return {name: "bigint" if str(f.type).startswith("int") else "text"
            for name, f in fields.items()}


@dataclass
class Completion:
    """A workflow's terminal status with its outcome (see ``complete_workflow``)."""

    workflow_id: str
    status: str
    output: str | None
    error: str | None
    now: int


@dataclass
class ExecutorRow:
    """One row of ``executors``: a process running workflows."""

    instance_id: str
    executor_id: str
    application_version: str | None
    hostname: str
    pid: int
    started_at: int
    heartbeat_at: int
    stopped_at: int | None = None
    #: The queues it dequeues from: None for every queue its code defines, else
    #: a JSON array of names (``[]``: it only enqueues).
    queues: str | None = None

    def queue_names(self) -> list[str] | None:
        """The names of the queues it dequeues from; None for every queue (also
        for a value that is not a JSON array of names, written by hand)."""
        if self.queues is None:
            return None
        try:
            names = json.loads(self.queues)
        except ValueError:
            return None
        return [str(n) for n in names] if isinstance(names, list) else None

    def serves(self, queue_name: str) -> bool:
        """Whether this executor dequeues from ``queue_name``."""
        names = self.queue_names()
        return names is None or queue_name in names


EXECUTOR_COLUMNS: tuple[str, ...] = tuple(ExecutorRow.__dataclass_fields__)


@dataclass
class QueueRow:
    """One row of ``queues``: a queue's limits (None: no limit)."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None
    priority_enabled: bool = False
    partitioned: bool = False
    #: ``code`` (a Queue defined in the application) or ``runtime``
    #: (DBOS.register_queue); a runtime row is not overwritten from code.
    defined_by: str = "code"
    updated_at: int = 0

    @property
    def unbudgeted(self) -> bool:
        """No global budget to count (concurrency, rate) and no partitions:
        a claim is a single statement."""
        return self.concurrency is None and self.rate_limit is None and not self.partitioned

    @property
    def in_creation_order(self) -> bool:
        """Claimed strictly in creation order with no budget to count: a
        claim may start from a creation time (``dequeue``'s ``created_from``)."""
        return self.unbudgeted and not self.priority_enabled


QUEUE_COLUMNS: tuple[str, ...] = tuple(QueueRow.__dataclass_fields__)
#: The order a queue's workflows are claimed and started in.
DEQUEUE_ORDER = operator.attrgetter("priority", "created_at", "workflow_id")


@dataclass
class ScheduleRow:
    """One row of ``schedules``: a cron schedule that starts a workflow."""

    name: str
    workflow_name: str
    cron: str
    #: The cursor: every tick at or before it was fired (or skipped by policy).
    last_tick_epoch_ms: int
    paused: bool = False
    #: ``skip`` or ``backfill``: what happens to ticks missed while no executor ran.
    missed_tick_policy: str = "skip"
    #: ``code`` (@DBOS.scheduled) or ``runtime`` (DBOS.create_schedule); a
    #: runtime row is not overwritten from code.
    defined_by: str = "code"
    created_at: int = 0
    updated_at: int = 0


SCHEDULE_COLUMNS: tuple[str, ...] = tuple(ScheduleRow.__dataclass_fields__)


@dataclass(frozen=True)
class ApplicationVersion:
    """An application version executors have launched with (one row of
    ``application_versions``); times are epoch milliseconds. The version with
    the highest ``version_timestamp`` is the latest."""

    version_name: str
    #: What orders the versions: the newest is the latest.
    version_timestamp: int
    #: When an executor first launched with this version.
    created_at: int


APP_VERSION_COLUMNS: tuple[str, ...] = tuple(ApplicationVersion.__dataclass_fields__)


@dataclass
class ListFilter:
    """Filters for :meth:`SystemStore.list_workflows`; ``None`` means "any"."""

    workflow_ids: list[str] | None = None
    status: list[str] | None = None
    name: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    executor_id: str | None = None
    application_version: str | None = None
    parent_workflow_id: str | None = None
    #: a queue's name; or, with ``queued``, any queue (workflows enqueued at some point)
    queue_name: str | None = None
    queued: bool = False
    limit: int | None = None
    offset: int | None = None
    sort_desc: bool = False
    load_values: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
