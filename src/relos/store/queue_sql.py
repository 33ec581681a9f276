"""The queue operations of :class:`~relos.store.sql.SQLStore` (which
delegates its queue methods to the functions here).

A dequeue is one transaction: count what the limits need (running workflows
for the global concurrency, recent starts for the rate limit: the rows its
claims wrote in the ``queue_starts`` ledger), pick eligible rows in priority
order and flip them to PENDING with this process as owner.
On PostgreSQL, rows are picked ``FOR UPDATE SKIP LOCKED`` so concurrent
dequeuers never wait on each other's rows; when the queue has a global budget
(concurrency or rate limit) the dequeuers of that queue also take a
transaction-scoped advisory lock, so two of them cannot both spend the same
budget. On SQLite the transaction holds the database's write lock throughout,
so a plain read first checks that there is anything to claim.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from relos import errors
from relos.store.announcer import QUIET
from relos.store.base import (
    CLAIMED_COLUMNS,
    DEQUEUE_ORDER,
    QUEUE_COLUMNS,
    QUEUED_STATUSES,
    WORKFLOW_COLUMNS,
    QueueRow,
    RowBatch,
    StepRow,
    WorkflowRow,
    column_kinds,
)

if TYPE_CHECKING:
    from relos.store.postgres import PostgresStore
    from relos.store.sql import SQLStore

_ELIGIBLE = (
    "queue_name = {q} AND (status = 'ENQUEUED' OR (status = 'DELAYED' AND "
    "delay_until_epoch_ms <= {now})) AND (application_version = {version}{unversioned})"
)
#: Added to _ELIGIBLE for a dequeuer running the latest application version:
#: it alone takes the workflows enqueued without a version.
_UNVERSIONED = " OR application_version IS NULL"
# For SQLite: the condition of the partial index workflow_status_queue_idx,
# which its planner does not infer from the OR above and needs to see to use
# the index; without it a dequeue scans every workflow the queue ever had.
# (PostgreSQL infers it, and the redundant term would only skew its estimates.)
_SQLITE_INDEX_HINT = " AND status IN ('ENQUEUED', 'DELAYED')"
#: Run first in a PostgreSQL dequeue transaction: its claim must walk the
#: dequeue index in order and stop after ``room`` rows, whatever the table's
#: statistics say (stale ones, or none when autovacuum is off, make the
#: planner collect every waiting row of the queue, and every index entry the
#: claimed ones left behind, with a bitmap scan and sort them: tens of
#: milliseconds per claim in a long run). It also tells the history trigger
#: that the transaction's updates change every row's status (migration 0012).
PG_CLAIM_SETTINGS = {"enable_seqscan": "off", "enable_bitmapscan": "off",
                     "enable_sort": "off", "relos.status_changes": "all"}


def for_transaction(settings: dict[str, str]) -> str:
    """A statement giving these (constant) settings to the rest of its transaction."""
    return "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)"
                                 for name, value in settings.items())


_PG_CLAIM_PLAN = for_transaction(PG_CLAIM_SETTINGS)


def save_queue(store: SQLStore, row: QueueRow) -> QueueRow:
    params = {c: getattr(row, c) for c in QUEUE_COLUMNS}
    params["priority_enabled"] = int(row.priority_enabled)
    params["partitioned"] = int(row.partitioned)
    with store._errors(), store._tx() as conn:
        conn.execute(store.q["save_queue"], params)
        found = conn.execute(store.q["get_queue"], {"name": row.name}).fetchone()
    return _queue_row(found)


def get_queues(store: SQLStore, names: list[str] | None = None) -> list[QueueRow]:
    params: dict[str, Any] = {}
    sql = f"SELECT {', '.join(QUEUE_COLUMNS)} FROM {store.prefix}queues"
    if names is not None:
        if not names:
            return []
        sql += f" WHERE name IN ({store._in_list('n', names, params)})"
    return [_queue_row(r) for r in store._all(sql + " ORDER BY name", params)]


def enqueue(
    store: SQLStore, rows: Sequence[WorkflowRow], step: StepRow | None = None
) -> list[WorkflowRow | None]:
    """SQLite's enqueue (PostgreSQL's store calls :func:`enqueue_postgres`)."""
    sql, params = _sqlite_insert(store.prefix, rows)
    if len(rows) > 1 and step is None:
        # The usual batch (fresh IDs, nothing to deduplicate against): one
        # executemany; should any row be kept out, roll it back and redo the
        # batch row by row below, to learn which rows and why.
        try:
            with store._errors(), store._tx() as conn:
                if conn.executemany(sql, params).rowcount == len(rows):
                    return [None] * len(rows)
                raise _RowByRow
        except _RowByRow:
            pass
    with store._errors(), store._tx() as conn:
        results = [None if conn.execute(sql, args).rowcount == 1 else _blocker(store, conn, row)
                   for args, row in zip(params, rows, strict=True)]
        if step is not None:
            store.record_step_in(conn, step)
    return results


#: The columns SQLite's enqueue always names: the NOT NULL ones (a missing
#: value is refused, not replaced by a default). The rest are named only when
#: a row of the batch sets them.
_NAMED_ALWAYS = frozenset(("workflow_id", "inputs", "status", "name", "executor_id",
                           "created_at", "updated_at", "priority", "recovery_attempts"))
#: The columns in the order the INSERT names them: the two that vary first.
_ENQUEUE_ORDER = ("workflow_id", "inputs") + tuple(
    c for c in WORKFLOW_COLUMNS if c not in ("workflow_id", "inputs"))


def _sqlite_insert(prefix: str, rows: Sequence[WorkflowRow]) -> tuple[str, list[tuple[Any, ...]]]:
    """The INSERT of ``rows`` for SQLite and its parameters, row by row.

    It names only the columns some row sets (and the NOT NULL ones): Python's
    sqlite3 binds every parameter at a cost, NULLs too (about 0.25 µs each:
    with all 31 columns named, a third of a bulk enqueue's time per row went to
    binding). A :class:`RowBatch` gives its parameters from its parts,
    without making a row object per workflow."""
    if isinstance(rows, RowBatch):
        shared = vars(rows.shared)
        cols = tuple(c for c in _ENQUEUE_ORDER if c in _NAMED_ALWAYS or shared[c] is not None)
        tail = tuple(shared[c] for c in cols[2:])
        params = [(i, x, *tail) for i, x in zip(rows.ids, rows.inputs[:], strict=True)]
    else:
        dicts = [vars(r) for r in rows]
        cols = tuple(c for c in _ENQUEUE_ORDER
                     if c in _NAMED_ALWAYS or any(d[c] is not None for d in dicts))
        pick = itemgetter(*cols)
        params = [pick(d) for d in dicts]
    return _sqlite_insert_sql(prefix, cols), params


@functools.lru_cache(maxsize=64)
def _sqlite_insert_sql(prefix: str, cols: tuple[str, ...]) -> str:
    return (f"INSERT INTO {prefix}workflow_status ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING")


class _RowByRow(Exception):
    """Rolls a bulk insert back to redo it row by row."""


def enqueue_postgres(
    store: PostgresStore, rows: Sequence[WorkflowRow], step: StepRow | None, quiet: bool
) -> list[WorkflowRow | None]:
    """One INSERT for the whole batch (its trigger notifies the dequeuers,
    unless ``quiet``: the caller announces after commit); without a parent's
    step to record, that statement is the transaction: one round trip."""
    if len(rows) == 1:
        rows = [rows[0]]  # (a RowBatch makes its row at each reading: once is enough)
    sql, params = _bulk_insert(store.prefix, rows, quiet, own_history=step is None)
    # (its statement, or for several rows the status trigger, announces the
    # queues it inserts rows in, unless quiet)
    echo = store.echoes.enqueuing(rows, quiet)
    with store._errors():
        if step is None:
            with echo, store._conn() as conn:
                echo.expect(conn)
                inserted = {r[0] for r in store._rows(conn, sql, params)}
                results = [None if r.workflow_id in inserted else _blocker(store, conn, r)
                           for r in rows]
                echo.inserted(rows, results)
                return results
        with echo, store._tx() as conn:
            echo.expect(conn)
            inserted = {r[0] for r in conn.execute(sql, params).fetchall()}
            results = [None if r.workflow_id in inserted else _blocker(store, conn, r)
                       for r in rows]
            store.record_step_in(conn, step)
            echo.inserted(rows, results)
            return results


def _bulk_insert(prefix: str, rows: Sequence[WorkflowRow], quiet: bool,
                 own_history: bool = False) -> tuple[str, list[Any]]:
    """An INSERT of ``rows`` as one statement. The columns whose value differs
    between rows (usually just the IDs and the inputs) come from one JSON
    parameter, read by ``json_to_recordset``; a column with one value for all
    rows is one parameter (one row: every column, the same statement text
    each time, prepared once per connection).

    ``own_history`` (one row, in a statement that is its transaction's only
    one): the statement writes the row's history itself (see :func:`_insert_sql`)."""
    if len(rows) == 1:
        row = rows[0]
        announce = not quiet and row.status in QUEUED_STATUSES and row.queue_name is not None
        return (_insert_sql(prefix, (), True, announce, own_history),
                list(map(vars(row).__getitem__, WORKFLOW_COLUMNS)))
    dicts = [vars(r) for r in rows]
    first = dicts[0]
    varying = []
    for c in WORKFLOW_COLUMNS:
        values = list(map(itemgetter(c), dicts))
        if values.count(first[c]) != len(values):
            varying.append(c)
    params: list[Any] = [first[c] for c in WORKFLOW_COLUMNS if c not in varying]
    if varying:
        pick = itemgetter(*varying)
        values = [pick(d) for d in dicts] if len(varying) > 1 else [
            (pick(d),) for d in dicts]
        params.append(json.dumps([dict(zip(varying, v, strict=True)) for v in values],
                                 separators=(",", ":")))
    return _insert_sql(prefix, tuple(varying), quiet), params


