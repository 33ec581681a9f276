"""When a queue runner wakes up, and which queues its rounds poll.

A runner with nothing to claim waits for a wake-up (an enqueue in its
process, a NOTIFY from another) or its poll interval, whichever comes first.
:class:`IdleWait` shortens that wait to the first of:

* the ``polling_interval_sec`` of a queue it listens to, if shorter;
* the end of the next delay in its queues (DELAYED workflows): told by the
  enqueues of this process, and read from the database (over the index of
  DELAYED rows, migration 15) at most once a poll interval, and at once
  when an enqueue heard from another process found nothing to claim (on
  PostgreSQL, enqueues of DELAYED workflows are announced too, migration 16);
* the moment a rate limit frees up, for each rate-limited queue that could
  not claim all it had room for in the last round (the oldest start its
  period still counts, read from the queue's ledger when the runner goes idle).

:class:`DryQueues` lets a round leave out the queues that came up empty,
until something may have changed that: each round used to poll every
listened queue, one query each, however few of them had work (an executor
with two threads and fifty idle queues besides its busy one ran 35% fewer
workflows a second). Only where other processes' enqueues are heard
(LISTEN/NOTIFY on PostgreSQL; on SQLite the listener watches the file's commit
count and reads which queues new rows wait in), and only for queues without a
global budget
(for one with a concurrency or rate limit, or partitions, an empty claim may
mean a full budget, which finishing workflows elsewhere free without a word).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from relos import errors, queues
from relos.runtime import clock

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime
    from relos.store.base import QueueRow

logger = logging.getLogger("relos")

#: An idle runner waiting for a delay to end or a rate limit to free up
#: wakes up this long after it (a claim compares the time with its own clock
#: reading, taken just after).
SLACK_SECONDS = 0.002
#: An ended delay makes the next round scan its queues whole (a busy deep
#: queue's claims otherwise start past the delayed workflow) this often at
#: most; delays ending more often wait for the regular whole scan.
DELAY_SCAN_SECONDS = 0.1


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
        #: Whether a delay waited for ended before the current round (set by
        #: :meth:`start_round`): its workflow may be in a queue that came up empty.
        self.delay_ended = False

    def tell_delay_end(self, at: int) -> None:
        """A workflow enqueued here waits until ``at`` (epoch ms)."""
        with self._told_lock:
            told = self._told
            if told is None or at < told or told <= clock.now_ms():
                self._told = at

    def start_round(self) -> bool:
        """Before a round: whether it must scan its queues whole, because a
        delay waited for has ended (the workflow may lie behind where claims
        start scanning; at most every DELAY_SCAN_SECONDS). The next idle wait
        then reads the next end again."""
        self._held_back = {}
        now = clock.now_ms()
        ended = self._read is not None and self._read <= now
        if ended:
            self._read = None
        with self._told_lock:
            if self._told is not None and self._told <= now:
                self._told, ended = None, True
        self.delay_ended = ended
        if not ended:
            return False
        self._read_at = float("-inf")
        if time.monotonic() - self._scan_forced_at < DELAY_SCAN_SECONDS:
            return False
        self._scan_forced_at = time.monotonic()
        return True

    def read_delay_ends(self, names: list[str]) -> None:
        """Read the next delay end of ``names`` now (an enqueue was heard and
        found nothing to claim: it may have been a delayed workflow's). When
        it comes, the round that follows polls every queue (see
        :meth:`start_round` and ``DryQueues.forget``)."""
        try:
            self._read = self.rt.store.next_delay_end(names, clock.now_ms())
            self._read_at = time.monotonic()
        except errors.RelosError as exc:  # (the next round will say what is wrong)
            logger.debug("cannot read when the next delay ends: %s", exc)

    def held_back(self, name: str, period_ms: int) -> None:
        """The rate-limited queue claimed less than it had room for this round
        (its limit may be what held it back)."""
        self._held_back[name] = period_ms

    def seconds(self, names: list[str]) -> float:
        """How long the runner, listening to ``names``, waits when idle."""
        rt = self.rt
        wait = min((poll_interval(rt, name) for name in names), default=rt.poll_interval)
        now = clock.now_ms()
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


def poll_interval(rt: Runtime, name: str) -> float:
    """How often the runner looks for the queue's work unasked: the queue's
    ``polling_interval_sec`` where it is shorter than the runtime's."""
    queue = queues.get(name)
    if queue is not None and queue.polling_interval_sec is not None:
        return min(rt.poll_interval, queue.polling_interval_sec)
    return rt.poll_interval


class DryQueues:
    """The queues a runner's round may leave out (see the module
    documentation). A queue is left out while all of these hold: its last
    claim, with room to claim, found nothing; no enqueue to it was heard
    since (the notification's key is the queue); it has no global budget;
    and its poll interval has not passed since that claim (the fallback for
    what no notification tells: a delay ending in another process's
    workflow, a claim another executor rolled back, a notification lost
    while the listener reconnected). Used by the runner's thread only."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        #: Per dry queue, when its last (empty) claim ran (monotonic).
        self._since: dict[str, float] = {}
        #: Per listened queue, set when an enqueue to it is heard.
        self._heard: dict[str, threading.Event] = {}
        #: Whether the claim under way was told of by an enqueue heard ...
        self._told = False
        #: ... and whether, since :meth:`take_heard_in_vain`, such a claim found nothing.
        self._in_vain = False

    @contextlib.contextmanager
    def listening(self, names: list[str]) -> Iterator[None]:
        """Hear each of ``names``' enqueues apart while the block runs (from
        before the first round reads the database: none is missed)."""
        self._since.clear()
        rt = self.rt
        if not rt.config.use_listen_notify:
            # (no listener runs: other processes' enqueues are not heard, so
            # every queue is polled each round; every store's listener tells
            # of them, queue by queue: see SystemStore.start_listener)
            yield
            return
        with contextlib.ExitStack() as stack:
            self._heard = {n: stack.enter_context(rt.notifier.subscribe([("queues", n)]))
                           for n in names}
            try:
                yield
            finally:
                self._heard = {}

    def heard_now(self, name: str) -> bool:
        """Whether an enqueue to the queue was heard since its last claim here."""
        heard = self._heard.get(name)
        return heard is not None and heard.is_set()

    def skip(self, queue: QueueRow) -> bool:
        """Whether this round may leave the queue out."""
        since = self._since.get(queue.name)
        if since is None or not queue.unbudgeted:
            return False
        heard = self._heard.get(queue.name)
        if heard is None or heard.is_set():
            return False
        return time.monotonic() - since < poll_interval(self.rt, queue.name)

    def claiming(self, name: str) -> None:
        """Before a claim from the queue: what was heard so far it will see
        (and until it says otherwise, the queue is not dry: a claim that
        fails leaves it polled)."""
        self._since.pop(name, None)
        heard = self._heard.get(name)
        self._told = False
        if heard is not None and heard.is_set():
            heard.clear()
            self._told = True

    def claimed(self, name: str, got: int, room: int) -> None:
        """After a claim of up to ``room`` workflows that got ``got``. One that
        got fewer than it had room for has taken every workflow it could see:
        the queue is dry too (else the next round claims again at once and,
        in a trickle of single enqueues, every task costs a claim that finds
        nothing; measured by ``benchmarks/bench_trickle.py``). Rows skipped
        because another executor's claim held them locked are that claim's;
        should it roll back, the poll interval finds them, as it finds the
        work of any claim rolled back."""
        if got < room and name in self._heard:
            self._since[name] = time.monotonic()
            if not got:
                self._in_vain |= self._told

    def take_heard_in_vain(self) -> bool:
        """Whether an enqueue was heard whose queue then had nothing to claim
        (since the last call): it may have been a delayed workflow's, of
        another process, which told nothing else."""
        in_vain, self._in_vain = self._in_vain, False
        return in_vain

    def forget(self) -> None:
        """Poll every queue in the next round (what they hold may have
        changed unannounced: the latest application version changed here, or
        a delay ended)."""
        self._since.clear()
