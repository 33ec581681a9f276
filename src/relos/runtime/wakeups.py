"""When an idle queue runner wakes up, besides a notification.

A runner with nothing to claim waits for a wake-up (an enqueue in its
process, a NOTIFY from another) or its poll interval, whichever comes first.
:class:`IdleWait` shortens that wait to the first of:

* the ``polling_interval_sec`` of a queue it listens to, if shorter;
* the end of the next delay in its queues (DELAYED workflows): told by the
  enqueues of this process, and read from the database (over the index of
  DELAYED rows, migration 15) at most once a poll interval;
* the moment a rate limit frees up, for each rate-limited queue that could
  not claim all it had room for in the last round (the oldest start its
  period still counts, read from the queue's ledger when the runner goes idle).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from relos import errors, queues

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

logger = logging.getLogger("relos")

#: An idle runner waiting for a delay to end or a rate limit to free up
#: wakes up this long after it (a claim compares the time with its own clock
#: reading, taken just after).
SLACK_SECONDS = 0.002
#: An ended delay makes the next round scan its queues whole (a busy deep
#: queue's claims otherwise start past the delayed workflow) this often at
#: most; delays ending more often wait for the regular whole scan.
DELAY_SCAN_SECONDS = 0.1


def _now() -> int:
    return int(time.time() * 1000)


class IdleWait:
    """The idle wait of one queue runner (see the module documentation).
    Used by the runner's thread, except :meth:`tell_delay_end`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        #: The next delay end as last read from the database (epoch ms), and
        #: when it was read (monotonic).
        self._read: int | None = None
        self._read_at = float("-inf")
        #: The earliest delay end an enqueue here told of, kept apart under a
        #: lock so that a read begun before that enqueue committed cannot erase it.
        self._told: int | None = None
        self._told_lock = threading.Lock()
        #: When an ended delay last forced whole scans (monotonic).
        self._scan_forced_at = float("-inf")
        #: The rate-limited queues held back in the current round, with their periods (ms).
        self._held_back: dict[str, int] = {}

    def tell_delay_end(self, at: int) -> None:
        """A workflow enqueued here waits until ``at`` (epoch ms)."""
        with self._told_lock:
            told = self._told
            if told is None or at < told or told <= _now():
                self._told = at

    def start_round(self) -> bool:
        """Before a round: whether it must scan its queues whole, because a
        delay waited for has ended (the workflow may lie behind where claims
        start scanning; at most every DELAY_SCAN_SECONDS). The next idle wait
        then reads the next end again."""
        self._held_back = {}
        now = _now()
        ended = self._read is not None and self._read <= now
        if ended:
            self._read = None
        with self._told_lock:
            if self._told is not None and self._told <= now:
                self._told, ended = None, True
        if not ended:
            return False
        self._read_at = float("-inf")
        if time.monotonic() - self._scan_forced_at < DELAY_SCAN_SECONDS:
            return False
        self._scan_forced_at = time.monotonic()
        return True

    def held_back(self, name: str, period_ms: int) -> None:
        """The rate-limited queue claimed less than it had room for this round
        (its limit may be what held it back)."""
        self._held_back[name] = period_ms

    def seconds(self, names: list[str]) -> float:
        """How long the runner, listening to ``names``, waits when idle."""
        rt = self.rt
        wait = rt.poll_interval
        for name in names:
            queue = queues.get(name)
            if queue is not None and queue.polling_interval_sec is not None:
                wait = min(wait, queue.polling_interval_sec)
        now = _now()
        ends = [self._told]
        try:
            if time.monotonic() - self._read_at >= rt.poll_interval:
                self._read_at = time.monotonic()
                self._read = rt.store.next_delay_end(names, now)
            ends.append(self._read)
            ends += [rt.store.next_rate_slot(name, period, now)
                     for name, period in self._held_back.items()]
        except errors.RelosError as exc:  # (the next round will say what is wrong)
            logger.debug("cannot read when a delay ends or a rate limit frees up: %s", exc)
        for end in ends:
            if end is not None and end > now:
                wait = min(wait, (end - now) / 1000 + SLACK_SECONDS)
        return wait