@functools.lru_cache(maxsize=64)
def _insert_sql(prefix: str, varying: tuple[str, ...], quiet: bool,
                announce: bool = False, own_history: bool = False) -> str:
    """The INSERT of :func:`_bulk_insert` whose ``varying`` columns come from
    the JSON parameter (the last one), the rest from one parameter each;
    ``quiet``: the status trigger leaves the NOTIFY to the caller.
    ``announce`` (with ``quiet``): the statement sends the NOTIFY itself, for
    the rows it inserts. A single row's statement does so rather than leave it
    to the trigger's two queries over the transition table (is a row
    ENQUEUED, to which queues): pgbench, one client, commits not waited for,
    212 -> 189 µs per enqueue statement (medians of eight alternated runs).

    ``own_history`` (``quiet`` or not: the trigger does not run): the
    statement also writes the inserted rows' history rows and tells the
    insert trigger, whose ``WHEN`` reads the setting, not to run at all
    (migration 18). For a statement that is its transaction's only one: the
    setting lasts until the transaction ends. The trigger's
    work (a PL/pgSQL call reading a transition table, then a query of its
    own) cost about 30 µs of the server's time per single enqueue (pgbench,
    one client, commits waited for, medians of three alternated runs: 286 ->
    258 µs)."""
    select = [f"u.{c}" if c in varying else f"%s::{_KINDS[c]}" for c in WORKFLOW_COLUMNS]
    setting = OWN_HISTORY if own_history else QUIET if quiet else None
    sources = [f"({setting}) AS setting"] if setting else []
    if varying:
        sources.append("json_to_recordset(%s::json) AS u("
                       + ", ".join(f"{c} {_KINDS[c]}" for c in varying) + ")")
    source = f" FROM {', '.join(sources)}" if sources else ""
    notify = ", pg_notify('relos_queues', queue_name)" if announce else ""
    insert = (f"INSERT INTO {prefix}workflow_status ({', '.join(WORKFLOW_COLUMNS)}) "
              f"SELECT {', '.join(select)}{source} ON CONFLICT DO NOTHING RETURNING ")
    if not own_history:
        return f"{insert}workflow_id{notify}"
    read = ", ".join(_HISTORY_READ)
    kept = read.replace("updated_at", "at")
    return (f"WITH ins AS ({insert}{read}, queue_name), "
            f"hist AS (INSERT INTO {prefix}workflow_status_history ({kept}) "
            f"SELECT {read} FROM ins) SELECT workflow_id{notify} FROM ins")


