"""The storage interface: every piece of relos state goes through these methods.

Each method's docstring states its guarantee. There are two implementations,
:mod:`relos.store.sqlite` (embedded default) and :mod:`relos.store.postgres`,
both built on the shared SQL of :mod:`relos.store.sql`, and one contract test
suite (``tests/contract``) that runs against both.

Rows cross this boundary as the plain dataclasses of :mod:`relos.store.rows`
(imported from here as well), values as the serialized text produced by
:mod:`relos.serialization`; the store never interprets user values. Times are integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from relos import errors
from relos.store.rows import (  # (re-exported: the interface speaks in them)
    ALL_STATUSES,
    APP_VERSION_COLUMNS,
    CANCELLED,
    CLAIMED_COLUMNS,
    DELAYED,
    DEQUEUE_ORDER,
    ENQUEUED,
    ERROR,
    EXECUTOR_COLUMNS,
    ISOLATION_LEVELS,
    MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    PENDING,
    QUEUE_COLUMNS,
    QUEUED_STATUSES,
    SCHEDULE_COLUMNS,
    STEP_COLUMNS,
    SUCCESS,
    TERMINAL_STATUSES,
    WORKFLOW_COLUMNS,
    WORKFLOW_SQL_ONLY_COLUMNS,
    ApplicationVersion,
    Completion,
    ExecutorRow,
    ListFilter,
    QueueRow,
    RowBatch,
    ScheduleRow,
    StepRow,
    WorkflowRow,
    column_kinds,
)


class SystemStore(abc.ABC):
    """The system database. Thread-safe: one instance serves a whole process."""

    #: ``"sqlite"`` or ``"postgres"``.
    backend: str
    #: True when other processes' writes are announced (LISTEN/NOTIFY) so
    #: waiters may poll rarely; False when waiters must poll.
    pushes_notifications: bool = False
    #: True when write transactions on different connections run at once
    #: (two claims of one queue without a global budget each skip the rows
    #: the other locked); False when writers take turns anyway (SQLite).
    concurrent_writers: bool = False

    # --- lifecycle ---------------------------------------------------------------------

    @abc.abstractmethod
    def migrate(self) -> list[int]:
        """Apply every migration not yet recorded, in order, each in its own
        transaction together with its row in ``migrations``; return the versions
        applied. Safe to call from several processes at once (serialised by a
        lock). Raises SchemaVersionError if the database is newer than the code."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The highest applied migration version (0 for an empty database)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every connection. The store is unusable afterwards."""

    @abc.abstractmethod
    def start_listener(self, on_change: Callable[[str, str], None],
                       queues: bool = True,
                       waited: Callable[[], frozenset[str]] | None = None) -> None:
        """Call ``on_change(channel, key)`` from a background thread when another
        process sends a message, sets an event or writes a stream (channels
        ``notifications``, ``events``, ``streams``; the key is the workflow ID) or
        enqueues work (channel ``queues``, unless ``queues`` is False: a process
        that dequeues nothing need not hear every enqueue; the key is the queue
        name) or wakes a suspended workflow (channel ``wake``, key ``*``), or
        tells that an executor serving a queue is full (channel
        ``queues_full``, the key is the queue name: :meth:`announce_full`).
        Where the backend cannot announce changes (``pushes_notifications`` is
        False: SQLite) enqueues are told of, when ``queues`` is True, soon
        after another connection inserted workflows that still wait in a queue
        (not workflows put back in one); and, for the channels ``waited()``
        names at the time (``notifications``, ``events``, ``streams``, and
        ``status``: the key is a workflow that finished), soon after another
        connection wrote what concerns them. Either way a waiter still polls:
        this only shortens waits."""

    def announce_full(self, queue_name: str) -> None:
        """Tell the other executors serving the queue that this one heard an
        enqueue to it and has no room to claim it: one with room claims at
        once, without holding back (``QueueRunner._back_off``). Best effort;
        a no-op where the backend cannot announce changes."""
        return None

    # --- executors -------------------------------------------------------------------

    def clock_ms(self) -> int:
        """The database's clock, in epoch milliseconds: heartbeats are written
        and judged by it, so that executors on hosts whose clocks disagree
        still agree on which of them is alive. An embedded database's clock
        is this host's."""
        return int(time.time() * 1000)

    @abc.abstractmethod
    def register_executor(self, row: ExecutorRow) -> None:
        """Insert (or replace) this process's executor row. One commit."""

    @abc.abstractmethod
    def heartbeat(self, instance_id: str, now: int) -> None:
        """Set the executor's ``heartbeat_at``. One commit."""

    @abc.abstractmethod
    def deregister_executor(self, instance_id: str, now: int) -> None:
        """Mark the executor stopped (``stopped_at``); its row is kept as history."""

    @abc.abstractmethod
    def get_executors(self, instance_ids: list[str] | None = None) -> list[ExecutorRow]:
        """Executor rows, all of them or those named."""

    # --- workflows --------------------------------------------------------------------

    @abc.abstractmethod
    def insert_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        """Create the workflow if its ID is new: atomically, so exactly one caller
        ever creates a given ID. Returns None when this call created it (one
        statement, one commit, no read), else the existing row, unchanged."""

    @abc.abstractmethod
    def insert_child_workflow(self, row: WorkflowRow, step: StepRow) -> WorkflowRow | None:
        """Like :meth:`insert_workflow` for a child workflow, and in the same
        transaction record ``step`` (its ``child_workflow_id`` set) in the
        parent's step log if not already there. Returns as insert_workflow."""

    @abc.abstractmethod
    def complete_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None, now: int
    ) -> bool:
        """Set a terminal status with its output or error, only if the workflow is
        still PENDING (a cancelled workflow stays cancelled). One statement.
        Returns whether the row changed."""

    @abc.abstractmethod
    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        """The workflow's row, or None when the ID is unknown."""

    @abc.abstractmethod
    def list_workflows(self, flt: ListFilter) -> list[WorkflowRow]:
        """Rows matching every filter, ordered by created_at (then ID)."""

    @abc.abstractmethod
    def find_recoverable(self, executor_ids: list[str], not_owned_by: str | None = None
                         ) -> list[tuple[str, str | None, str | None]]:
        """(workflow_id, owner, application_version) of every PENDING workflow
        of these executors that is not suspended, oldest first; with
        ``not_owned_by``, without that owner's (a process's own running
        workflows, which its recovery pass would only skip)."""

    @abc.abstractmethod
    def claim_workflow(
        self, workflow_id: str, expected_owner: str | None, new_owner: str, executor_id: str,
        now: int, *, counted: bool = True,
    ) -> WorkflowRow | None:
        """Compare-and-swap the owner of a PENDING workflow that is not
        suspended from ``expected_owner`` to ``new_owner`` and add one to its
        recovery attempts unless not ``counted`` (a suspended workflow is
        claimed only by :meth:`claim_due_workflows`, when due).
        Of concurrent claims on the same (workflow, expected owner) exactly one
        succeeds. Returns the updated row, or None when the claim lost."""

    @abc.abstractmethod
    def claim_workflows(
        self, workflow_ids: list[str], expected_owner: str | None, new_owner: str,
        executor_id: str, now: int, names: list[str],
    ) -> list[WorkflowRow]:
        """:meth:`claim_workflow` for many workflows of one owner in one
        statement (a take-over of a dead executor's work): those of
        ``workflow_ids`` that are PENDING under ``expected_owner``, not
        suspended, not queued (a queued one goes back to its queue instead,
        see :meth:`requeue_many`) and whose function is one of ``names``
        (the caller runs only those). Returns the rows claimed, in no order;
        the others are left as they are."""

    @abc.abstractmethod
    def set_workflow_status(
        self, workflow_id: str, status: str, now: int, *, only_if: frozenset[str] | None = None,
        error: str | None = None,
    ) -> bool:
        """Set the status (and error, if given), if the current status is in
        ``only_if`` (any status when None). Returns whether the row changed."""

    @abc.abstractmethod
    def resume_workflow(self, workflow_id: str, now: int) -> bool:
        """Make a non-SUCCESS workflow PENDING again with no owner and recovery
        attempts reset, so an executor picks it up; its recorded steps are kept.
        Returns False if the workflow is unknown or already succeeded. The
        caller makes sure a PENDING workflow's owner is dead first: this resets
        the owner unconditionally."""

    @abc.abstractmethod
    def fork_workflow(
        self, source_id: str, new_id: str, start_step: int, new_row: WorkflowRow
    ) -> None:
        """In one transaction: insert ``new_row`` (a copy of the source with a new
        ID, PENDING, no owner) and copy the source's steps, events and stream
        entries recorded before ``start_step``, so the fork replays them and runs
        live from ``start_step`` on."""

    # --- steps ------------------------------------------------------------------------

    @abc.abstractmethod
    def record_step(self, step: StepRow) -> None:
        """Append a step's outcome: one statement, one commit, no read. Raises
        WorkflowCancelledError when the workflow is no longer PENDING (the
        record is refused, so a cancelled workflow stops at its next step) and
        WorkflowConflictError when the step was already recorded (another
        process ran the same workflow)."""

    @abc.abstractmethod
    def write_batch(self, steps: list[StepRow], completions: list[Completion]) -> None:
        """Record ``steps`` (as :meth:`record_step`), then apply ``completions``
        (as :meth:`complete_workflow`), all in one transaction: every step is
        recorded, or nothing is written and a RelosError is raised (one step
        refused fails the batch; the caller retries its parts alone to learn
        which). A completion of a workflow no longer PENDING changes nothing and
        is not an error. The work of many workflows goes in one commit."""

    @abc.abstractmethod
    def load_steps(self, workflow_id: str) -> dict[int, StepRow]:
        """Every recorded step of the workflow, by function_id. One read; the
        runtime calls it once per recovered workflow."""

    @abc.abstractmethod
    def load_steps_many(self, workflow_ids: list[str]) -> dict[str, dict[int, StepRow]]:
        """:meth:`load_steps` of many workflows in one read, by workflow ID
        (a workflow with no recorded step has no entry)."""

    @abc.abstractmethod
    def transaction(
        self, isolation_level: str | None
    ) -> AbstractContextManager[Any]:
        """A DB-API connection inside an open transaction on the system
        database, committed when the block exits normally, rolled back on an
        exception. For ``@DBOS.transaction`` when the application database is
        the system database."""

    @abc.abstractmethod
    def record_step_in(self, conn: Any, step: StepRow) -> None:
        """:meth:`record_step` inside a transaction opened by :meth:`transaction`,
        so the step's output commits atomically with the user's writes."""

    # --- messages, events, streams ------------------------------------------------------

    @abc.abstractmethod
    def send(
        self, destination_id: str, topic: str, message: str, message_id: str,
        sender_workflow_id: str | None, now: int, step: StepRow | None,
    ) -> bool:
        """Queue a message for a workflow and, in the same transaction, record
        ``step`` if given. A second send with the same ``message_id`` is a no-op
        (idempotency). Raises NonExistentWorkflowError for an unknown destination.
        If the destination is suspended waiting for a message on ``topic``, its
        wake-up time becomes ``now`` in the same transaction, and the call
        returns True (else False): see :meth:`suspend_workflow` for why no
        message can slip between a suspension and its wake-up."""

    @abc.abstractmethod
    def recv(self, destination_id: str, topic: str, step: StepRow, now: int) -> str | None:
        """In one transaction take the oldest unconsumed message on the topic,
        mark it consumed, and record ``step`` with the message as its output.
        Returns the message text, or None (nothing recorded) when there is none."""

    @abc.abstractmethod
    def set_event(
        self, workflow_id: str, key: str, value: str, now: int, step: StepRow | None,
        function_id: int | None = None,
    ) -> bool:
        """Set the workflow's event ``key`` (the history table keeps every value)
        and, in the same transaction, record ``step`` if given. The event is
        attributed to ``step``'s function ID, else to ``function_id`` (the step
        it was set from), which is what a fork uses to copy it. The workflows
        suspended waiting for this event get ``now`` as their wake-up time in
        the same transaction; returns whether there were any."""

    @abc.abstractmethod
    def get_event(self, workflow_id: str, key: str) -> tuple[bool, str | None]:
        """(found, value) of the workflow's event ``key``."""

    @abc.abstractmethod
    def get_all_events(self, workflow_id: str) -> dict[str, str | None]:
        """Every current event of the workflow."""

    @abc.abstractmethod
    def write_stream(
        self, workflow_id: str, key: str, value: str | None, closed: bool, now: int,
        step: StepRow | None, function_id: int | None,
    ) -> None:
        """Append a value (or, with ``closed``, the end marker) to the stream at
        the next position, and record ``step`` if given, in one transaction.
        Writing to a closed stream raises StoreError."""

    @abc.abstractmethod
    def read_stream(
        self, workflow_id: str, key: str, from_position: int
    ) -> list[tuple[int, str | None, bool]]:
        """Entries (position, value, closed) at or after ``from_position``."""

    # --- queues -----------------------------------------------------------------------

    @abc.abstractmethod
    def save_queue(self, row: QueueRow) -> QueueRow:
        """Insert or update a queue's limits and return the stored row. A row
        from code (``defined_by='code'``) does not replace one set at run time;
        a run-time row replaces anything."""

    @abc.abstractmethod
    def release_queue(self, name: str, now: int) -> bool:
        """Hand a queue's limits back to the application's code: its row, if
        set at run time, is marked as from code (its limits unchanged), so the
        next :meth:`save_queue` of a row from code replaces it. Returns False
        when no queue has that name."""

    @abc.abstractmethod
    def get_queues(self, names: list[str] | None = None) -> list[QueueRow]:
        """Stored queue rows, all of them or those named."""

    @abc.abstractmethod
    def enqueue(self, rows: Sequence[WorkflowRow], step: StepRow | None = None
                ) -> list[WorkflowRow | None]:
        """Insert queued workflows (status ENQUEUED or DELAYED) in one
        transaction, together with ``step`` (the enqueuing parent's step) if
        given, and wake idle dequeuers of other processes. For each row: None
        when inserted, else the existing row that prevented it — the row with
        the same workflow ID, or the unfinished workflow holding the same
        deduplication ID in the queue. The caller wakes its own process's
        dequeuers (the store may keep the announcement from coming back to
        them: PostgreSQL's, ``echoes.py``)."""

    @abc.abstractmethod
    def dequeue(self, queue: QueueRow, owner: str, executor_id: str, now: int,
                max_claim: int, application_version: str | None,
                workflow_names: list[str], *, take_unversioned: bool = True,
                created_from: int | None = None) -> list[WorkflowRow]:
        """Atomically claim up to ``max_claim`` eligible workflows of the queue
        (ENQUEUED, or DELAYED whose delay passed; application version
        ``application_version``, or none when ``take_unversioned`` — the
        caller runs the latest version; a function in ``workflow_names``, the
        ones the caller can run), in priority then creation order, within the
        queue's global concurrency (per partition when partitioned) and rate
        limit. Claimed rows become PENDING, owned by ``owner``, with
        ``started_at`` = now, their deadline starting now, and
        ``application_version`` set (if it was none) so that only that
        version recovers them. No workflow is ever claimed by two callers.
        The rows returned hold the columns of CLAIMED_COLUMNS, as claimed
        (the other attributes keep their defaults: read the workflow for them).

        ``created_from`` (epoch ms; a hint for a queue without limits,
        partitions or priorities) lets the claim skip the workflows created
        before it: on PostgreSQL the claim's index scan then starts there
        instead of walking past the entries every earlier claim left behind
        until a vacuum. The caller still claims without it now and then, for
        workflows that became eligible behind it."""

    @abc.abstractmethod
    def find_claimed(self, owner: str, executor_id: str, stamp: int,
                     queue_name: str | None) -> list[WorkflowRow]:
        """The workflows a claim by ``owner`` (of executor ``executor_id``)
        whose ``now`` was ``stamp`` took, if it committed: for a claim whose
        commit went unanswered (the connection lost), which may or may not
        have taken them. A process gives each of its claims of a kind its own
        ``now`` (``clock.stamp_ms``), so these are that claim's rows and no
        other's, still PENDING under the owner and not suspended (a cancelled
        one is left out). With ``queue_name``, a :meth:`dequeue` from that
        queue (``started_at`` = stamp); with None, a
        :meth:`claim_due_workflows` (woken at ``stamp``: ``updated_at`` =
        stamp, started before it)."""

    @abc.abstractmethod
    def requeue(self, workflow_id: str, expected_owner: str | None, now: int, *,
                started: bool = True, counted: bool = True) -> bool:
        """Compare-and-swap a PENDING queued workflow whose owner is
        ``expected_owner`` back to ENQUEUED with no owner, so it is dequeued
        again under the queue's limits. Returns whether it changed. With
        ``started=False`` (claimed, then given back before it ran) the claim's
        recovery attempt is taken back; otherwise the attempts stay at 1 or
        more, so the next dequeue loads what the workflow recorded, and
        without ``counted`` (its run was stopped by the database) the claim's
        attempt is taken back within that bound."""

    @abc.abstractmethod
    def requeue_many(self, workflow_ids: list[str], expected_owner: str | None, now: int
                     ) -> list[tuple[str, str]]:
        """:meth:`requeue` (of started workflows) for many workflows of one
        owner in one statement; (workflow ID, queue name) of each requeued."""

    @abc.abstractmethod
    def next_rate_slot(self, queue_name: str, period_ms: int, now: int) -> int | None:
        """When (epoch ms) the oldest start the queue's rate limiter counts at
        ``now`` leaves its period, freeing room in the limit; None when it
        counts none."""

    @abc.abstractmethod
    def next_delay_end(self, queue_names: list[str], after: int) -> int | None:
        """The earliest end of a delay after ``after`` (epoch ms) among the
        DELAYED workflows of these queues, or None."""

    @abc.abstractmethod
    def queue_depths(self) -> dict[str, dict[str, int]]:
        """For each queue name: the number of its workflows per unfinished
        status (ENQUEUED, DELAYED, PENDING)."""

    @abc.abstractmethod
    def queue_waiting_since(self, now: int) -> dict[str, int]:
        """For each queue holding workflows ready to run at ``now`` (epoch ms;
        ENQUEUED, or DELAYED with their delay ended): since when the one
        that has waited longest has been ready — when it was enqueued or put
        back in the queue (its row's last update), or when its delay ended."""

    @abc.abstractmethod
    def rate_starts(self, queue_name: str, since: int) -> int:
        """How many workflows the queue's rate limiter counts as started at or
        after ``since`` (epoch ms): the starts its claims recorded while it had
        a limiter, kept an hour, or its period if longer."""

    # --- schedules --------------------------------------------------------------------

    @abc.abstractmethod
    def save_schedule(self, row: ScheduleRow) -> ScheduleRow:
        """Insert a schedule, or update an existing one's definition
        (``workflow_name``, ``cron``, ``missed_tick_policy``, ``defined_by``,
        ``updated_at``), and return the stored row. An update never changes
        ``paused``, ``last_tick_epoch_ms`` or ``created_at``. A row from code
        (``defined_by='code'``) does not replace one set at run time; a
        run-time row replaces anything. One statement and a read."""

    @abc.abstractmethod
    def get_schedules(self, names: list[str] | None = None) -> list[ScheduleRow]:
        """Stored schedules, all of them or those named, ordered by name."""

    @abc.abstractmethod
    def set_schedule_paused(self, name: str, paused: bool, now: int) -> bool:
        """Pause or resume a schedule. Resuming a paused schedule also moves
        its cursor up to ``now`` (if behind), so ticks that passed while it
        was paused are never fired. One statement. Returns False when no
        schedule has that name."""

    @abc.abstractmethod
    def delete_schedule(self, name: str) -> bool:
        """Delete the schedule (its workflows stay). Returns whether it existed."""

    @abc.abstractmethod
    def advance_schedule(self, name: str, expected_last_tick: int, new_last_tick: int,
                         now: int) -> bool:
        """Compare-and-swap the cursor from ``expected_last_tick`` to
        ``new_last_tick`` (which must be larger). Of concurrent calls with the
        same expected value exactly one succeeds; returns whether this one did
        (False also when the schedule is gone)."""

    # --- application versions -----------------------------------------------------------

    @abc.abstractmethod
    def register_application_version(self, version_name: str, now: int) -> None:
        """Record a version an executor launches with, if it is new: a new
        version becomes the latest (its timestamp is ``now``, or one more than
        the highest timestamp when that is not below ``now``), and its
        ``created_at`` is ``now``. A known version is left unchanged, so a
        relaunch of an old version never makes it the latest. One statement."""

    @abc.abstractmethod
    def list_application_versions(self) -> list[ApplicationVersion]:
        """Every recorded version, the latest first (highest timestamp; ties by
        name, descending)."""

    @abc.abstractmethod
    def get_latest_application_version(self) -> ApplicationVersion | None:
        """The first version of :meth:`list_application_versions`, or None when
        none is recorded."""

    @abc.abstractmethod
    def set_latest_application_version(self, version_name: str, now: int) -> bool:
        """Make a recorded version the latest: its timestamp becomes ``now``, or
        one more than the highest timestamp when that is not below ``now``
        (so it is the latest even if this host's clock is behind). One
        statement. Returns False when no version has that name."""

    # --- suspended workflows ------------------------------------------------------------

    @abc.abstractmethod
    def suspend_workflow(
        self, workflow_id: str, owner: str, wake_at: int, now: int, *,
        topic: str | None = None, event: tuple[str, str] | None = None,
        step: StepRow | None = None,
    ) -> int | None:
        """Suspend a PENDING workflow owned by ``owner``: in one transaction
        clear its owner and set its wake-up time to ``wake_at`` and what it
        waits for — a message on ``topic`` (sent to itself), the event
        ``event`` = (workflow ID, key), or neither (a sleep). If what it waits
        for is already there, the wake-up time is ``now`` instead. The
        transaction first locks the row of the workflow whose message or event
        is awaited, as :meth:`send` and :meth:`set_event` do before writing,
        so of a suspension and a concurrent send (or set_event) one sees the
        other: the message is never left unnoticed until the timeout. ``step``
        (the wait's own record), if given, is recorded in the same transaction
        as by :meth:`record_step` (its errors roll the suspension back).
        Returns the wake-up time written, or None when the workflow is not
        PENDING with that owner (nothing changed)."""

    @abc.abstractmethod
    def claim_due_workflows(
        self, owner: str, executor_id: str, now: int, limit: int,
        application_version: str | None, workflow_names: list[str],
    ) -> list[WorkflowRow]:
        """Atomically claim up to ``limit`` suspended PENDING workflows whose
        wake-up time is at or before ``now`` (earliest first), of application
        version ``application_version`` or none, running a function in
        ``workflow_names``: each becomes owned by ``owner`` (executor
        ``executor_id``) and is no longer suspended. Recovery attempts are
        unchanged (a suspension is not a crash). No workflow is ever claimed by
        two callers; a CANCELLED one is never claimed."""

    @abc.abstractmethod
    def next_wake_time(self, application_version: str | None,
                       workflow_names: list[str]) -> int | None:
        """The earliest wake-up time of the suspended PENDING workflows that
        :meth:`claim_due_workflows` with these arguments could claim, or None."""

    # --- retention --------------------------------------------------------------------

    @abc.abstractmethod
    def garbage_collect(self, cutoff: int) -> int:
        """Delete finished workflows (and their steps, messages, events, streams
        and history) completed before ``cutoff``, and history rows older than it.
        Returns the number of workflows deleted."""


