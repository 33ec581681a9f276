"""NOTIFY sent after commit, from one connection per process (PostgreSQL).

A transaction that sends NOTIFY takes a database-wide lock at commit and holds
it until the commit is flushed, so transactions that notify commit one after
another: concurrent enqueuers, each waiting for its own flush, cannot share
one (measured with 8 callers committing single-row INSERTs: 6,500/s without
NOTIFY, 4,200/s with it). relos's own enqueues therefore ask the status
trigger not to notify (``relos.announce = 'after'`` for their transaction) and
hand the queue's name to this process's :class:`Announcer` once committed; its
thread sends the NOTIFYs, coalescing names that arrive while it is busy.

Its NOTIFYs are expected by this process's listener (``echoes.py``), which
drops them when they come back: the enqueuers woke this process's dequeuers
in-process already.

Best effort, like every NOTIFY: a process that dies between its commit and
the announcement leaves the work to the dequeuers' polling, and a connection
failure drops what was pending (and reconnects on the next announcement).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from relos.store.echoes import Echoes

logger = logging.getLogger("relos")

#: The setting (local to one transaction) that tells the status trigger the
#: enqueuer announces its rows itself, after commit (migration 0009).
QUIET = "SELECT set_config('relos.announce', 'after', true)"
#: The channel of enqueue announcements.
QUEUES = "relos_queues"


class Announcer:
    def __init__(self, connect: Any, echoes: Echoes) -> None:
        #: Opens an autocommit psycopg connection.
        self._connect = connect
        self._echoes = echoes
        self._lock = threading.Condition(threading.Lock())
        self._pending: set[tuple[str, str]] = set()
        self._closed = False
        self._thread: threading.Thread | None = None

    def announce(self, channel: str, payloads: set[str]) -> None:
        """NOTIFY ``channel`` once per payload, soon, from the announcer's thread."""
        if not payloads:
            return
        with self._lock:
            if self._closed:
                return
            self._pending.update((channel, p) for p in payloads)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="relos-announcer",
                                                daemon=True)
                self._thread.start()
            self._lock.notify()

    def close(self) -> None:
        """Send what is pending, then stop."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        conn: Any = None
        try:
            while True:
                with self._lock:
                    while not self._pending and not self._closed:
                        self._lock.wait()
                    if not self._pending:
                        return
                    batch, self._pending = self._pending, set()
                try:
                    if conn is None:
                        conn = self._connect()
                    ordered = sorted(batch)
                    with self._echoes.expecting(
                            {p for c, p in ordered if c == QUEUES}) as echo:
                        echo.expect(conn)
                        conn.execute("SELECT pg_notify(c, p) FROM unnest(%s::text[], "
                                     "%s::text[]) AS n(c, p)",
                                     ([c for c, _ in ordered], [p for _, p in ordered]))
                except Exception as exc:  # the dequeuers' polling finds the work
                    logger.debug("cannot announce enqueued work: %s", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