#: The setting (local to one transaction) under which the status table's
#: insert trigger does not run (migration 18): the statement that sets it
#: writes its rows' history itself.
OWN_HISTORY = "SELECT set_config('relos.announce', 'self', true)"
#: The status columns a history row keeps (``updated_at`` as its ``at``).
_HISTORY_READ = ("workflow_id", "status", "owner", "executor_id", "recovery_attempts",
                 "authenticated_user", "updated_at")


#: The PostgreSQL type of each workflow_status column, as json_to_recordset reads it.
_KINDS = column_kinds(WorkflowRow)


def _blocker(store: SQLStore, conn: Any, row: WorkflowRow) -> WorkflowRow:
    """The row that kept ``row`` out: same ID, else same deduplication ID."""
    found = conn.execute(store.q["get_workflow"], {"workflow_id": row.workflow_id}).fetchone()
    if found is None and row.deduplication_id is not None:
        found = conn.execute(
            store.q["get_deduplicated"],
            {
                "queue_name": row.queue_name,
                "deduplication_id": row.deduplication_id,
            },
        ).fetchone()
    if found is None:  # the blocker finished in between: vanishingly rare
        raise errors.StoreError(f"could not enqueue workflow {row.workflow_id!r}; try again")
    return WorkflowRow(*found)


