"""The SQL implementation of :class:`~relos.store.base.SystemStore` shared by
both backends.

A backend supplies connections (:meth:`SQLStore._conn` for single statements in
autocommit mode, :meth:`SQLStore._tx` for a multi-statement transaction), the
parameter style, and the translation of its driver's errors. The queries
themselves live in ``queries.sql``; the schema in ``migrations/<backend>/``.

Hot-path rule: an operation that changes state is one statement (autocommit,
one round trip, one commit) unless it must be atomic with another write, and
then it is one transaction.

Hot-path cost: every named query is also compiled once into a
:class:`Statement` with positional parameters, whose arguments are taken from a
row object (or a mapping) by one C-level ``attrgetter`` (``itemgetter``) call:
no per-call dict building, no name-to-position mapping in the driver. Such
statements run through :meth:`SQLStore._execute`, which each backend implements
with the least work its driver allows (and PostgreSQL prepares them on the
server). Ad-hoc SQL keeps the ``_run`` / ``_one`` / ``_all`` helpers with named
parameters.
"""

from __future__ import annotations

import abc
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib import resources
from operator import attrgetter, itemgetter
from typing import Any, NoReturn

from relos import errors
from relos.store import base, queue_sql, schedule_sql, suspension_sql, version_sql
from relos.store.base import (
    EXECUTOR_COLUMNS,
    QUEUE_COLUMNS,
    SCHEDULE_COLUMNS,
    STEP_COLUMNS,
    WORKFLOW_COLUMNS,
    ExecutorRow,
    ListFilter,
    StepRow,
    WorkflowRow,
)
from relos.store.combining import Combiner

_NAME_RE = re.compile(r"^-- name: (\S+)\s*$", re.M)
_PARAM_RE = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
_SELECT_RE = re.compile(r"\s*SELECT\b", re.I)
#: What makes a SELECT more than a read (locks, notifications, sequences).
_NOT_ONLY_READ_RE = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b|\bFOR\s+SHARE\b|pg_notify|"
                               r"nextval|setval|pg_advisory", re.I)


@functools.lru_cache(maxsize=512)
def only_reads(sql: str) -> bool:
    """Whether a statement only reads (a plain SELECT: no lock, notification
    or sequence), so may run again after its connection was lost."""
    return bool(_SELECT_RE.match(sql)) and not _NOT_ONLY_READ_RE.search(sql)


#: Enqueues of fewer rows are combined with those of other threads (bigger
#: batches are efficient alone, and PostgreSQL sends them by COPY).
COMBINED_BELOW = 16

#: What :meth:`SQLStore._execute` returns: the row count, the first row, or all rows.
ROWCOUNT, ONE, ALL = 0, 1, 2


class Statement:
    """A named query compiled to positional parameters.

    ``sql`` carries one positional marker per parameter occurrence (a name used
    twice is passed twice); ``of_row(obj)`` builds the argument tuple from an
    object's attributes and ``of_map(mapping)`` from a mapping's keys.
    """

    __slots__ = ("name", "sql", "names", "of_row", "of_map", "reads")

    def __init__(self, name: str, named_sql: str, marker: str) -> None:
        self.name = name
        #: Whether it only reads: run again on another connection when its
        #: own was found lost (see :meth:`SQLStore._fetch`).
        self.reads = only_reads(named_sql)
        self.names: tuple[str, ...] = tuple(m.group(1) for m in _PARAM_RE.finditer(named_sql))
        self.sql = _PARAM_RE.sub(marker, named_sql)
        self.of_row: Callable[[Any], tuple[Any, ...]] = _tuple_getter(attrgetter, self.names)
        self.of_map: Callable[[Mapping[str, Any]], tuple[Any, ...]] = _tuple_getter(
            itemgetter, self.names)


