"""A process's own enqueue announcements, heard back (PostgreSQL).

An enqueue's NOTIFY (sent by its statement, by the status trigger of a batch,
or by the process's announcer after commit) wakes the dequeuers of every
process, this one's included; and the enqueuing process wakes its own
dequeuers in-process as soon as the enqueue returns. Its runner then heard
the same enqueue twice: the in-process wake-up claimed the workflow, and the
NOTIFY, arriving a moment later, set off a second claim that found nothing
(measured: a process that enqueues one workflow at a time and runs them made
1.65 claims per workflow, 0.65 of them empty).

The enqueuer therefore tells :class:`Echoes` which NOTIFYs to expect before
they can be sent: the server process (backend PID) of the connection that
sends them and the queues' names. The listener drops a notification from that
PID with that payload once per expectation. Nothing else is dropped: a NOTIFY
sent by any other connection, or by the same connection on another path (a
requeue, a recovery, a resumed workflow), finds no expectation and wakes the
runner. Every caller of the store's ``enqueue`` wakes its own process's
dequeuers itself (``runtime/enqueueing.py``), which is what makes dropping
safe.

Why the right one is dropped: while the statement runs, its connection is
the enqueuer's alone, so no other NOTIFY can come from that PID meanwhile; and
the server delivers notifications in commit order, so the enqueue's NOTIFY
arrives before any later one from the same connection. An expectation is
withdrawn for each queue the statement announced nothing to (its rows were
all kept out) and for all when it failed. One whose NOTIFY never arrives (the
listener was reconnecting) lapses after ``LAPSE_SECONDS``; until then it
could drop one other notification of the same connection and queue, and the
queue's poll finds that work instead.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from relos.store.base import QUEUED_STATUSES, RowBatch, WorkflowRow

#: Seconds after which an expectation no notification answered is dropped.
LAPSE_SECONDS = 2.0
#: Expectations kept at most (a safety bound; each is answered within
#: milliseconds while the listener runs).
MAX_EXPECTED = 10_000

Key = tuple[int, str]


class Echoes:
    """The expected NOTIFYs of one store (one per process and database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expected: dict[Key, collections.deque[float]] = {}
        self._count = 0
        #: Whether the listener hears the queues' channel now (expectations
        #: made while it does not could never be answered).
        self.listening = False

    def expect(self, pid: int, payload: str) -> bool:
        """Expect one NOTIFY of ``payload`` from backend ``pid``; False when
        the listener is not listening (nothing is expected then)."""
        if not self.listening:
            return False
        now = time.monotonic()
        with self._lock:
            if self._count >= MAX_EXPECTED:
                self._expected.clear()
                self._count = 0
            self._expected.setdefault((pid, payload), collections.deque()).append(now)
            self._count += 1
        return True

    def withdraw(self, pid: int, payload: str) -> None:
        """Take back the last expectation of ``expect(pid, payload)``: its
        statement sent no NOTIFY."""
        with self._lock:
            times = self._expected.get((pid, payload))
            if times:
                times.pop()
                self._count -= 1
                if not times:
                    del self._expected[(pid, payload)]

    def heard(self, pid: int, payload: str) -> bool:
        """A notification arrived: True if it was expected (and is now
        answered), False if it must wake the dequeuers."""
        if not self._count:
            return False
        with self._lock:
            times = self._expected.get((pid, payload))
            if not times:
                return False
            lapsed = time.monotonic() - LAPSE_SECONDS
            while times and times[0] < lapsed:
                times.popleft()
                self._count -= 1
            answered = bool(times)
            if answered:
                times.popleft()
                self._count -= 1
            if not times:
                del self._expected[(pid, payload)]
            return answered

    def reset(self, listening: bool) -> None:
        """The listener (re)started or stopped listening: nothing sent before
        can still be heard."""
        with self._lock:
            self._expected.clear()
            self._count = 0
            self.listening = listening

    def expecting(self, queues: set[str]) -> Expecting:
        """A block around one enqueue that NOTIFYs ``queues`` (those its rows
        go to: an empty set when it sends no NOTIFY itself)."""
        return Expecting(self, queues)

    def enqueuing(self, rows: Sequence[WorkflowRow], quiet: bool) -> Expecting:
        """A block around one enqueue statement of ``rows`` (it, or the status
        trigger, announces their queues unless ``quiet``); nothing is computed
        while the listener does not hear the queues' channel."""
        if quiet or not self.listening:
            return Expecting(self, set())
        return Expecting(self, announced_queues(rows, [None] * len(rows)))


class Expecting:
    """Around one enqueue: :meth:`expect` before its statement runs, then
    :meth:`sent` with the queues it did announce, which withdraws the
    expectations of the others; leaving the block by an error withdraws them
    all (commit included: the block holds the transaction)."""

    __slots__ = ("echoes", "queues", "pid", "expected")

    def __init__(self, echoes: Echoes, queues: set[str]) -> None:
        self.echoes, self.queues = echoes, queues
        self.pid = 0
        self.expected: list[str] = []

    def expect(self, conn: Any) -> None:
        """The statement is about to run on ``conn`` (a psycopg connection)."""
        if self.queues:
            self.pid = conn.info.backend_pid
            self.expected = [q for q in self.queues if self.echoes.expect(self.pid, q)]

    def sent(self, announced: Iterable[str]) -> None:
        """The queues the statement announced: the others' expectations go."""
        kept = set(announced)
        for queue in self.expected:
            if queue not in kept:
                self.echoes.withdraw(self.pid, queue)
        self.expected = [q for q in self.expected if q in kept]

    def inserted(self, rows: Sequence[WorkflowRow], results: list[WorkflowRow | None]
                 ) -> None:
        """The enqueue's outcome (None for each row inserted): :meth:`sent`
        with the queues it announced."""
        if self.expected:
            self.sent(announced_queues(rows, results))

    def __enter__(self) -> Expecting:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None:
            self.sent(())


def announced_queues(rows: Sequence[WorkflowRow], results: list[WorkflowRow | None]
                     ) -> set[str]:
    """The queues an enqueue made workflows ENQUEUED (or DELAYED) in
    (``results``: None for each row inserted, else the row that kept it out)."""
    if isinstance(rows, RowBatch):  # (one queue and status for all: no row made)
        kept = rows.shared.status in QUEUED_STATUSES and results.count(None) > 0
        return {rows.shared.queue_name} if kept and rows.shared.queue_name else set()
    return {r.queue_name for r, kept_out in zip(rows, results, strict=True)
            if kept_out is None and r.status in QUEUED_STATUSES and r.queue_name is not None}
