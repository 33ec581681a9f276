"""A process's own enqueue announcements, heard back (PostgreSQL).

A single enqueue's statement sends the NOTIFY that wakes the dequeuers of
every process, this one's included; and the enqueuing process wakes its own
dequeuers in-process as soon as the enqueue returns. Its runner then hears the
same enqueue twice: the in-process wake-up claims the workflow, and the
NOTIFY, arriving a moment later, sets off a second claim that finds nothing
(measured: a process that enqueues one workflow at a time and runs them made
1.66 claims per workflow, 0.66 of them empty).

The enqueuer therefore tells :class:`Echoes` which NOTIFY to expect before
its statement runs: the server process (backend PID) of its connection and
the queue's name. The listener drops a notification from that PID with that
payload once per expectation. Nothing else is dropped: a NOTIFY sent by any
other connection, or by this connection on another path (a requeue, a
recovery, a resumed workflow), finds no expectation and wakes the runner.

Why the right one is dropped: while the statement runs, its connection is
the enqueuer's alone, so no other NOTIFY can come from that PID meanwhile; and
the server delivers notifications in commit order, so the enqueue's NOTIFY
arrives before any later one from the same connection. An expectation is
withdrawn when its statement inserted nothing (no NOTIFY was sent) or
failed. One whose NOTIFY never arrives (the listener was reconnecting) lapses
after ``LAPSE_SECONDS``; until then it could drop one other notification of
the same connection and queue, and the queue's poll finds that work instead.
"""

from __future__ import annotations

import collections
import threading
import time

#: Seconds after which an expectation no notification answered is dropped.
LAPSE_SECONDS = 2.0
#: Expectations kept at most (a safety bound; each is answered within
#: milliseconds while the listener runs).
MAX_EXPECTED = 10_000

Key = tuple[int, str]


class Echoes:
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