def dequeue(
    store: SQLStore,
    queue: QueueRow,
    owner: str,
    executor_id: str,
    now: int,
    max_claim: int,
    application_version: str | None,
    workflow_names: list[str],
    take_unversioned: bool = True,
    created_from: int | None = None,
) -> list[WorkflowRow]:
    if max_claim <= 0:
        return []
    params: dict[str, Any] = {"queue_name": queue.name, "now": now, "version": application_version}
    ph = store._ph
    if not workflow_names:
        return []
    p = store.prefix
    postgres = store.backend == "postgres"
    eligible = _ELIGIBLE.format(q=ph("queue_name"), now=ph("now"), version=ph("version"),
                                unversioned=_UNVERSIONED if take_unversioned else "")
    if not postgres:
        eligible += _SQLITE_INDEX_HINT
    eligible += f" AND name IN ({store._in_list('fn', workflow_names, params)})"
    if created_from is not None and queue.in_creation_order:
        # A row comparison on the columns of the dequeue index that follow the
        # queue name: PostgreSQL's index scan starts there.
        params["created_from"] = created_from
        eligible += f" AND (priority, created_at) >= (0, {ph('created_from')})"
    if not postgres and store._one(
            f"SELECT 1 FROM {p}workflow_status WHERE {eligible} LIMIT 1", params) is None:
        # Nothing to claim: spare the database's write lock, which every process
        # polling every queue it listens to would otherwise take a few times a
        # second, holding up the writes of running workflows.
        return []
    claimed: list[WorkflowRow] = []
    if postgres and queue.unbudgeted:
        # No budget to count: the claim is one statement.
        params["room"] = max_claim
        with store._errors(), store._batch_conn() as conn:  # (planner settings: its session's)
            cur = _claim_cursor(store, conn, eligible, params, owner, executor_id, now)
            return _claimed(cur.fetchall())
    with store._errors(), store._tx() as conn:
        if postgres:
            conn.execute(_PG_CLAIM_PLAN)
        if postgres and (queue.concurrency is not None or queue.rate_limit is not None):
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%(lock)s))",
                {"lock": f"relos.queue:{queue.name}"},
            )
        budget = max_claim
        rated = queue.rate_limit is not None and bool(queue.rate_period_ms)
        if rated:
            params["since"] = now - (queue.rate_period_ms or 0)
            started = conn.execute(_rate_starts_sql(store), params).fetchone()[0]
            budget = min(budget, (queue.rate_limit or 0) - int(started))
        partitions: list[Any] = [None]
        if queue.partitioned:
            # Partitions in the order of their first eligible workflow (priority,
            # then age), so a budget smaller than the partitions goes to the work
            # that would come first in an unpartitioned queue, not always to the
            # same partitions.
            partitions = [
                r[0]
                for r in conn.execute(
                    f"SELECT queue_partition_key FROM {p}workflow_status WHERE {eligible} "
                    f"GROUP BY queue_partition_key "
                    f"ORDER BY MIN(priority), MIN(created_at), queue_partition_key",
                    params,
                ).fetchall()
            ]
        for part in partitions:
            room = budget - len(claimed)
            if room <= 0:
                break
            where = eligible
            if queue.partitioned:
                params["part"] = part
                where += (
                    f" AND queue_partition_key = {ph('part')}"
                    if part is not None
                    else " AND queue_partition_key IS NULL"
                )
            if queue.concurrency is not None:
                # Counted through the (status, executor_id) index, bounded by what
                # runs now, not through the queue's index, which holds its whole
                # history; SQLite must be told ("+" hides queue_name from its
                # planner), PostgreSQL's statistics make that choice.
                qcol = "queue_name" if postgres else "+queue_name"
                running_where = f"{qcol} = {ph('queue_name')} AND status = 'PENDING'"
                if queue.partitioned:
                    running_where += (
                        f" AND queue_partition_key = {ph('part')}"
                        if part is not None
                        else " AND queue_partition_key IS NULL"
                    )
                running = conn.execute(
                    f"SELECT COUNT(*) FROM {p}workflow_status WHERE {running_where}", params
                ).fetchone()[0]
                room = min(room, queue.concurrency - int(running))
                if room <= 0:
                    continue
            params["room"] = room
            claimed.extend(_claim(store, conn, where, params, owner, executor_id, now))
        if rated and claimed:
            _record_starts(store, conn, queue, len(claimed), now)
    return claimed