def _tuple_getter(kind: Any, names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(names) > 1:
        getter: Callable[[Any], tuple[Any, ...]] = kind(*names)
        return getter
    if len(names) == 1:
        one = kind(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


def load_statements(backend: str, prefix: str, marker: str) -> dict[str, Statement]:
    """Every query of ``queries.sql`` for one backend as a positional
    :class:`Statement` (``marker`` is ``?`` or ``%s``)."""
    return {name: Statement(name, sql, marker)
            for name, sql in load_queries(backend, prefix, "named").items()}


def load_queries(backend: str, prefix: str, paramstyle: str) -> dict[str, str]:
    """Read ``queries.sql`` and return ``{name: sql}`` for one backend, with the
    table prefix filled in and parameters in the driver's style."""
    text = resources.files("relos.store").joinpath("queries.sql").read_text("utf-8")
    parts = _NAME_RE.split(text)
    fill = {
        "p": prefix,
        "workflow_columns": ", ".join(WORKFLOW_COLUMNS),
        "workflow_params": ", ".join(f":{c}" for c in WORKFLOW_COLUMNS),
        "step_columns": ", ".join(STEP_COLUMNS),
        "step_params": ", ".join(f":{c}" for c in STEP_COLUMNS),
        "executor_columns": ", ".join(EXECUTOR_COLUMNS),
        "executor_params": ", ".join(f":{c}" for c in EXECUTOR_COLUMNS),
        "queue_columns": ", ".join(QUEUE_COLUMNS),
        "queue_params": ", ".join(f":{c}" for c in QUEUE_COLUMNS),
        "schedule_columns": ", ".join(SCHEDULE_COLUMNS),
        "schedule_params": ", ".join(f":{c}" for c in SCHEDULE_COLUMNS),
    }
    shared: dict[str, str] = {}
    specific: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=False):
        sql = body.strip().format(**fill)
        if paramstyle == "pyformat":
            sql = _PARAM_RE.sub(r"%(\1)s", sql)
        if "@" in name:
            qname, _, for_backend = name.partition("@")
            if for_backend == backend:
                specific[qname] = sql
        else:
            shared[name] = sql
    shared.update(specific)
    return shared


class SQLStore(base.SystemStore):
    """Shared SQL; subclasses provide connections and dialect details."""

    paramstyle = "named"
    #: The positional parameter marker of the driver.
    marker = "?"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.q = load_queries(self.backend, prefix, self.paramstyle)
        self.st = load_statements(self.backend, prefix, self.marker)
        st = self.st
        self._insert_workflow = st["insert_workflow"]
        self._insert_step = st["insert_step"]
        self._complete_workflow = st["complete_workflow"]
        self._get_workflow = st["get_workflow"]
        self._combiner: Combiner[WorkflowRow, WorkflowRow | None] = Combiner(
            self._enqueue_now)

    # --- what a backend provides -------------------------------------------------------

    @abc.abstractmethod
    def _conn(self) -> AbstractContextManager[Any]:
        """A connection in autocommit mode, for single statements."""

    def _batch_conn(self) -> AbstractContextManager[Any]:
        """A connection in autocommit mode for a batch's single statement (a
        claim, a batch of completions); a backend may keep such connections
        apart, with session settings for those statements."""
        return self._conn()

    @abc.abstractmethod
    def _tx(self, isolation_level: str | None = None) -> AbstractContextManager[Any]:
        """A connection inside a transaction (committed on normal exit)."""

    @abc.abstractmethod
    def _translate(self, exc: Exception) -> Exception | None:
        """A relos error for a driver error, or None to re-raise it unchanged."""

    @abc.abstractmethod
    def _execute(self, sql: str, args: Sequence[Any], result: int) -> Any:
        """Run one compiled statement in autocommit mode (or inside this thread's
        open transaction, where the backend has one) with positional ``args``;
        return what ``result`` asks for (ROWCOUNT, ONE or ALL). Driver errors
        propagate untranslated: the callers below translate them."""

    def _write(self, st: Statement, args: Sequence[Any]) -> int:
        """Run a compiled statement; the number of rows it changed."""
        return int(self._fetch(st, args, ROWCOUNT))

    def _fetch(self, st: Statement, args: Sequence[Any], result: int) -> Any:
        """Run a compiled statement; what ``result`` asks for (ROWCOUNT, ONE, ALL).
        A plain try (not :meth:`_errors`): this is every hot-path statement.

        A read that lost its connection runs once more, on another: a pooled
        connection the server ended (a restart, a fail-over) may pass the
        pool's check and fail its first statement; the next one is new. A
        write is not run again: it may have committed."""
        try:
            return self._execute(st.sql, args, result)
        except errors.RelosError:
            raise
        except Exception as exc:
            translated = self._translate(exc)
            if not (st.reads and isinstance(translated, errors.DatabaseUnreachableError)):
                self._reraise(exc)
        try:
            return self._execute(st.sql, args, result)
        except errors.RelosError:
            raise
        except Exception as exc:
            self._reraise(exc)

    def _reraise(self, exc: Exception) -> NoReturn:
        """Raise the relos error a driver error translates to (or the error itself)."""
        translated = self._translate(exc)
        if translated is None:
            raise exc
        raise translated from exc

    def _ph(self, name: str) -> str:
        """The placeholder for parameter ``name`` in this driver's style."""
        return f"%({name})s" if self.paramstyle == "pyformat" else f":{name}"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except errors.RelosError:
            raise
        except Exception as exc:
            self._reraise(exc)

    def _run(self, sql: str, params: dict[str, Any]) -> int:
        with self._errors(), self._conn() as conn:
            return int(conn.execute(sql, params).rowcount)

    def _one(self, sql: str, params: dict[str, Any]) -> Any:
        return self._on_conn(sql, lambda conn: conn.execute(sql, params).fetchone())

    def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        rows: list[Any] = self._on_conn(sql, lambda conn: list(conn.execute(sql, params).fetchall()))
        return rows

    def _on_conn(self, sql: str, work: Callable[[Any], Any]) -> Any:
        """``work(conn)`` on a connection; as in :meth:`_fetch`, a read that
        lost its connection runs once more, on another."""
        try:
            with self._conn() as conn:
                return work(conn)
        except errors.RelosError:
            raise
        except Exception as exc:
            translated = self._translate(exc)
            if not (only_reads(sql) and isinstance(translated, errors.DatabaseUnreachableError)):
                self._reraise(exc)
        with self._errors(), self._conn() as conn:
            return work(conn)

    # --- executors -------------------------------------------------------------------

    def register_executor(self, row: ExecutorRow) -> None:
        st = self.st["register_executor"]
        self._write(st, st.of_row(row))

    def heartbeat(self, instance_id: str, now: int) -> None:
        st = self.st["heartbeat"]
        self._write(st, st.of_map({"instance_id": instance_id, "now": now}))

    def deregister_executor(self, instance_id: str, now: int) -> None:
        st = self.st["deregister_executor"]
        self._write(st, st.of_map({"instance_id": instance_id, "now": now}))

    def get_executors(self, instance_ids: list[str] | None = None) -> list[ExecutorRow]:
        sql = f"SELECT {', '.join(EXECUTOR_COLUMNS)} FROM {self.prefix}executors"
        params: dict[str, Any] = {}
        if instance_ids is not None:
            if not instance_ids:
                return []
            sql += " WHERE instance_id IN (" + self._in_list("i", instance_ids, params) + ")"
        sql += " ORDER BY started_at"
        return base.rows_to(ExecutorRow, EXECUTOR_COLUMNS, self._all(sql, params))

    def _in_list(self, stem: str, values: list[Any], params: dict[str, Any]) -> str:
        names = []
        for i, v in enumerate(values):
            params[f"{stem}{i}"] = v
            names.append(self._ph(f"{stem}{i}"))
        return ", ".join(names)

    # --- workflows --------------------------------------------------------------------

    def insert_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        st = self._insert_workflow
        if self._write(st, st.of_row(row)) == 1:
            return None
        existing = self.get_workflow(row.workflow_id)
        if existing is None:  # deleted in between: vanishingly rare, try again
            return self.insert_workflow(row)
        return existing

    def insert_child_workflow(self, row: WorkflowRow, step: StepRow) -> WorkflowRow | None:
        with self._errors(), self._tx() as conn:
            inserted = conn.execute(self.q["insert_workflow"], vars(row)).rowcount == 1
            if conn.execute(self.q["insert_step"], vars(step)).rowcount != 1:
                parent = conn.execute(self.q["get_workflow"], {"workflow_id": step.workflow_id})
                found = parent.fetchone()
                if found is None or WorkflowRow(*found).status != base.PENDING:
                    # Rolls the child back too: both happen, or neither.
                    raise errors.WorkflowCancelledError(step.workflow_id)
            if inserted:
                return None
            found = conn.execute(self.q["get_workflow"], {"workflow_id": row.workflow_id})
            return WorkflowRow(*found.fetchone())

    def complete_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None, now: int
    ) -> bool:
        st = self._complete_workflow
        args = st.of_map({"workflow_id": workflow_id, "status": status, "output": output,
                          "error": error, "now": now})
        return self._write(st, args) == 1

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        r = self._fetch(self._get_workflow, (workflow_id,), ONE)
        return None if r is None else WorkflowRow(*r)

    def list_workflows(self, flt: ListFilter) -> list[WorkflowRow]:
        cols = list(WORKFLOW_COLUMNS)
        if not flt.load_values:
            cols = [c if c not in ("inputs", "output", "error") else f"NULL AS {c}" for c in cols]
        where: list[str] = []
        params: dict[str, Any] = {}
        if flt.workflow_ids is not None:
            if not flt.workflow_ids:
                return []
            where.append(f"workflow_id IN ({self._in_list('w', flt.workflow_ids, params)})")
        if flt.status is not None:
            if not flt.status:
                return []
            # (one equality per status, OR-ed: each can match a partial index of
            # that status, where an IN list matches none and reads the table)
            matches = []
            for i, status in enumerate(flt.status):
                params[f"s{i}"] = status
                matches.append(f"status = {self._ph(f's{i}')}")
            where.append("(" + " OR ".join(matches) + ")")
        for col, val in (("name", flt.name), ("executor_id", flt.executor_id),
                         ("application_version", flt.application_version),
                         ("parent_workflow_id", flt.parent_workflow_id),
                         ("queue_name", flt.queue_name)):
            if val is not None:
                params[col] = val
                where.append(f"{col} = {self._ph(col)}")
        if flt.queued and flt.queue_name is None:
            where.append("queue_name IS NOT NULL")
        if flt.start_time is not None:
            params["start_time"] = flt.start_time
            where.append(f"created_at >= {self._ph('start_time')}")
        if flt.end_time is not None:
            params["end_time"] = flt.end_time
            where.append(f"created_at <= {self._ph('end_time')}")
        order = "DESC" if flt.sort_desc else "ASC"
        sql = f"SELECT {', '.join(cols)} FROM {self.prefix}workflow_status"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created_at {order}, workflow_id {order}"
        if flt.limit is not None:
            params["limit"] = int(flt.limit)
            sql += f" LIMIT {self._ph('limit')}"
        if flt.offset:
            if flt.limit is None:
                sql += " LIMIT -1" if self.backend == "sqlite" else " LIMIT ALL"
            params["offset"] = int(flt.offset)
            sql += f" OFFSET {self._ph('offset')}"
        return [WorkflowRow(*r) for r in self._all(sql, params)]

    def find_recoverable(self, executor_ids: list[str], not_owned_by: str | None = None
                         ) -> list[tuple[str, str | None, str | None]]:
        if not executor_ids:
            return []
        params: dict[str, Any] = {}
        sql = (f"SELECT workflow_id, owner, application_version "
               f"FROM {self.prefix}workflow_status "
               f"WHERE status = 'PENDING' AND wake_at_epoch_ms IS NULL AND executor_id IN "
               f"({self._in_list('e', executor_ids, params)})")
        if not_owned_by is not None:
            params["not_owned_by"] = not_owned_by
            sql += f" AND (owner IS NULL OR owner <> {self._ph('not_owned_by')})"
        sql += " ORDER BY created_at"
        return [(r[0], r[1], r[2]) for r in self._all(sql, params)]

    def claim_workflow(
        self, workflow_id: str, expected_owner: str | None, new_owner: str, executor_id: str,
        now: int, *, counted: bool = True,
    ) -> WorkflowRow | None:
        params = {"workflow_id": workflow_id, "expected_owner": expected_owner,
                  "new_owner": new_owner, "executor_id": executor_id, "now": now,
                  "attempt": int(counted)}
        with self._errors(), self._tx() as conn:
            r = conn.execute(self.q["claim_workflow"], params).fetchone()
        return None if r is None else WorkflowRow(*r)

    def claim_workflows(
        self, workflow_ids: list[str], expected_owner: str | None, new_owner: str,
        executor_id: str, now: int, names: list[str],
    ) -> list[WorkflowRow]:
        if not workflow_ids or not names:
            return []
        ph = self._ph
        params: dict[str, Any] = {"expected_owner": expected_owner, "new_owner": new_owner,
                                  "executor_id": executor_id, "now": now}
        picked = self._pick_owned(workflow_ids, params, "queue_name IS NULL AND name IN "
                                  f"({self._in_list('n', names, params)})")
        sql = (f"UPDATE {self.prefix}workflow_status SET owner = {ph('new_owner')}, "
               f"executor_id = {ph('executor_id')}, "
               f"recovery_attempts = recovery_attempts + 1, updated_at = {ph('now')} "
               f"WHERE workflow_id IN ({picked}) RETURNING {', '.join(WORKFLOW_COLUMNS)}")
        with self._errors(), self._tx() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [WorkflowRow(*r) for r in rows]

    def _pick_owned(self, workflow_ids: list[str], params: dict[str, Any], also: str) -> str:
        """The SELECT of a batch take-over: those of ``workflow_ids`` PENDING
        under the ``expected_owner`` parameter, not suspended, and ``also``.
        On PostgreSQL it locks them and skips those another take-over holds
        (which no longer have that owner once it commits): concurrent
        take-overs split the work without waiting on each other or
        deadlocking; the rows are checked at their latest version."""
        lock = " FOR UPDATE SKIP LOCKED" if self.backend == "postgres" else ""
        return (f"SELECT workflow_id FROM {self.prefix}workflow_status "
                f"WHERE workflow_id IN ({self._in_list('w', workflow_ids, params)}) "
                f"AND status = 'PENDING' AND wake_at_epoch_ms IS NULL AND {also} "
                f"AND COALESCE(owner, '') = COALESCE(CAST({self._ph('expected_owner')} AS TEXT), '')"
                f"{lock}")

    def set_workflow_status(
        self, workflow_id: str, status: str, now: int, *, only_if: frozenset[str] | None = None,
        error: str | None = None,
    ) -> bool:
        params: dict[str, Any] = {"workflow_id": workflow_id, "status": status, "now": now}
        sets = [f"status = {self._ph('status')}", f"updated_at = {self._ph('now')}"]
        if status in base.TERMINAL_STATUSES:
            sets.append(f"completed_at = {self._ph('now')}")
        if error is not None:
            params["error"] = error
            sets.append(f"error = {self._ph('error')}")
        sql = (f"UPDATE {self.prefix}workflow_status SET {', '.join(sets)} "
               f"WHERE workflow_id = {self._ph('workflow_id')}")
        if only_if is not None:
            sql += f" AND status IN ({self._in_list('o', sorted(only_if), params)})"
        return self._run(sql, params) == 1

    def resume_workflow(self, workflow_id: str, now: int) -> bool:
        st = self.st["resume_workflow"]
        return self._write(st, st.of_map({"workflow_id": workflow_id, "now": now})) == 1

    def fork_workflow(
        self, source_id: str, new_id: str, start_step: int, new_row: WorkflowRow
    ) -> None:
        params = {"source_id": source_id, "new_id": new_id, "start_step": start_step}
        with self._errors(), self._tx() as conn:
            if conn.execute(self.q["insert_workflow"], vars(new_row)).rowcount != 1:
                raise errors.WorkflowConflictError(
                    f"cannot fork into workflow ID {new_id!r}: that ID is already used; "
                    f"choose another ID or omit it to get a fresh one"
                )
            conn.execute(self.q["fork_steps"], params)
            conn.execute(self.q["fork_events"], params)
            conn.execute(self.q["fork_streams"], params)

    # --- steps ------------------------------------------------------------------------

    def record_step(self, step: StepRow) -> None:
        st = self._insert_step
        if self._write(st, st.of_row(step)) != 1:
            self._step_refused(step)

    def record_step_in(self, conn: Any, step: StepRow) -> None:
        with self._errors():
            if conn.execute(self.q["insert_step"], vars(step)).rowcount != 1:
                self._step_refused(step)

    def write_batch(self, steps: list[StepRow], completions: list[base.Completion]) -> None:
        if not completions and len(steps) == 1:
            self.record_step(steps[0])  # one prepared statement, its own commit
            return
        if not steps and len(completions) == 1:
            c = completions[0]
            self.complete_workflow(c.workflow_id, c.status, c.output, c.error, c.now)
            return
        ins, done = self._insert_step, self._complete_workflow
        with self._errors(), self._tx() as conn:
            cur = conn.cursor()
            if steps:
                cur.executemany(ins.sql, [ins.of_row(s) for s in steps])
                if cur.rowcount != len(steps):  # raising rolls the batch back
                    if len(steps) == 1:
                        self._step_refused(steps[0])
                    raise errors.WorkflowConflictError("a step record of the batch was refused")
            if completions:
                cur.executemany(done.sql, [done.of_row(c) for c in completions])

    def _step_refused(self, step: StepRow) -> None:
        """Explain why insert_step changed nothing (the rare path: one read)."""
        row = self.get_workflow(step.workflow_id)
        if row is None:
            raise errors.NonExistentWorkflowError(step.workflow_id)
        if row.status != base.PENDING:
            raise errors.WorkflowCancelledError(step.workflow_id)
        raise errors.WorkflowConflictError(
            f"step #{step.function_id} ({step.function_name}) of workflow {step.workflow_id!r} "
            f"was already recorded: another process is running this workflow"
        )

    def load_steps(self, workflow_id: str) -> dict[int, StepRow]:
        rows = self._fetch(self.st["load_steps"], (workflow_id,), ALL)
        return {r[1]: StepRow(*r) for r in rows}

    def load_steps_many(self, workflow_ids: list[str]) -> dict[str, dict[int, StepRow]]:
        found: dict[str, dict[int, StepRow]] = {}
        if not workflow_ids:
            return found
        params: dict[str, Any] = {}
        sql = (f"SELECT {', '.join(STEP_COLUMNS)} FROM {self.prefix}operation_outputs "
               f"WHERE workflow_id IN ({self._in_list('w', workflow_ids, params)}) "
               f"ORDER BY workflow_id, function_id")
        for r in self._all(sql, params):
            step = StepRow(*r)
            found.setdefault(step.workflow_id, {})[step.function_id] = step
        return found

    def transaction(self, isolation_level: str | None) -> AbstractContextManager[Any]:
        return self._tx(isolation_level)

    # --- messages, events, streams ------------------------------------------------------

    def _write_for(self, workflow_id: str, work: Callable[[Any], Any],
                   step: StepRow | None) -> None:
        """Run ``work(conn)`` and record ``step`` (if any) in one transaction; a
        write refused because the workflow does not exist becomes
        NonExistentWorkflowError."""
        try:
            with self._errors(), self._tx() as conn:
                work(conn)
                if step is not None:
                    self.record_step_in(conn, step)
        except errors.StoreError as exc:
            if not isinstance(exc, errors.StreamClosedError) and \
                    self.get_workflow(workflow_id) is None:
                raise errors.NonExistentWorkflowError(workflow_id) from exc
            raise

    def send(
        self, destination_id: str, topic: str, message: str, message_id: str,
        sender_workflow_id: str | None, now: int, step: StepRow | None,
    ) -> bool:
        params = {"message_id": message_id, "destination_id": destination_id, "topic": topic,
                  "message": message, "sender_workflow_id": sender_workflow_id, "now": now}
        woke: list[bool] = []

        def work(conn: Any) -> None:
            # The destination's row lock first (see suspension_sql).
            conn.execute(self.q["lock_workflow"], {"workflow_id": destination_id})
            conn.execute(self.q["insert_message"], params)
            woke.append(suspension_sql.wake_receiver(self, conn, destination_id, topic, now))

        self._write_for(destination_id, work, step)
        return bool(woke and woke[0])

    def recv(self, destination_id: str, topic: str, step: StepRow, now: int) -> str | None:
        params = {"destination_id": destination_id, "topic": topic, "now": now,
                  "function_id": step.function_id}
        with self._errors(), self._tx() as conn:
            r = conn.execute(self.q["take_message"], params).fetchone()
            if r is None:
                return None
            step.output = r[0]
            self.record_step_in(conn, step)
            return str(r[0])

    def set_event(
        self, workflow_id: str, key: str, value: str, now: int, step: StepRow | None,
        function_id: int | None = None,
    ) -> bool:
        params = {"workflow_id": workflow_id, "key": key, "value": value, "now": now,
                  "function_id": step.function_id if step else function_id}
        woke: list[bool] = []

        def work(conn: Any) -> None:
            # The workflow's row lock first (see suspension_sql).
            conn.execute(self.q["lock_workflow"], params)
            conn.execute(self.q["set_event"], params)
            woke.append(suspension_sql.wake_event_waiters(self, conn, workflow_id, key, now))

        self._write_for(workflow_id, work, step)
        return bool(woke and woke[0])

    def get_event(self, workflow_id: str, key: str) -> tuple[bool, str | None]:
        st = self.st["get_event"]
        r = self._fetch(st, st.of_map({"workflow_id": workflow_id, "key": key}), ONE)
        return (False, None) if r is None else (True, r[0])

    def get_all_events(self, workflow_id: str) -> dict[str, str | None]:
        rows = self._fetch(self.st["get_all_events"], (workflow_id,), ALL)
        return {r[0]: r[1] for r in rows}

    def write_stream(
        self, workflow_id: str, key: str, value: str | None, closed: bool, now: int,
        step: StepRow | None, function_id: int | None,
    ) -> None:
        params = {"workflow_id": workflow_id, "key": key, "value": value,
                  "closed": 1 if closed else 0, "now": now, "function_id": function_id}

        def append(conn: Any) -> None:
            # Writers to one workflow's streams take turns (the next position is
            # read from the table), so none can collide or pass a close.
            conn.execute(self.q["lock_workflow"], params)
            if conn.execute(self.q["stream_closed"], params).fetchone() is not None:
                raise errors.StreamClosedError(
                    f"stream {key!r} of workflow {workflow_id!r} is closed: nothing can "
                    f"be written to it after close_stream"
                )
            conn.execute(self.q["append_stream"], params)

        self._write_for(workflow_id, append, step)

    def read_stream(
        self, workflow_id: str, key: str, from_position: int
    ) -> list[tuple[int, str | None, bool]]:
        st = self.st["read_stream"]
        args = st.of_map({"workflow_id": workflow_id, "key": key, "from_position": from_position})
        return [(int(r[0]), r[1], bool(r[2])) for r in self._fetch(st, args, ALL)]

    # --- queues (SQL in queue_sql.py) ----------------------------------------------------

    def save_queue(self, row: base.QueueRow) -> base.QueueRow:
        return queue_sql.save_queue(self, row)

    def release_queue(self, name: str, now: int) -> bool:
        return self._run(self.q["release_queue"], {"name": name, "now": now}) == 1

    def get_queues(self, names: list[str] | None = None) -> list[base.QueueRow]:
        return queue_sql.get_queues(self, names)

    def enqueue(self, rows: Sequence[WorkflowRow], step: StepRow | None = None
                ) -> list[WorkflowRow | None]:
        """Batches of fewer than ``COMBINED_BELOW`` rows without a step to
        record, from threads enqueueing at the same time, are combined into
        one statement and one commit (see combining.py)."""
        if not rows:
            return []
        if step is None and len(rows) < COMBINED_BELOW:
            return self._combiner.run(rows)
        return self._enqueue_now(rows, step)

    def _enqueue_now(self, rows: Sequence[WorkflowRow], step: StepRow | None = None
                     ) -> list[WorkflowRow | None]:
        """Write one enqueue (or one combination of enqueues) now."""
        return queue_sql.enqueue(self, rows, step)

    def dequeue(self, queue: base.QueueRow, owner: str, executor_id: str, now: int,
                max_claim: int, application_version: str | None,
                workflow_names: list[str], *, take_unversioned: bool = True,
                created_from: int | None = None) -> list[WorkflowRow]:
        return queue_sql.dequeue(self, queue, owner, executor_id, now, max_claim,
                                 application_version, workflow_names, take_unversioned,
                                 created_from)

    def find_claimed(self, owner: str, executor_id: str, stamp: int,
                     queue_name: str | None) -> list[WorkflowRow]:
        return queue_sql.find_claimed(self, owner, executor_id, stamp, queue_name)

    def requeue(self, workflow_id: str, expected_owner: str | None, now: int, *,
                started: bool = True, counted: bool = True) -> bool:
        return queue_sql.requeue(self, workflow_id, expected_owner, now, started, counted)

    def requeue_many(self, workflow_ids: list[str], expected_owner: str | None, now: int
                     ) -> list[tuple[str, str]]:
        return queue_sql.requeue_many(self, workflow_ids, expected_owner, now)

    def next_rate_slot(self, queue_name: str, period_ms: int, now: int) -> int | None:
        return queue_sql.next_rate_slot(self, queue_name, period_ms, now)

    def next_delay_end(self, queue_names: list[str], after: int) -> int | None:
        return queue_sql.next_delay_end(self, queue_names, after)

    def queue_depths(self) -> dict[str, dict[str, int]]:
        return queue_sql.queue_depths(self)

    def queue_waiting_since(self, now: int) -> dict[str, int]:
        return queue_sql.queue_waiting_since(self, now)

    def rate_starts(self, queue_name: str, since: int) -> int:
        return queue_sql.rate_starts(self, queue_name, since)

    # --- schedules (SQL in schedule_sql.py) ------------------------------------------------

    def save_schedule(self, row: base.ScheduleRow) -> base.ScheduleRow:
        return schedule_sql.save_schedule(self, row)

    def get_schedules(self, names: list[str] | None = None) -> list[base.ScheduleRow]:
        return schedule_sql.get_schedules(self, names)

    def set_schedule_paused(self, name: str, paused: bool, now: int) -> bool:
        return schedule_sql.set_schedule_paused(self, name, paused, now)

    def delete_schedule(self, name: str) -> bool:
        return schedule_sql.delete_schedule(self, name)

    def advance_schedule(self, name: str, expected_last_tick: int, new_last_tick: int,
                         now: int) -> bool:
        return schedule_sql.advance_schedule(self, name, expected_last_tick, new_last_tick, now)

    # --- application versions (SQL in version_sql.py) ------------------------------------

    def register_application_version(self, version_name: str, now: int) -> None:
        version_sql.register_application_version(self, version_name, now)

    def list_application_versions(self) -> list[base.ApplicationVersion]:
        return version_sql.list_application_versions(self)

    def get_latest_application_version(self) -> base.ApplicationVersion | None:
        return version_sql.get_latest_application_version(self)

    def set_latest_application_version(self, version_name: str, now: int) -> bool:
        return version_sql.set_latest_application_version(self, version_name, now)

    # --- suspended workflows (SQL in suspension_sql.py) -----------------------------------

    def suspend_workflow(
        self, workflow_id: str, owner: str, wake_at: int, now: int, *,
        topic: str | None = None, event: tuple[str, str] | None = None,
        step: StepRow | None = None,
    ) -> int | None:
        return suspension_sql.suspend_workflow(self, workflow_id, owner, wake_at, now,
                                               topic, event, step)

    def claim_due_workflows(
        self, owner: str, executor_id: str, now: int, limit: int,
        application_version: str | None, workflow_names: list[str],
    ) -> list[WorkflowRow]:
        return suspension_sql.claim_due_workflows(self, owner, executor_id, now, limit,
                                                  application_version, workflow_names)

    def next_wake_time(self, application_version: str | None,
                       workflow_names: list[str]) -> int | None:
        return suspension_sql.next_wake_time(self, application_version, workflow_names)

    # --- retention --------------------------------------------------------------------

    def garbage_collect(self, cutoff: int) -> int:
        p = self.prefix
        ids = [r[0] for r in self._all(self.q["gc_workflow_ids"], {"cutoff": cutoff})]
        for start in range(0, len(ids), 500):
            params: dict[str, Any] = {}
            in_list = self._in_list("g", ids[start:start + 500], params)
            with self._errors(), self._tx() as conn:
                for table in ("operation_outputs", "workflow_status_history",
                              "workflow_events_history", "notifications", "workflow_events",
                              "streams"):
                    col = "destination_id" if table == "notifications" else "workflow_id"
                    conn.execute(f"DELETE FROM {p}{table} WHERE {col} IN ({in_list})", params)
                conn.execute(f"DELETE FROM {p}workflow_status WHERE workflow_id IN ({in_list})",
                             params)
        params = {"cutoff": cutoff}
        with self._errors(), self._tx() as conn:
            for table in ("workflow_status_history", "workflow_events_history"):
                conn.execute(f"DELETE FROM {p}{table} WHERE at < {self._ph('cutoff')}", params)
        return len(ids)
