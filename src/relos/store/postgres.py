"""The PostgreSQL backend (production): psycopg 3 with a connection pool.

Every table lives in one schema (``relos`` unless configured). Connections run
in autocommit mode, so a single-statement state change is one round trip; the
store's own statements are prepared on the server at their first use on each
connection (other SQL after two uses). Triggers announce new messages, events
and stream entries with NOTIFY, and one listening connection per process wakes
the local waiters (polling remains the fallback).

Connections come from a ``psycopg_pool`` pool (at most ``pool_size``, shared
by any number of threads). Its checkout check costs no round trip: an idle
connection whose socket turned readable was closed by the server (restart,
termination) and is replaced before use. Each connection keeps one cursor for
the store's prepared statements.
"""

from __future__ import annotations

import collections
import functools
import json
import operator
import os
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

from relos import errors
from relos.store import copy_text, libpq, migrations, queue_sql, redact
from relos.store.announcer import QUEUES, QUIET, Announcer
from relos.store.base import (
    STEP_COLUMNS,
    Completion,
    StepRow,
    WorkflowRow,
    check_isolation,
    column_kinds,
)
from relos.store.echoes import Echoes, announced_queues
from relos.store.sql import ALL, ONE, ROWCOUNT, SQLStore

try:
    import psycopg
    import psycopg.errors
    from psycopg import sql as pgsql
    from psycopg_pool import ConnectionPool
except ImportError:  # pragma: no cover - exercised only without the extra installed
    psycopg = None  # type: ignore[assignment]

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MIGRATION_LOCK = 0x72656C6F73  # "relos": serialises concurrent migrators
#: How long ``start_listener`` waits for its connection to listen.
LISTEN_WAIT_SECONDS = 5.0
_CHANNELS = {"relos_notifications": "notifications", "relos_events": "events",
             "relos_streams": "streams", "relos_queues": "queues", "relos_wake": "wake",
             "relos_queues_full": "queues_full"}


#: The status test of a batch statement that joins its JSON rows to
#: workflow_status by ID. Written so that no index can serve it: the planner,
#: whose statistics of PENDING rows lag behind a busy queue, would otherwise
#: scan every PENDING row through a status index and hash-join them, instead
#: of one primary-key lookup per row (measured: twice the server time per
#: completed task at batches of 100).
_STILL_PENDING = "(w.status = 'PENDING') IS TRUE"
#: Run first in a batch-write transaction: its statements join their JSON rows
#: to workflow_status by primary-key lookups, the one plan whose cost follows
#: the batch, not the table; without statistics (autovacuum off) the planner
#: takes the table for a few pages and scans it all instead. Its completions
#: change every row's status (PENDING to a final one): the history trigger
#: need not compare old and new rows (migration 0012).
_BATCH_SETTINGS = {"enable_seqscan": "off", "enable_hashjoin": "off",
                   "enable_mergejoin": "off", "relos.status_changes": "all"}
_BATCH_PLAN = queue_sql.for_transaction(_BATCH_SETTINGS)


#: Enqueued batches of this many rows or more go in by COPY (below it, the
#: one-statement INSERT costs fewer round trips than COPY's two).
COPY_FROM = 16


def require_psycopg() -> None:
    if psycopg is None:
        raise errors.ConfigError(
            "PostgreSQL support needs psycopg: pip install 'relos[postgres]'"
        )


#: The session settings of the batch connections (``PostgresStore.batch_pool``),
#: for a claim of a queue without limits and a batch of completions, each sent
#: alone: one statement in autocommit is one message and one round trip, and
#: the server never waits on the client inside the transaction (in a busy
#: process the client's next message can wait milliseconds for its turn at
#: the interpreter's lock while the claimed rows stay locked): the settings
#: of both kinds of transaction, which change the status of every row they
#: update.
_BATCH_SESSION = {**_BATCH_SETTINGS, **queue_sql.PG_CLAIM_SETTINGS}


def _configure_batch_session(conn: Any) -> None:
    for name, value in _BATCH_SESSION.items():
        conn.execute(f"SET {name} = '{value}'")


@contextmanager
def _borrowed(pool: Any) -> Iterator[Any]:
    """One of the pool's connections, for the block."""
    conn = pool.getconn()
    try:
        yield conn
    finally:
        pool.putconn(conn)