def _rate_starts_sql(store: SQLStore) -> str:
    ph = store._ph
    return (f"SELECT COALESCE(SUM(started), 0) FROM {store.prefix}queue_starts "
            f"WHERE queue_name = {ph('queue_name')} AND started_at >= {ph('since')}")


def rate_starts(store: SQLStore, queue_name: str, since: int) -> int:
    found = store._one(_rate_starts_sql(store), {"queue_name": queue_name, "since": since})
    return int(found[0]) if found is not None else 0


#: Ledger rows of a rate-limited queue are kept this long at least (or its
#: period, if longer): a period lengthened at run time finds the starts it
#: now covers.
KEEP_STARTS_MS = 3_600_000


def _record_starts(store: SQLStore, conn: Any, queue: QueueRow, started: int, now: int
                   ) -> None:
    """Write the claim's starts in the queue's rate ledger (under the queue's
    lock, in the claim's transaction) and drop the rows no period looks at."""
    ph, p = store._ph, store.prefix
    keep = max(KEEP_STARTS_MS, queue.rate_period_ms or 0)
    params = {"queue_name": queue.name, "now": now, "started": started,
              "before": now - keep}
    conn.execute(f"INSERT INTO {p}queue_starts (queue_name, started_at, started) "
                 f"VALUES ({ph('queue_name')}, {ph('now')}, {ph('started')})", params)
    conn.execute(f"DELETE FROM {p}queue_starts WHERE queue_name = {ph('queue_name')} "
                 f"AND started_at < {ph('before')}", params)


def _claim(store: SQLStore, conn: Any, where: str, params: dict[str, Any], owner: str,
           executor_id: str, now: int) -> list[WorkflowRow]:
    """Flip up to ``params["room"]`` eligible rows to PENDING under this owner,
    first in priority order; one UPDATE whose sub-select picks them (skipping
    rows another dequeuer has locked, on PostgreSQL). The claimed rows, in
    priority order."""
    return _claimed(_claim_cursor(store, conn, where, params, owner, executor_id, now
                                  ).fetchall())


def _claim_cursor(store: SQLStore, conn: Any, where: str, params: dict[str, Any], owner: str,
                  executor_id: str, now: int) -> Any:
    ph, p = store._ph, store.prefix

    def picked(column: str) -> str:
        return (f"SELECT {column} FROM {p}workflow_status WHERE {where} "
                f"ORDER BY priority, created_at, workflow_id LIMIT {ph('room')}")

    if store.backend == "postgres":
        # The rows picked and locked are updated where they are (their ctid,
        # which the lock pins down): no primary-key lookup per claimed row.
        # A row another transaction changed after this statement's snapshot
        # is locked in its new version, which this UPDATE cannot see: it is
        # left alone (still ENQUEUED for the next claim), never claimed twice.
        target = f"ctid = ANY(ARRAY({picked('ctid')} FOR UPDATE SKIP LOCKED))"
    else:
        target = f"workflow_id IN ({picked('workflow_id')})"
    params = {**params, "owner": owner, "executor_id": executor_id, "now": now}
    return conn.execute(
        f"UPDATE {p}workflow_status SET status = 'PENDING', owner = {ph('owner')}, "
        f"executor_id = {ph('executor_id')}, started_at = {ph('now')}, "
        f"updated_at = {ph('now')}, recovery_attempts = recovery_attempts + 1, "
        f"version_from_claim = application_version IS NULL, "
        f"application_version = COALESCE(application_version, {ph('version')}), "
        f"deadline_epoch_ms = CASE WHEN timeout_ms IS NULL THEN deadline_epoch_ms "
        f"ELSE {ph('now')} + timeout_ms END "
        f"WHERE {target} RETURNING {', '.join(CLAIMED_COLUMNS)}",
        params,
    )


