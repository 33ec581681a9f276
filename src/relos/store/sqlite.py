"""The embedded SQLite backend (the default).

One database file in WAL mode, shared safely by every thread and process that
opens it. Each thread keeps its own connection (SQLite connections are cheap and
not meant to be shared); single statements run in autocommit mode and
multi-statement transactions take the write lock up front (``BEGIN IMMEDIATE``)
so two writers never deadlock upgrading a read lock.

SQLite cannot announce another process's commit, so waiters poll. It does
count, for each connection, the commits other connections made to the file
(``PRAGMA data_version``: read from the shared WAL index, no disk I/O, no
lock). A process's listener reads that count (every ``CHANGE_WATCH_SECONDS``
while work keeps coming or something waits, else every
``CHANGE_WATCH_IDLE_SECONDS``); when it moved, it reads what the rows written
since (rowid ranges) concern, and tells as PostgreSQL's NOTIFY does: for a
process that dequeues, the queues newly inserted workflows still wait in
(another process's enqueue starts within tens of milliseconds instead of at
the next poll); for the waits under way in the process (``recv``,
``get_event``, ``read_stream``, a result), the workflows that got a message,
an event or a stream entry, or finished. Not told: workflows put back in a
queue (recovery, resume), which the poll finds, and what was written before
a wait began (the waiter reads that itself).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from relos import errors
from relos.store import migrations
from relos.store.base import TERMINAL_STATUSES, check_isolation
from relos.store.sql import ONE, ROWCOUNT, SQLStore

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
#: How often a dequeuing process reads the file's commit count (see above):
#: every CHANGE_WATCH_SECONDS for CHANGE_WATCH_FAST_FOR seconds after it last
#: found new work, else every CHANGE_WATCH_IDLE_SECONDS (a wake-up of a
#: Python thread costs tens of microseconds: at 50 a second an idle process
#: spent 1% of a core on them).
CHANGE_WATCH_SECONDS = 0.02
CHANGE_WATCH_FAST_FOR = 1.0
CHANGE_WATCH_IDLE_SECONDS = 0.1
#: Read when the commit count moved: the highest rowid of workflow_status,
#: then the queues of the rows inserted since the last reading (rowids in the
#: range given) that still wait in them.
_HIGHEST = "SELECT max(rowid) FROM workflow_status"
_WAITING = ("SELECT DISTINCT queue_name FROM workflow_status WHERE rowid > ? AND rowid <= ? "
            "AND status IN ('ENQUEUED', 'DELAYED') AND queue_name IS NOT NULL")


def _wait_source(table: str, column: str, condition: str = "") -> tuple[str, str]:
    return (f"SELECT max(rowid) FROM {table}",
            f"SELECT DISTINCT {column} FROM {table} WHERE rowid > ? AND rowid <= ?{condition}")


#: For each channel waiters wait on: the highest rowid of the table whose new
#: rows concern them, and the workflows of its rows in a rowid range (a
#: message's destination; the workflow of an event or stream entry; a
#: workflow that finished).
_WAIT_SOURCES = {
    "notifications": _wait_source("notifications", "destination_id"),
    "events": _wait_source("workflow_events_history", "workflow_id"),
    "streams": _wait_source("streams", "workflow_id"),
    "status": _wait_source("workflow_status_history", "workflow_id", " AND status IN ("
                           + ", ".join(f"'{s}'" for s in sorted(TERMINAL_STATUSES)) + ")"),
}


#: SQLite's result codes for a lock held by another connection (SQLITE_BUSY,
#: SQLITE_LOCKED; extended codes keep them in their low byte).
_BUSY = frozenset({5, 6})
#: Result codes of a file or host that cannot take the write now: SQLITE_NOMEM,
#: SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL (the disk, or the file's
#: max_page_count), SQLITE_CANTOPEN. Not the write's fault either: the
#: workflow that made it runs again later rather than recording a failure
#: (which the same file would refuse too).
_CANNOT_WRITE = frozenset({7, 8, 10, 13, 14})
#: Python 3.10's sqlite3 errors carry no result code (``sqlite_errorcode``
#: came in 3.11): the codes above, from SQLite's message for each.
_CODE_OF_MESSAGE = {"database is locked": 5, "database table is locked": 6,
                    "out of memory": 7, "attempt to write a readonly database": 8,
                    "disk I/O error": 10, "database or disk is full": 13,
                    "unable to open database file": 14}


def _result_code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code of ``exc`` (0 if unknown)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    return _CODE_OF_MESSAGE.get(str(exc), 0)


class SQLiteStore(SQLStore):
    backend = "sqlite"
    paramstyle = "named"
    pushes_notifications = False

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout_ms: int = 30000):
        sync = synchronous.upper()
        if sync not in SYNCHRONOUS_MODES:
            raise errors.ConfigError(
                f"sqlite_synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"not {synchronous!r}"
            )
        self.path = path
        self.synchronous = sync
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        super().__init__(prefix="")
        self._connection()  # fail now, with a clear error, if the file cannot be opened

    # --- connections ------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise errors.NotLaunchedError("the SQLite store is closed")
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise errors.DatabaseUnreachableError(
                f"cannot open SQLite database {self.path!r}: directory {directory!r} does not "
                f"exist; create it or set system_database_url to sqlite:///<existing dir>/file"
            )
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            # Statement journals in memory: every write that fires the status
            # history trigger keeps one, and in a temporary file it cost a
            # batch enqueue 47 instead of 30 µs per workflow (measured).
            conn.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.DatabaseError as exc:
            raise errors.DatabaseUnreachableError(
                f"cannot open SQLite database {self.path!r}: {exc}; check the path and its "
                f"permissions, and that the file is a SQLite database"
            ) from exc
        self._local.conn = conn
        with self._lock:
            self._all_conns.append(conn)
        return conn

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        yield self._connection()

    def _execute(self, sql: str, args: Sequence[Any], result: int) -> Any:
        # The thread's own connection: autocommit, or this thread's open
        # transaction when called inside _tx (as _conn would). sqlite3 keeps
        # the compiled statement in its per-connection cache.
        conn = getattr(self._local, "conn", None) or self._connection()
        cur = conn.execute(sql, args)
        if result == ROWCOUNT:
            return cur.rowcount
        return cur.fetchone() if result == ONE else cur.fetchall()

    @contextmanager
    def _tx(self, isolation_level: str | None = None) -> Iterator[sqlite3.Connection]:
        # SQLite transactions are always serializable, whatever valid level was asked.
        check_isolation(isolation_level)
        conn = self._connection()
        if conn.in_transaction:  # nested use on this thread: join the open transaction
            yield conn
            return
        self._begin_immediate(conn)
        try:
            yield conn
        except BaseException:
            # (SQLite may have rolled it back already: after SQLITE_FULL,
            # SQLITE_IOERR or SQLITE_NOMEM; a ROLLBACK would hide that error)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # (a failed COMMIT leaves it open)
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def transaction(self, isolation_level: str | None) -> Iterator[sqlite3.Connection]:
        """As SQLStore's; the write lock held by another connection past the
        busy timeout (at BEGIN, or anywhere in it) is
        ``DatabaseUnreachableError``: not the outcome of the code that ran in
        it, which is rolled back and runs again later."""
        try:
            with self._tx(isolation_level) as conn:
                yield conn
        except sqlite3.OperationalError as exc:
            translated = self._translate(exc)
            if isinstance(translated, errors.DatabaseUnreachableError):
                raise translated from exc
            raise

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        # busy_timeout covers most lock waits, but BEGIN IMMEDIATE can still
        # report "locked" under heavy contention; keep trying until the timeout.
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _translate(self, exc: Exception) -> Exception | None:
        if isinstance(exc, sqlite3.IntegrityError):
            return errors.StoreError(f"the database refused the write: {exc}")
        if isinstance(exc, sqlite3.OperationalError):
            code = _result_code(exc)
            if code in _BUSY:
                # Not the write's fault: the lock was held past the busy
                # timeout. Like a lost connection, it may go through later.
                return errors.DatabaseUnreachableError(
                    f"SQLite file {self.path!r} stayed locked by another connection for "
                    f"{self.busy_timeout_ms / 1000:g} s (sqlite_busy_timeout_seconds): {exc}")
            if code in _CANNOT_WRITE:
                return errors.DatabaseUnreachableError(
                    f"SQLite file {self.path!r} cannot take writes now "
                    f"({getattr(exc, 'sqlite_errorname', 'error')}: {exc}); free disk space or "
                    f"fix the file's permissions: the work waiting on it goes on once it can")
            return errors.StoreError(f"SQLite error on {self.path!r}: {exc}")
        return None

    # --- lifecycle --------------------------------------------------------------------

    def migrate(self) -> list[int]:
        conn = self._connection()
        applied: list[int] = []
        with self._errors():
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            for mig in migrations.load("sqlite", ""):
                with self._tx() as tx:
                    done = tx.execute("SELECT MAX(version) FROM migrations").fetchone()[0] or 0
                    if done > migrations.latest("sqlite"):
                        raise migrations.too_new(done, migrations.latest("sqlite"))
                    if mig.version <= done:
                        continue
                    # executescript would commit our transaction: run statement by statement.
                    for stmt in _split_statements(mig.sql):
                        tx.execute(stmt)
                    tx.execute(
                        "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (mig.version, mig.name, int(time.time() * 1000)),
                    )
                    applied.append(mig.version)
            self._check_version()
        return applied

    def _check_version(self) -> None:
        version = self.schema_version()
        if version > migrations.latest("sqlite"):
            raise migrations.too_new(version, migrations.latest("sqlite"))

    def schema_version(self) -> int:
        with self._errors():
            conn = self._connection()
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='migrations'"
            ).fetchone()
            if not exists:
                return 0
            return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM migrations")
                       .fetchone()[0])

    def start_listener(self, on_change: Callable[[str, str], None],
                       queues: bool = True,
                       waited: Callable[[], frozenset[str]] | None = None) -> None:
        """With ``queues``: ``on_change("queues", name)`` soon after another
        connection inserted workflows that wait in the queue ``name``; for each
        channel ``waited()`` names, ``on_change(channel, workflow_id)`` soon
        after another connection wrote a message to the workflow, an event or
        a stream entry of it, or finished it (see the module documentation)."""
        if (not queues and waited is None) or self._listener is not None:
            return
        # What is there now is the dequeuers' and waiters' to find; what
        # comes after is told.
        with self._errors():
            conn = self._connection()
            top = conn.execute(_HIGHEST).fetchone()[0] or 0 if queues else None
            seen = {channel: conn.execute(highest).fetchone()[0] or 0
                    for channel, (highest, _) in _WAIT_SOURCES.items()} if waited else {}
        self._listener = threading.Thread(target=self._watch_changes,
                                          args=(on_change, top, seen, waited or frozenset),
                                          name="relos-sqlite-watch", daemon=True)
        self._listener.start()

    def _watch_changes(self, on_change: Callable[[str, str], None], top: int | None,
                       seen: dict[str, int], waited: Callable[[], frozenset[str]]) -> None:
        # top: the highest rowid of workflow_status read (None: enqueues are
        # not told of); seen: per channel, the highest rowid of its table read,
        # kept whether or not anything waits on it, so that a wait that begins
        # (having read the database) between two readings is told of all that
        # came after its own reading.
        last: int | None = None  # the commit count last read
        found_at = float("-inf")  # when new work was last found (monotonic)
        pause = CHANGE_WATCH_IDLE_SECONDS
        while not self._stop.wait(pause):
            try:
                conn = self._connection()
                channels = waited() & seen.keys()
                fast = bool(channels) or time.monotonic() - found_at < CHANGE_WATCH_FAST_FOR
                pause = CHANGE_WATCH_SECONDS if fast else CHANGE_WATCH_IDLE_SECONDS
                count = conn.execute("PRAGMA data_version").fetchone()[0]
                if count == last:
                    continue
                told: list[tuple[str, str]] = []
                if top is not None:
                    highest = conn.execute(_HIGHEST).fetchone()[0] or 0
                    # (rows inserted after that reading are looked at next
                    # time: their commit moves the count again)
                    told += [("queues", r[0]) for r in conn.execute(_WAITING, (top, highest))]
                    if told:
                        found_at = time.monotonic()
                    top = highest
                for channel, since in seen.items():
                    highest_sql, rows_sql = _WAIT_SOURCES[channel]
                    highest = conn.execute(highest_sql).fetchone()[0] or 0
                    if highest > since and channel in channels:
                        told += [(channel, r[0]) for r in conn.execute(rows_sql, (since, highest))]
                    seen[channel] = highest
            except (sqlite3.Error, errors.RelosError):
                # (closed meanwhile, or the file is unreadable now: the
                # dequeuers' and waiters' polling goes on regardless)
                last = None
                continue
            for channel, key in told:
                on_change(channel, key)
            last = count

    def close(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=5)
            self._listener = None
        self._closed = True
        with self._lock:
            conns, self._all_conns = self._all_conns, []
        for conn in conns:
            with suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    def raw_connection(self) -> Any:
        """This thread's connection (for tests and the benchmark floor)."""
        return self._connection()



def _split_statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies (BEGIN ... END;) whole."""
    out: list[str] = []
    buf: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("--")):
            continue
        buf.append(line)
        candidate = "\n".join(buf)
        if stripped.endswith(";") and sqlite3.complete_statement(candidate):
            out.append(candidate)
            buf = []
    if buf and "\n".join(buf).strip():
        out.append("\n".join(buf))
    return out