def _statement(conn: Any, sql: str, args: Sequence[Any], result: int) -> Any:
    """Run one statement on ``conn`` (through libpq where its parameters
    allow, else a cursor); what ``result`` asks for (ROWCOUNT, ONE or ALL)."""
    done = libpq.run(conn, sql, args)
    if done is not None:
        res, st = done
        if result == ROWCOUNT:
            return libpq.rowcount(res)
        got = libpq.rows(conn, res, st)
        return (got[0] if got else None) if result == ONE else got
    cur = _cursor(conn).execute(sql, args, prepare=True)
    if result == ROWCOUNT:
        return cur.rowcount
    return cur.fetchone() if result == ONE else cur.fetchall()


class _MostRecentFirst(collections.deque):  # type: ignore[type-arg]
    """A pool's idle connections, the most recently returned handed out first.

    psycopg_pool hands out the connection idle the longest (a queue): in a
    process with a few pooled connections every statement then runs on a
    server process that sat idle meanwhile, its caches cold. Handing out the
    last one returned keeps a busy thread on one warm server process
    (measured, one enqueue at a time with two pooled connections: 477 µs per
    enqueue in turn, 414 µs most recent first). Connections at the bottom
    stay idle until demand needs them; the pool's checkout check still runs.
    """

    def append(self, conn: Any) -> None:
        self.appendleft(conn)  # (the pool takes connections from the left)


def _most_recent_first(pool: Any) -> Any:
    """``pool``, made to hand out its most recently returned connection first
    (a matter of speed only: left as it is if the pool's internals differ)."""
    if type(getattr(pool, "_pool", None)) is collections.deque:
        pool._pool = _MostRecentFirst(pool._pool)
    return pool


#: The SQLSTATEs with which the server ends a session (an administrator's
#: command, a crash of another server process, a shutdown under way): whatever
#: state the connection object reports, the session is gone.
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})


def _cannot_write(exc: BaseException) -> bool:
    """Whether the server refused for want of resources (SQLSTATE class 53: a
    full disk, out of memory, too many connections), a system error (class
    58: an I/O error) or because it is read-only (25006: a standby, or
    ``default_transaction_read_only``): not the write's fault, and it may go
    through later."""
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in ("53", "58") or state == "25006"

#: The server's clock in epoch milliseconds (the time now, not the
#: transaction's start).
_CLOCK_SQL = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"


def _check_idle(conn: Any) -> None:
    """Pool check, run on every checkout without a round trip: an idle
    connection whose socket turned readable has been closed or terminated by
    the server (restart, ``pg_terminate_backend``, idle timeout). It is closed
    (the pool discards a closed connection, but would keep an open one that
    failed its check) and the pool hands out another."""
    if select.select([conn.fileno()], [], [], 0)[0]:
        conn.close()
        raise psycopg.OperationalError("the server closed this idle connection")


def _cursor(conn: Any) -> Any:
    """The connection's reusable cursor (creating a cursor per statement costs
    more than running a prepared one)."""
    cur = getattr(conn, "_relos_cursor", None)
    if cur is None or cur.closed:
        cur = conn.cursor()
        conn._relos_cursor = cur
    return cur


def _json_rows(rows: Sequence[Any]) -> str:
    """Dataclass rows as one JSON array of arrays, each row's fields in their
    declared order (read back by :func:`_json_source`). Positional, not one
    object per row: without the keys, the text is about 40% shorter, and
    both ends do half the work (1,000 completions: encoded in 0.74 instead of
    1.74 ms; read by the server in 1.3 instead of 2.2–2.7 ms)."""
    if not rows:
        return "[]"
    return json.dumps(list(map(_fields(rows[0].__class__), rows)), separators=(",", ":"))


@functools.cache
def _fields(row_class: type) -> Callable[[Any], tuple[Any, ...]]:
    return operator.attrgetter(*row_class.__dataclass_fields__)  # type: ignore[attr-defined]