def _claimed(rows: list[Any]) -> list[WorkflowRow]:
    """Claimed rows (CLAIMED_COLUMNS; the other columns keep their defaults)."""
    new, columns = object.__new__, CLAIMED_COLUMNS

    def claimed_row(values: Any) -> WorkflowRow:
        row: WorkflowRow = new(WorkflowRow)
        row.__dict__.update(zip(columns, values, strict=True))
        return row

    claimed = [claimed_row(r) for r in rows]
    claimed.sort(key=DEQUEUE_ORDER)
    return claimed


def find_claimed(store: SQLStore, owner: str, executor_id: str, stamp: int,
                 queue_name: str | None) -> list[WorkflowRow]:
    ph = store._ph
    params: dict[str, Any] = {"owner": owner, "executor_id": executor_id, "stamp": stamp,
                              "queue_name": queue_name}
    # (through the (status, executor_id) index: this executor's PENDING rows)
    sql = (f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM {store.prefix}workflow_status "
           f"WHERE status = 'PENDING' AND executor_id = {ph('executor_id')} "
           f"AND owner = {ph('owner')} AND wake_at_epoch_ms IS NULL AND ")
    if queue_name is not None:
        sql += f"queue_name = {ph('queue_name')} AND started_at = {ph('stamp')}"
    else:
        # (woken at the stamp, started before it: not a dequeue's row, nor a
        # workflow started here at that moment)
        sql += (f"updated_at = {ph('stamp')} "
                f"AND COALESCE(started_at, created_at) < {ph('stamp')}")
    return [WorkflowRow(*r) for r in store._all(sql + " ORDER BY created_at", params)]


def requeue(store: SQLStore, workflow_id: str, expected_owner: str | None, now: int,
            started: bool = True, counted: bool = True) -> bool:
    ph = store._ph
    params = {"workflow_id": workflow_id, "expected_owner": expected_owner, "now": now}
    where = (f"workflow_id = {ph('workflow_id')} AND status = 'PENDING' "
             f"AND queue_name IS NOT NULL "
             f"AND COALESCE(owner, '') = COALESCE(CAST({ph('expected_owner')} AS TEXT), '')")
    return store._run(_requeue_sql(store, started, where, counted), params) == 1


def requeue_many(store: SQLStore, workflow_ids: list[str], expected_owner: str | None,
                 now: int) -> list[tuple[str, str]]:
    """:func:`requeue` of started workflows, many in one statement."""
    if not workflow_ids:
        return []
    params: dict[str, Any] = {"expected_owner": expected_owner, "now": now}
    picked = store._pick_owned(workflow_ids, params, "queue_name IS NOT NULL")
    sql = _requeue_sql(store, True, f"workflow_id IN ({picked})")  # (checked by the SELECT)
    return [(r[0], r[1]) for r in store._all(sql + " RETURNING workflow_id, queue_name", params)]


def _requeue_sql(store: SQLStore, started: bool, where: str, counted: bool = True) -> str:
    """The UPDATE of :func:`requeue` for the rows ``where`` picks."""
    # A requeued workflow may have recorded steps (it ran, or was resumed after
    # running), and the runtime loads the steps of a dequeued workflow only when
    # its recovery attempts exceed 1 (a fresh one has none to load): so keep the
    # attempts at 1 or more here, as the next dequeue adds one. resume_workflow
    # resets them to 0 before a resumed queued workflow comes back this way.
    # One given back before it started takes its claim's attempt back instead,
    # and the application version its claim gave it (migration 13): any
    # executor of the latest version may take it, as before the claim. One
    # stopped by the database (not ``counted``) takes its claim's attempt back
    # too, keeping 1 or more: an outage does not bring a workflow nearer to
    # being dead-lettered.
    if started and not counted:
        undo = ("recovery_attempts = CASE WHEN recovery_attempts > 1 THEN recovery_attempts - 1 "
                "ELSE 1 END")
    elif started:
        undo = "recovery_attempts = CASE WHEN recovery_attempts < 1 THEN 1 ELSE recovery_attempts END"
    else:
        undo = ("recovery_attempts = CASE WHEN recovery_attempts > 0 THEN recovery_attempts - 1 "
                "ELSE 0 END, application_version = CASE WHEN version_from_claim "
                "THEN NULL ELSE application_version END, version_from_claim = NULL")
    return (f"UPDATE {store.prefix}workflow_status SET status = 'ENQUEUED', owner = NULL, "
            f"updated_at = {store._ph('now')}, {undo} WHERE {where}")