def rows_to(cls: type[Any], columns: tuple[str, ...], rows: Iterator[Any] | list[Any]) -> list[Any]:
    """Build dataclass instances from positional rows selected in ``columns`` order."""
    return [cls(**dict(zip(columns, r, strict=False))) for r in rows]


def check_isolation(level: str | None) -> str | None:
    if level is None:
        return None
    norm = str(level).upper().replace("_", " ")
    if norm not in ISOLATION_LEVELS:
        raise errors.ConfigError(
            f"unknown isolation level {level!r}: use one of {', '.join(ISOLATION_LEVELS)}"
        )
    return norm


__all__ = [
    "ALL_STATUSES",
    "APP_VERSION_COLUMNS",
    "ApplicationVersion",
    "CANCELLED",
    "CLAIMED_COLUMNS",
    "Completion",
    "DELAYED",
    "DEQUEUE_ORDER",
    "ENQUEUED",
    "ERROR",
    "EXECUTOR_COLUMNS",
    "ExecutorRow",
    "ISOLATION_LEVELS",
    "ListFilter",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED",
    "PENDING",
    "QUEUED_STATUSES",
    "QUEUE_COLUMNS",
    "QueueRow",
    "RowBatch",
    "SCHEDULE_COLUMNS",
    "STEP_COLUMNS",
    "SUCCESS",
    "ScheduleRow",
    "StepRow",
    "TERMINAL_STATUSES",
    "WORKFLOW_COLUMNS",
    "WORKFLOW_SQL_ONLY_COLUMNS",
    "WorkflowRow",
    "column_kinds",
    "SystemStore",
    "check_isolation",
    "rows_to",
]