@functools.cache
def _json_source(row_class: type) -> str:
    """The rows of a :func:`_json_rows` parameter as the FROM item ``u``, with
    the row class's fields as columns (``int`` ones bigint, the rest text)."""
    columns = ", ".join(
        f"e->>{i} AS {name}" if kind == "text" else f"(e->>{i})::{kind} AS {name}"
        for i, (name, kind) in enumerate(column_kinds(row_class).items()))
    return f"(SELECT {columns} FROM jsonb_array_elements(%s::jsonb) AS e) AS u"


class PostgresStore(SQLStore):
    backend = "postgres"
    paramstyle = "pyformat"
    marker = "%s"
    pushes_notifications = True
    concurrent_writers = True

    def __init__(self, url: str, *, schema: str = "relos", pool_size: int = 16,
                 connect_timeout: float = 10.0, create_database: bool = True):
        require_psycopg()
        if not _SCHEMA_RE.match(schema):
            raise errors.ConfigError(
                f"invalid PostgreSQL schema name {schema!r}: use letters, digits and "
                f"underscores, starting with a letter"
            )
        self.url = url
        self.schema = schema
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        super().__init__(prefix=f'"{schema}".')
        self._ensure_database(connect_timeout, create_database)
        # Which process a server session belongs to, in pg_stat_activity
        # (unless the URL names the application itself).
        self._named: dict[str, Any] = {"application_name": f"relos:{os.getpid()}"}
        with suppress(psycopg.Error):
            if "application_name" in psycopg.conninfo.conninfo_to_dict(url):
                self._named = {}
        self.pool = _most_recent_first(ConnectionPool(
            url, min_size=1, max_size=max(2, pool_size), open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, "prepare_threshold": 2, **self._named},
            check=_check_idle, name="relos-system",
        ))
        #: Connections for the statements that claim and complete workflows in
        #: batches, each one statement in autocommit (see ``_BATCH_SESSION``).
        self.batch_pool = _most_recent_first(ConnectionPool(
            url, min_size=0, max_size=4, open=False, timeout=connect_timeout,
            kwargs={"autocommit": True, "prepare_threshold": 2, **self._named},
            configure=_configure_batch_session, check=_check_idle, name="relos-batches",
        ))
        with self._errors():
            self.pool.open(wait=True, timeout=connect_timeout)
            self.batch_pool.open(wait=True, timeout=connect_timeout)
        #: Enqueues in flight (see ``enqueue``).
        self._enqueuing = 0
        self._enqueuing_lock = threading.Lock()
        #: The NOTIFYs of this process's own enqueues, which its listener
        #: drops (the enqueuer wakes this process's dequeuers itself).
        self.echoes = Echoes()
        self._announcer = Announcer(
            lambda: psycopg.connect(url, autocommit=True, **self._named), self.echoes)

    # --- connections ------------------------------------------------------------------

    def _ensure_database(self, timeout: float, create: bool) -> None:
        """Connect once to report a clear error, creating the database if it is
        missing and ``create`` allows it."""
        try:
            psycopg.connect(self.url, connect_timeout=int(max(1, timeout))).close()
            return
        except psycopg.OperationalError as exc:
            missing = "does not exist" in str(exc) and "database" in str(exc)
            if not (missing and create):
                hint = ("check the database name (launching relos or `relos migrate` creates "
                        "it)" if missing else "check that the server is running and the URL's "
                        "host, port, user and password")
                raise errors.DatabaseUnreachableError(
                    f"cannot connect to PostgreSQL at {redact(self.url)}: "
                    f"{' '.join(str(exc).split())}; {hint}"
                ) from exc
        except psycopg.ProgrammingError as exc:
            raise errors.ConfigError(
                f"malformed PostgreSQL URL {redact(self.url)}: {exc}; expected "
                f"postgresql://user:password@host:port/database"
            ) from exc
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        dbname = str(info.get("dbname"))
        info["dbname"] = "postgres"
        admin = psycopg.conninfo.make_conninfo("", **info)
        with psycopg.connect(admin, autocommit=True) as conn, suppress(
            psycopg.errors.DuplicateDatabase
        ):
            conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(dbname)))

    def _conn(self) -> AbstractContextManager[Any]:
        return _borrowed(self.pool)

    def _batch_conn(self) -> AbstractContextManager[Any]:
        """A connection of ``batch_pool`` (autocommit, ``_BATCH_SESSION``)."""
        return _borrowed(self.batch_pool)

    @contextmanager
    def _tx(self, isolation_level: str | None = None) -> Iterator[Any]:
        conn = self.pool.getconn()
        try:
            with conn.transaction():
                if isolation_level and isolation_level != "READ COMMITTED":
                    level = check_isolation(isolation_level)
                    conn.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
                yield conn
        finally:
            self.pool.putconn(conn)

    @contextmanager
    def transaction(self, isolation_level: str | None) -> Iterator[Any]:
        """As SQLStore's; when it fails with its connection lost (the server
        ended it, or the network) or none to be had, the error is
        ``DatabaseUnreachableError``, whatever the BEGIN, a statement or the
        commit raised: it may have committed, and it is not the outcome of the
        code that ran in it. An error on a sound connection is raised as it is."""
        try:
            conn = self.pool.getconn()
        except psycopg.OperationalError as exc:  # (PoolTimeout: no connection to be had)
            raise self._lost(exc) from exc
        try:
            with conn.transaction():
                if isolation_level and isolation_level != "READ COMMITTED":
                    level = check_isolation(isolation_level)
                    conn.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
                yield conn
        except errors.RelosError:
            raise
        except Exception as exc:
            if conn.broken or conn.closed or getattr(exc, "sqlstate", None) in _SESSION_ENDED:
                raise self._lost(exc) from exc
            if _cannot_write(exc):
                raise self._refused(exc) from exc
            raise
        finally:
            self.pool.putconn(conn)

    def _lost(self, exc: Exception) -> errors.DatabaseUnreachableError:
        return errors.DatabaseUnreachableError(
            f"lost the connection to PostgreSQL at {redact(self.url)}: {exc}")

    def _refused(self, exc: Exception) -> errors.DatabaseUnreachableError:
        return errors.DatabaseUnreachableError(
            f"PostgreSQL at {redact(self.url)} cannot take writes now "
            f"(SQLSTATE {getattr(exc, 'sqlstate', '?')}: {exc}); free disk space or memory, or "
            f"point relos at the primary: the work waiting on it goes on once it can")

    @staticmethod
    def _rows(conn: Any, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one statement on ``conn``; its rows."""
        rows: list[tuple[Any, ...]] = _statement(conn, sql, args, ALL)
        return rows

    def _execute(self, sql: str, args: Sequence[Any], result: int) -> Any:
        pool = self.pool
        conn = pool.getconn()
        try:
            return _statement(conn, sql, args, result)
        finally:
            pool.putconn(conn)

    def _translate(self, exc: Exception) -> Exception | None:
        if isinstance(exc, psycopg.errors.IntegrityError):
            return errors.StoreError(f"the database refused the write: {exc}")
        if isinstance(exc, psycopg.DataError):  # e.g. a NUL character in a text
            return errors.StoreError(f"PostgreSQL refused a value of the write: {exc}")
        if _cannot_write(exc):
            return self._refused(exc)
        if isinstance(exc, psycopg.errors.ProgramLimitExceeded):  # (an OperationalError)
            # A value too large for the server (an index entry, a notification):
            # the connection is fine, the write is refused.
            return errors.StoreError(f"PostgreSQL refused the write, a value is too large: "
                                     f"{exc}")
        if isinstance(exc, psycopg.OperationalError):
            return self._lost(exc)
        return None

    # --- lifecycle --------------------------------------------------------------------

    def migrate(self) -> list[int]:
        applied: list[int] = []
        known = migrations.latest("postgres")
        with self._errors(), self._conn() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}")
                             .format(pgsql.Identifier(self.schema)))
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.prefix}migrations (version INTEGER "
                    f"PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
                )
            for mig in migrations.load("postgres", self.prefix):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    done = conn.execute(
                        f"SELECT COALESCE(MAX(version), 0) FROM {self.prefix}migrations"
                    ).fetchone()[0]
                    if done > known:
                        raise migrations.too_new(done, known)
                    if mig.version <= done:
                        continue
                    conn.execute(mig.sql)
                    conn.execute(
                        f"INSERT INTO {self.prefix}migrations (version, name, applied_at) "
                        f"VALUES (%s, %s, %s)", (mig.version, mig.name, int(time.time() * 1000)),
                    )
                    applied.append(mig.version)
        if self.schema_version() > known:
            raise migrations.too_new(self.schema_version(), known)
        return applied

    def schema_version(self) -> int:
        with self._errors(), self._conn() as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (f"{self.prefix}migrations",))
            if exists.fetchone()[0] is None:
                return 0
            r = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {self.prefix}migrations")
            return int(r.fetchone()[0])

    def clock_ms(self) -> int:
        with self._errors():
            return int(self._execute(_CLOCK_SQL, (), ONE)[0])

    def start_listener(self, on_change: Callable[[str, str], None],
                       queues: bool = True,
                       waited: Callable[[], frozenset[str]] | None = None) -> None:
        # (NOTIFY tells of messages, events and streams whoever waits)
        if self._listener is not None:
            return
        channels = [c for c in _CHANNELS
                    if queues or _CHANNELS[c] not in ("queues", "queues_full")]
        listening = threading.Event()
        self._listener = threading.Thread(
            target=self._listen, args=(on_change, channels, listening),
            name="relos-pg-listener", daemon=True)
        self._listener.start()
        # Back once it listens, so that nothing sent after the launch goes
        # unheard (a wait begun meanwhile would be found by its poll only);
        # not held up long by a server that lets the pool in but not this.
        listening.wait(LISTEN_WAIT_SECONDS)

    def _listen(self, on_change: Callable[[str, str], None], channels: list[str],
                listening: threading.Event) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, **self._named) as conn:
                    for channel in channels:
                        conn.execute(f"LISTEN {channel}")
                    echoes = self.echoes
                    echoes.reset(listening=QUEUES in channels)
                    listening.set()
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=0.5):
                            if n.channel == QUEUES and echoes.heard(n.pid, n.payload):
                                continue  # (this process's own enqueue: woken already)
                            on_change(_CHANNELS.get(n.channel, n.channel), n.payload)
            except psycopg.Error:
                # The server went away: waiters keep polling meanwhile; reconnect.
                self.echoes.reset(listening=False)
                self._stop.wait(1.0)
        self.echoes.reset(listening=False)

    def announce_full(self, queue_name: str) -> None:
        self._announcer.announce("relos_queues_full", {queue_name})

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self._announcer.close()
        self.batch_pool.close()
        self.pool.close()

    def _enqueue_now(self, rows: Sequence[WorkflowRow], step: StepRow | None = None
                     ) -> list[WorkflowRow | None]:
        """A batch of ``COPY_FROM`` rows or more is streamed in with COPY (the
        server's fastest way in: no statement text to parse, no JSON to
        decode; its statement-level trigger records the history as for an
        INSERT). Should a row be refused (its ID or deduplication ID taken),
        COPY rolls back and the batch is redone with the INSERT that keeps the
        taken rows out and reports them.

        Dequeuers are woken by NOTIFY: from the status trigger, in the
        transaction, while this is the process's only enqueue in flight;
        from the announcer after commit when enqueues run concurrently, so
        that their commits are not serialised (see announcer.py)."""
        with self._enqueuing_lock:
            quiet = self._enqueuing > 0
            self._enqueuing += 1
        try:
            results = self._copy_in(rows, step, quiet) if len(rows) >= COPY_FROM else None
            if results is None:
                results = queue_sql.enqueue_postgres(self, rows, step, quiet)
        finally:
            with self._enqueuing_lock:
                self._enqueuing -= 1
        if quiet:
            self._announcer.announce(QUEUES, announced_queues(rows, results))
        return results

    def _copy_in(self, rows: Sequence[WorkflowRow], step: StepRow | None, quiet: bool
                 ) -> list[WorkflowRow | None] | None:
        """The batch written by COPY, or None if a row was refused (nothing written)."""
        # (the status trigger announces the batch's queues, unless quiet)
        echo = self.echoes.enqueuing(rows, quiet)
        try:
            with self._errors(), echo, self._tx() as conn:
                if quiet:
                    conn.execute(QUIET)
                echo.expect(conn)
                with conn.cursor().copy(self._copy_workflows_sql) as copy:
                    for text in copy_text.lines(rows):
                        copy.write(text)
                if step is not None:
                    self.record_step_in(conn, step)
            return [None] * len(rows)
        except errors.StoreError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                return None
            raise

    @functools.cached_property
    def _copy_workflows_sql(self) -> str:
        return (f"COPY {self.prefix}workflow_status ({', '.join(copy_text.COLUMNS)}) "
                f"FROM STDIN")

    def write_batch(self, steps: list[StepRow], completions: list[Completion]) -> None:
        """One INSERT for all the step records and one UPDATE for all the
        completions, each reading its rows from one JSON parameter: the client
        encodes them in one call, the server does the per-row work."""
        if len(steps) + len(completions) <= 1:
            super().write_batch(steps, completions)  # the prepared one-row statements
            return
        if len(steps) == 1 and len(completions) == 1 \
                and steps[0].workflow_id == completions[0].workflow_id:
            self._complete_with_step(steps[0], completions[0])
            return
        if not steps:  # (workflows that recorded no step since their last write)
            with self._errors(), self._batch_conn() as conn:
                conn.execute(self._complete_many_sql, (_json_rows(completions),))
            return
        with self._errors(), self._conn() as conn, conn.pipeline() as pipe, \
                conn.transaction():
            conn.execute(_BATCH_PLAN)
            if steps:
                cur = conn.execute(self._insert_steps_sql, (_json_rows(steps),))
                pipe.sync()
                if cur.rowcount != len(steps):  # raising rolls the batch back
                    if len(steps) == 1:
                        self._step_refused(steps[0])  # says why
                    raise errors.WorkflowConflictError("a step record of the batch was refused")
            if completions:
                conn.execute(self._complete_many_sql, (_json_rows(completions),))

    def _complete_with_step(self, step: StepRow, done: Completion) -> None:
        """A workflow's last step record and its completion in one statement
        (one round trip, one commit): the completion applies only if the step
        was recorded."""
        args = (*(getattr(step, c) for c in STEP_COLUMNS), step.workflow_id, done.status,
                done.output, done.error, done.now, done.now, done.workflow_id)
        with self._errors():
            if self._execute(self._complete_with_step_sql, args, ONE) is None:
                # Not completed: the step was refused, or the workflow stopped
                # being PENDING meanwhile (cancelled): say which.
                self._step_refused(step)

    @functools.cached_property
    def _complete_with_step_sql(self) -> str:
        names = ", ".join(STEP_COLUMNS)
        marks = ", ".join(["%s"] * len(STEP_COLUMNS))
        p = self.prefix
        return (
            f"WITH s AS (INSERT INTO {p}operation_outputs ({names}) SELECT {marks} "
            f"WHERE EXISTS (SELECT 1 FROM {p}workflow_status WHERE workflow_id = %s "
            f"AND status = 'PENDING') ON CONFLICT (workflow_id, function_id) DO NOTHING "
            f"RETURNING 1) "
            f"UPDATE {p}workflow_status SET status = %s, output = %s, error = %s, "
            f"updated_at = %s, completed_at = %s "
            f"WHERE workflow_id = %s AND status = 'PENDING' AND EXISTS (SELECT 1 FROM s) "
            f"RETURNING (SELECT COUNT(*) FROM s)")

    @functools.cached_property
    def _complete_many_sql(self) -> str:
        return (
            f"UPDATE {self.prefix}workflow_status w SET status = u.status, output = u.output, "
            f"error = u.error, updated_at = u.now, completed_at = u.now "
            f"FROM {_json_source(Completion)} "
            f"WHERE w.workflow_id = u.workflow_id AND {_STILL_PENDING}")

    @functools.cached_property
    def _insert_steps_sql(self) -> str:
        names = ", ".join(STEP_COLUMNS)
        return (
            f"INSERT INTO {self.prefix}operation_outputs ({names}) "
            f"SELECT {names} FROM {_json_source(StepRow)} "
            f"WHERE EXISTS (SELECT 1 FROM {self.prefix}workflow_status w "
            f"WHERE w.workflow_id = u.workflow_id AND {_STILL_PENDING}) "
            f"ON CONFLICT (workflow_id, function_id) DO NOTHING"
        )

    def raw_connection(self) -> Any:
        """A fresh autocommit connection (for tests and the benchmark floor)."""
        return psycopg.connect(self.url, autocommit=True)