def next_rate_slot(store: SQLStore, queue_name: str, period_ms: int, now: int) -> int | None:
    # The limiter counts the ledger's starts at or after now - period (see
    # rate_starts): the oldest of them stops counting a millisecond after it
    # is a whole period old.
    found = store._one(
        f"SELECT MIN(started_at) FROM {store.prefix}queue_starts "
        f"WHERE queue_name = {store._ph('queue_name')} AND started_at >= {store._ph('since')}",
        {"queue_name": queue_name, "since": now - period_ms})
    return None if found is None or found[0] is None else int(found[0]) + period_ms + 1


def next_delay_end(store: SQLStore, queue_names: list[str], after: int) -> int | None:
    if not queue_names:
        return None
    found = store._one(*next_delay_end_query(store, queue_names, after))
    return None if found is None or found[0] is None else int(found[0])


def next_delay_end_query(store: SQLStore, queue_names: list[str], after: int
                         ) -> tuple[str, dict[str, Any]]:
    """The statement of :func:`next_delay_end` and its parameters.

    It reads the DELAYED rows' own index (migration 15), in delay order, and
    tests the queue names row by row ("IS TRUE" hides them from the planner):
    the dequeue index holds the DELAYED rows too, among every ENQUEUED row of
    their queues, and a PostgreSQL planner without fresh statistics (a table
    filled since its last ANALYZE) would read a whole backlog through it to
    find the few DELAYED rows (130 ms at 300,000 ENQUEUED rows, against
    0.1 ms)."""
    params: dict[str, Any] = {"after": after}
    sql = (f"SELECT MIN(delay_until_epoch_ms) FROM {store.prefix}workflow_status "
           f"WHERE status = 'DELAYED' AND delay_until_epoch_ms > {store._ph('after')} "
           f"AND (queue_name IN ({store._in_list('q', queue_names, params)})) IS TRUE")
    return sql, params


def queue_depths(store: SQLStore) -> dict[str, dict[str, int]]:
    # Two counts, each over the one index holding its rows: the dequeue
    # index's waiting rows, the (status, executor_id) index's running ones
    # (one query over all three statuses reads the whole table on PostgreSQL,
    # where neither index holds them all).
    count = (f"SELECT queue_name, status, COUNT(*) FROM {store.prefix}workflow_status "
             f"WHERE queue_name IS NOT NULL AND status ")
    rows = store._all(
        f"{count}IN ('ENQUEUED', 'DELAYED') GROUP BY queue_name, status "
        f"UNION ALL {count}= 'PENDING' GROUP BY queue_name, status",
        {},
    )
    depths: dict[str, dict[str, int]] = {}
    for name, status, count in rows:
        depths.setdefault(name, {"ENQUEUED": 0, "DELAYED": 0, "PENDING": 0})[status] = int(count)
    return depths


def queue_waiting_since(store: SQLStore, now: int) -> dict[str, int]:
    # Over the dequeue index's rows, as the depths' count of them.
    rows = store._all(
        f"SELECT queue_name, MIN(CASE WHEN status = 'ENQUEUED' THEN updated_at "
        f"ELSE delay_until_epoch_ms END) FROM {store.prefix}workflow_status "
        f"WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED') "
        f"AND (status = 'ENQUEUED' OR delay_until_epoch_ms <= {store._ph('now')}) "
        f"GROUP BY queue_name",
        {"now": now},
    )
    return {name: int(since) for name, since in rows if since is not None}


def _queue_row(r: Any) -> QueueRow:
    row = QueueRow(*r)
    row.priority_enabled = bool(row.priority_enabled)
    row.partitioned = bool(row.partitioned)
    return row
