"""The per-process dequeue loop (enqueueing is ``enqueueing.py``).

The :class:`QueueRunner` thread of each executor claims work from the queues
it listens to, fairly (round robin: each round starts after the queue served
first in the previous round), as many workflows per transaction as this
process has room for under the queue's ``worker_concurrency`` and its free
workflow threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from relos import errors, queues
from relos.runtime import clock, registry, wakeups, workflow
from relos.runtime.failures import FailureLog
from relos.runtime.registry import WorkflowInfo
from relos.runtime.unanswered import UnansweredClaims
from relos.store.base import (
    DEQUEUE_ORDER,
    QueueRow,
    WorkflowRow,
)

if TYPE_CHECKING:
    from relos.runtime.runtime import Runtime

logger = logging.getLogger("relos")

#: How much work a process claims beyond its free threads, from a queue
#: without limits: what it finishes in this many seconds, at most CLAIM_AHEAD_MAX.
CLAIM_AHEAD_SECONDS = 0.25
CLAIM_AHEAD_MAX = 1000
#: A claim from a queue without limits, partitions or priorities scans from
#: the creation time of the last workflow it claimed, less this slack (for an
#: enqueue that took its time to commit, or a clock a little behind) ...
SCAN_SLACK_MS = 1000
#: ... and a claim scans the whole queue at least this often, for workflows
#: that became eligible behind that point (a delay that ran out, a workflow
#: put back by recovery, a clock further behind).
FULL_SCAN_SECONDS = 1.0
#: A claim of this many workflows or more from a queue without a global
#: budget is split in two claims run at once (see ``QueueRunner._claim``).
SPLIT_CLAIM_FROM = 128
#: An idle runner whose last claim found nothing, in a queue another live
#: executor serves, waits this long after it before claiming again when woken,
#: twice as long after each further such claim, up to the second figure (see
#: ``QueueRunner._back_off``).
EMPTY_CLAIM_BACKOFF_SECONDS = 0.02
EMPTY_CLAIM_BACKOFF_MAX_SECONDS = 0.16
#: Claimed workflows are run by this many threads at first, each taking the
#: next one as it finishes one (see ``QueueRunner._feed``) ...
MIN_FEEDERS = 4
#: ... and by as many again each time claimed workflows waited this long
#: with none taken: the threads running them are blocked (waiting on I/O, a
#: lock, a sleep), and more threads keep the process busy. Tiny workflows
#: are done by a few threads taking turns, not by dozens contending for the
#: interpreter's lock.
FEED_STALL_SECONDS = 0.01
#: Claimed workflows waiting while no thread is free: look again this often at most.
FEED_IDLE_SECONDS = 0.1


class _Ready:
    """Claimed workflows waiting for a thread, per queue, taken from the
    queues in turn: while several queues have workflows waiting, they start
    alternately, whatever the order and size of their claims."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[WorkflowRow]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def waiting(self, name: str) -> int:
        """How many of the queue's workflows wait."""
        rows = self._queues.get(name)
        return len(rows) if rows else 0

    def add(self, name: str, rows: list[WorkflowRow]) -> None:
        self._queues.setdefault(name, deque()).extend(rows)
        self._count += len(rows)

    def popleft(self) -> tuple[str, WorkflowRow]:
        """The next workflow of the queue whose turn it is (the queue then
        goes to the back of the turn order)."""
        name = next(iter(self._queues))
        rows = self._queues.pop(name)
        row = rows.popleft()
        if rows:
            self._queues[name] = rows
        self._count -= 1
        return name, row

    def take_all(self) -> list[tuple[str, WorkflowRow]]:
        taken = [(name, row) for name, rows in self._queues.items() for row in rows]
        self._queues, self._count = {}, 0
        return taken


class QueueRunner:
    """Dequeues from the listened queues and runs what it claims."""

    def __init__(self, rt: Runtime, names: list[str] | None) -> None:
        self.rt = rt
        self.names = names
        self._running: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._turn = 0
        #: The queues served in the last round that served any.
        self._busy: set[str] = set()
        #: The queues whose last claim (with room to claim) found nothing.
        self._dry: set[str] = set()
        #: When the last claim that found nothing ran (monotonic; None after
        #: one that found work).
        self._empty_claim_at: float | None = None
        #: How long after it the next claim waits (see ``_back_off``).
        self._empty_backoff = 0.0
        #: Set when another executor serving one of the listened queues says
        #: it is full (``SystemStore.announce_full``): claim now, in every
        #: listened queue; and when this one last said so, per queue (monotonic).
        self._others_full = threading.Event()
        self._told_full: dict[str, float] = {}
        #: Claims made, and those of them that found nothing (for benchmarks
        #: and diagnosis: what waking up cost).
        self.claims = 0
        self.empty_claims = 0
        self._settings: dict[str, QueueRow] = {}
        self._settings_at = 0.0
        self._latest = True
        self._latest_at = -1.0e9
        #: Claimed (PENDING, owned here) and waiting for a free thread: from a
        #: queue without limits the runner claims up to one pool's worth ahead,
        #: so a finishing workflow's thread takes the next one at once and the
        #: claims stay large (see ``_poll``).
        self._ready = _Ready()
        #: Taken from ``_ready`` and not yet tracked by the runtime (so not yet
        #: counted in its free slots): the workflow threads and the runner
        #: take from ``_ready`` concurrently, under ``_ready_lock``.
        self._starting = 0
        self._ready_lock = threading.Lock()
        #: Notified when workflows are added to ``_ready`` (see ``_watch``).
        self._readied = threading.Condition(self._ready_lock)
        #: Workflow threads in ``_feed``, and how many workflows threads took
        #: from ``_ready`` so far (its change tells that they are not stuck).
        self._feeders = 0
        self._taken = 0
        #: The runtime's stop (given to run): once set, no thread takes a
        #: claimed workflow, not even one freed by the stop's cancellations
        #: before the runner gives the rest back.
        self._stop_event = threading.Event()
        #: Workflows finished here, and the rate (per second) they finish at,
        #: re-measured every tenth of a second: the claim-ahead room is what
        #: this process finishes in CLAIM_AHEAD_SECONDS, so slow workflows are
        #: not hoarded away from other executors while tiny ones never wait
        #: for a claim's round trip.
        self._finished_count = 0
        self._rate = 0.0
        self._rate_mark = (time.monotonic(), 0)
        #: Per queue: where its next claim may start scanning (epoch ms of
        #: creation) and when it last scanned the whole queue (monotonic).
        #: On PostgreSQL the entries of claimed workflows stay in the dequeue
        #: index until a vacuum, and a claim from the start of the queue walks
        #: past every one of them: a million of them by the end of a million
        #: tasks, unless the server's autovacuum keeps up.
        self._scan_from: dict[str, tuple[int, float]] = {}
        #: Runs the second half of split claims (see ``_claim``).
        self._helper: ThreadPoolExecutor | None = None
        #: Claims whose commit went unanswered: taken in at each round.
        self._unanswered = UnansweredClaims(rt)
        #: How long to wait when idle (delays, rate limits, queues' poll intervals).
        self.idle_wait = wakeups.IdleWait(rt)
        #: Which queues a round may leave out (came up empty, nothing heard since).
        self.dry = wakeups.DryQueues(rt)
        self._failures = FailureLog("dequeue")

    def listened(self) -> list[str]:
        if self.names is not None:
            return list(self.names)
        return sorted(queues.registered())

    def settings(self, name: str) -> QueueRow | None:
        """The queue's limits, refreshed from the database at most once a second
        (and at once for a queue defined in code that the cache does not know)."""
        if time.monotonic() - self._settings_at > 1.0 or (
                name not in self._settings and queues.get(name) is not None):
            found = {q.name: q for q in self.rt.store.get_queues()}
            # A Queue defined in code after the launch has no row yet: store it
            # (a row set at run time is kept: save_queue does not overwrite it).
            for qname, queue in queues.registered().items():
                if qname not in found:
                    found[qname] = self.rt.store.save_queue(
                        replace(queue.row, updated_at=clock.now_ms()))
            self._settings = found
            self._settings_at = time.monotonic()
        stored = self._settings.get(name)
        # DBOS.register_queue in this process keeps the row it stored on the
        # Queue: a newer one than the cached row applies at once, not a second later.
        local = queues.get(name)
        if local is not None and local.row.updated_at > (stored.updated_at if stored else 0):
            return local.row
        return stored

    def runs_latest_version(self) -> bool:
        """Whether this process runs the latest application version (read from
        the database at most once a second); only such a process dequeues the
        workflows enqueued without a version. With no version recorded at all,
        it counts as the latest."""
        if time.monotonic() - self._latest_at > 1.0:
            latest = self.rt.store.get_latest_application_version()
            self._latest = latest is None or latest.version_name == self.rt.app_version
            self._latest_at = time.monotonic()
        return self._latest

    def latest_version_changed(self) -> None:
        """Read the latest version again at the next dequeue (this process
        changed it), and wake the dequeuer."""
        self._latest_at = -1.0e9
        self.dry.forget()  # (workflows of this version may wait in queues that came up empty)
        self.rt.notifier.notify("queues", "*")

    def run(self, stop: threading.Event) -> None:
        self._stop_event = stop
        watcher = threading.Thread(target=self._watch, args=(stop,), daemon=True,
                                   name="relos-queue-feed")
        watcher.start()
        try:
            self._serve(stop)
        finally:
            with self._ready_lock:
                self._readied.notify_all()
            watcher.join()

    def _serve(self, stop: threading.Event) -> None:
        rt = self.rt
        while not stop.is_set():
            names = self.listened()
            keys = [("queues", n) for n in names] + [("queues", "*")]
            full = [("queues_full", n) for n in names]
            # Subscribed before each round reads the database, so an enqueue
            # announced while a round runs is not lost until the next poll.
            with rt.notifier.subscribe(keys + full) as woke, self.dry.listening(names), \
                    rt.notifier.subscribe(full) as others_full:
                self._others_full = others_full
                while not stop.is_set() and self.listened() == names:
                    woke.clear()
                    try:
                        if self.idle_wait.start_round():
                            self._scan_from.clear()
                        if self.idle_wait.delay_ended:
                            self.dry.forget()
                        self._settle()
                        self._start_ready()
                        claimed = self._round(names)
                        self._failures.succeeded()
                    except Exception as exc:  # the loop must outlive any one failure
                        if stop.is_set():
                            return
                        self._failures.failed(exc)
                        stop.wait(rt.poll_interval)
                        continue
                    if not claimed:
                        woke.wait(self.idle_wait.seconds(names))
                        self._gather_room()
                        self._back_off(stop)
        self._give_back_ready()
        if self._helper is not None:
            self._helper.shutdown()

    def _settle(self) -> None:
        """Take in the workflows of claims whose commit went unanswered and
        did commit (unanswered.py): they are this runner's to start."""
        for name, rows in self._unanswered.take():
            assert name is not None
            with self._ready_lock:
                self._ready.add(name, rows)
                self._readied.notify()

    def _give_back_ready(self) -> None:
        """Stopping: the claimed workflows not started go back to their queues."""
        with self._ready_lock:
            given_back, self._ready = self._ready.take_all(), _Ready()
        for _name, row in given_back:
            with contextlib.suppress(errors.RelosError):
                self.rt.store.requeue(row.workflow_id, self.rt.instance_id, clock.now_ms(),
                                       started=False)

    def _back_off(self, stop: threading.Event) -> None:
        """Woken after a claim that found nothing in a queue another live
        executor serves: let EMPTY_CLAIM_BACKOFF_SECONDS pass since that claim
        before the next, twice as long after each further claim that found
        nothing, up to EMPTY_CLAIM_BACKOFF_MAX_SECONDS. Every executor
        listening to a queue hears each of its enqueues, and all but the first
        to claim find nothing: in a trickle of single enqueues, a cluster of N
        executors made N claims per workflow. An executor that keeps losing
        such races (or finding the queue empty) answers ever less often; one
        whose last claim found work answers at once (so the executors that
        win, while they have room, take the trickle, and the others join in
        within the longest wait when it outgrows them), and an executor alone
        on its queues never waits (nor one whose store does not push
        notifications: its runners poll, they are not woken by each enqueue)."""
        empty_at, rt = self._empty_claim_at, self.rt
        if empty_at is not None and rt.store.pushes_notifications \
                and rt.config.use_listen_notify:
            end = empty_at + self._empty_backoff
            # (cut short by an executor that is full, see _tell_full, or the stop)
            while not stop.is_set() and not self._others_full.is_set():
                rest = end - time.monotonic()
                if rest <= 0:
                    break
                self._others_full.wait(min(rest, 0.05))

    def _tell_full(self, name: str) -> None:
        """No room to claim from the queue: if an enqueue to it was heard and
        another live executor serves it, tell the others (at most every
        EMPTY_CLAIM_BACKOFF_SECONDS), so that one with room claims it at once
        rather than when its hold-back ends. The executors that win the race
        for each enqueue are the ones that answer at once; when they fill up,
        the others were holding back (up to EMPTY_CLAIM_BACKOFF_MAX_SECONDS)."""
        rt = self.rt
        if not (rt.store.pushes_notifications and rt.config.use_listen_notify) \
                or not self.dry.heard_now(name) or not any(r.serves(name) for r in rt.others):
            return
        now = time.monotonic()
        if now - self._told_full.get(name, float("-inf")) >= EMPTY_CLAIM_BACKOFF_SECONDS:
            self._told_full[name] = now
            rt.store.announce_full(name)

    def _gather_room(self) -> None:
        """Woken with little room free (finished workflows are released one by
        one as their batch commits): wait a moment for the rest, so the next
        claim takes many workflows in one transaction rather than one each."""
        rt = self.rt
        quarter = max(1, rt.config.max_workflow_threads // 4)
        if 0 < rt.free_workflow_slots() < quarter:
            time.sleep(0.002)

    def _round(self, names: list[str]) -> bool:
        """Poll every queue once; whether any workflow was claimed.

        Round robin: a round starts after the queue first served in the last
        round that served any, so queues with work take turns however many
        empty queues lie between them (a round that finds no room or no work
        does not move the turn). Each queue served in that round may take its
        share of the room free now, not all of it (more frees up while the
        round goes on, and the first queue polled would take it all)."""
        rt = self.rt
        room = rt.free_workflow_slots() - len(self._ready) + rt.config.max_workflow_threads
        share = max(1, -(-room // max(1, len(self._busy))))
        # A queue may claim further ahead (what this process finishes in
        # CLAIM_AHEAD_SECONDS) while every other queue it listens to came up
        # empty: large claims for a deep queue of tiny workflows, and no queue
        # hoarding work that another queue's workflows should share.
        extra = max(0, self._claim_ahead() - rt.config.max_workflow_threads)
        first_served = first_starved = None
        served: set[str] = set()
        others_full = self._others_full.is_set()
        self._others_full.clear()
        for i in range(len(names)):
            index = (self._turn + i) % len(names)
            alone = all(n in self._dry for n in names if n != names[index])
            polled = self._poll(names[index], share + extra if alone else share, others_full)
            if polled:
                served.add(names[index])
                if first_served is None:
                    first_served = index
            elif polled is None and first_starved is None:
                first_starved = index
        if self.dry.take_heard_in_vain():
            # Perhaps a delayed workflow's enqueue: learn when it is due
            # (DELAYED rows are announced on PostgreSQL, migration 16).
            self.idle_wait.read_delay_ends(names)
        if first_served is None:
            return False
        # The next round starts with the first queue that had work but found
        # no room left by the queues polled before it (threads free up while a
        # round goes on: the queue after it would otherwise take them again).
        self._turn = first_starved if first_starved is not None else first_served + 1
        self._busy = served
        return True

    def _poll(self, name: str, share: int, others_full: bool = False) -> bool | None:
        """Claim and start up to ``share`` workflows of the queue, within its
        worker concurrency and this process's free threads. Whether it claimed
        any; None when it had no room to claim. ``others_full``: another
        executor said it is full, so the queue is polled even if it came up
        empty here."""
        rt = self.rt
        queue = self.settings(name)
        if queue is None or (self.dry.skip(queue) and not others_full):
            return False
        free = rt.free_workflow_slots() - len(self._ready)
        limited = (queue.concurrency is not None or queue.worker_concurrency is not None
                   or queue.rate_limit is not None)
        # Claiming ahead would spend a limited queue's budget on workflows not
        # running yet: only a queue without limits gets the claim-ahead room.
        ahead = 0 if limited else self._claim_ahead()
        room = min(share, free + ahead, 1000)
        if queue.worker_concurrency is not None:
            # (both locks, as _take_ready moves a workflow from one count to the other)
            with self._ready_lock, self._lock:
                room = min(room, queue.worker_concurrency - self._running[name]
                           - self._ready.waiting(name))
        if room <= 0:
            self._tell_full(name)
            return None
        if self._ready.waiting(name) and room < ahead // 2:
            return None  # (with its work in hand, claim again when there is room for many)
        hinted = queue.in_creation_order
        created_from = self._scan_start(name) if hinted else None
        now = clock.stamp_ms(f"queue:{name}")  # (this claim's own: unanswered.py)
        self.dry.claiming(name)
        rows = self._claim(queue, room, now, created_from)
        self.claims += 1
        self.empty_claims += not rows
        self.dry.claimed(name, len(rows), room)
        if not rows and any(r.serves(name) for r in rt.others):
            self._empty_claim_at = time.monotonic()
            self._empty_backoff = min(EMPTY_CLAIM_BACKOFF_MAX_SECONDS,
                                      2 * self._empty_backoff or EMPTY_CLAIM_BACKOFF_SECONDS)
        elif rows:
            self._empty_claim_at = None
            self._empty_backoff = 0.0
        if hinted:
            self._scanned(name, rows, now, whole=created_from is None)
        if queue.rate_limit is not None and queue.rate_period_ms and len(rows) < room:
            self.idle_wait.held_back(name, queue.rate_period_ms)
        if rows:
            self._dry.discard(name)
        else:
            self._dry.add(name)
        if rows:
            with self._ready_lock:
                self._ready.add(name, rows)
                self._readied.notify()
            self._start_ready()
        return bool(rows)

    def _claim(self, queue: QueueRow, room: int, now: int, created_from: int | None
               ) -> list[WorkflowRow]:
        """Claim up to ``room`` workflows of the queue. A large claim from a
        queue without a global budget is split in two claims run at once (on
        two connections, where the store allows it): a claim is the slowest
        step of a deep queue of tiny workflows, and most of its time is the
        database's work on each row, which one connection does on one core."""
        rt = self.rt
        names, latest = sorted(registry.workflows()), self.runs_latest_version()

        def claim(n: int) -> list[WorkflowRow]:
            return rt.store.dequeue(queue, rt.instance_id, rt.config.executor_id, now, n,
                                    rt.app_version, names, take_unversioned=latest,
                                    created_from=created_from)

        if room < SPLIT_CLAIM_FROM or not queue.unbudgeted or not rt.store.concurrent_writers:
            return self._noted_if_unanswered(queue.name, now, claim, room)
        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="relos-claims")
        try:
            theirs = self._helper.submit(claim, room - room // 2)
        except RuntimeError:  # the interpreter is exiting: it starts no more threads
            return self._noted_if_unanswered(queue.name, now, claim, room)
        rows: list[WorkflowRow] = []
        failed: Exception | None = None
        lost = False  # (either half's commit perhaps unanswered)
        try:
            rows = claim(room // 2)
        except Exception as exc:
            failed, lost = exc, isinstance(exc, errors.DatabaseUnreachableError)
        try:  # (whatever the other claim took is this process's now: keep it)
            rows += theirs.result()
        except Exception as exc:
            failed = failed or exc
            lost |= isinstance(exc, errors.DatabaseUnreachableError)
        if lost:
            self._unanswered.note(now, queue.name, frozenset(r.workflow_id for r in rows))
        if failed is not None:
            if not rows:
                raise failed
            logger.warning("half of a split claim failed: %s", failed)
        rows.sort(key=DEQUEUE_ORDER)
        return rows

    def _noted_if_unanswered(self, name: str, now: int,
                           claim: Callable[[int], list[WorkflowRow]], room: int
                           ) -> list[WorkflowRow]:
        """``claim(room)``; one whose commit went unanswered is noted."""
        try:
            return claim(room)
        except errors.DatabaseUnreachableError:
            self._unanswered.note(now, name)
            raise

    def _scan_start(self, name: str) -> int | None:
        """Where the next claim from the queue may start (None: scan it all)."""
        mark = self._scan_from.get(name)
        if mark is None or time.monotonic() - mark[1] >= FULL_SCAN_SECONDS:
            return None
        return mark[0]

    def _scanned(self, name: str, rows: list[WorkflowRow], now: int, whole: bool) -> None:
        """After a claim: every eligible workflow created before the last one
        claimed was claimed too (claims go in creation order), or is being
        claimed by another executor; an empty claim of the whole queue leaves
        nothing eligible created before now."""
        if rows:
            start = max(r.created_at for r in rows) - SCAN_SLACK_MS
        elif whole:
            start = now - SCAN_SLACK_MS
        else:
            return
        mark = self._scan_from.get(name)
        if whole or mark is None:
            self._scan_from[name] = (start, time.monotonic())
        else:
            self._scan_from[name] = (max(start, mark[0]), mark[1])

    def _claim_ahead(self) -> int:
        now = time.monotonic()
        since, count = self._rate_mark
        if now - since >= 0.1:
            measured = (self._finished_count - count) / (now - since)
            self._rate = measured if now - since > 1.0 else 0.5 * self._rate + 0.5 * measured
            self._rate_mark = (now, self._finished_count)
        return min(CLAIM_AHEAD_MAX, int(self._rate * CLAIM_AHEAD_SECONDS))

    def _take_ready(self, feeder: bool) -> tuple[str, WorkflowRow] | None:
        """The next claimed workflow, if this process has a free thread for it.
        A feeder that gets None stops feeding (counted out under the same lock,
        so that workflows readied after its look get another thread)."""
        with self._ready_lock:
            if self._stop_event.is_set() or not self._ready \
                    or self.rt.free_workflow_slots() - self._starting <= 0:
                if feeder:
                    self._feeders -= 1
                return None
            self._starting += 1
            self._taken += 1
            name, row = self._ready.popleft()
            with self._lock:  # (counted against its worker concurrency from now on)
                self._running[name] += 1
            return name, row

    def _start_ready(self, more: int = 0) -> None:
        """Have workflow threads take the claimed workflows: at least
        MIN_FEEDERS of them, and ``more`` besides those feeding now (each up
        to the workflows waiting and the threads free)."""
        with self._ready_lock:
            if self._stop_event.is_set() or not self._ready:
                return
            # (a thread feeding between two workflows counts as free here: at
            # worst a thread too many starts, finds no room and stops)
            free = self.rt.free_workflow_slots() - self._starting
            want = min(len(self._ready), max(MIN_FEEDERS - self._feeders, more), free)
            if want <= 0:
                return
            self._feeders += want
        for i in range(want):
            try:
                self.rt.workflow_pool.submit(self._feed)
            except BaseException:
                with self._ready_lock:
                    self._feeders -= want - i
                raise

    def _watch(self, stop: threading.Event) -> None:
        """While claimed workflows wait, see that threads take them: when none
        was taken for FEED_STALL_SECONDS, the threads feeding are blocked, and
        as many more start (the number doubles until the process is busy or
        out of threads)."""
        pause = FEED_STALL_SECONDS
        while not stop.is_set():
            with self._ready_lock:
                while not self._ready and not stop.is_set():
                    self._readied.wait()
                    pause = FEED_STALL_SECONDS
                mark = self._taken
            if stop.wait(pause):
                return
            with self._ready_lock:
                stalled = bool(self._ready) and self._taken == mark
                feeders = self._feeders
            if not stalled:
                pause = FEED_STALL_SECONDS
                continue
            try:
                self._start_ready(more=max(1, feeders))
            except Exception:  # (the pool is shut down: the runtime is stopping)
                logger.debug("cannot start more workflow threads", exc_info=True)
            # No thread free (the workflows running here take them all): look
            # again less and less often, until one is taken.
            pause = min(pause * 2, FEED_IDLE_SECONDS)

    def _prepare(self, name: str, row: WorkflowRow) -> tuple[WorkflowInfo, workflow.Start] | None:
        """Make a workflow taken from ``_ready`` ready to run here (None: it
        will not run here, or was given back; either way it is done with)."""
        prepared = self._adopt(row)
        if prepared is None:
            self._finished(name)
        return prepared

    def _adopt(self, row: WorkflowRow) -> tuple[WorkflowInfo, workflow.Start] | None:
        rt = self.rt
        try:
            info = registry.get_workflow(row.name)
            # Only a workflow dequeued before (requeued by recovery or resume,
            # which keeps its attempts >= 1) can have recorded steps to replay.
            start = workflow.adopt(rt, row, load_steps=row.recovery_attempts > 1)
        except Exception as exc:
            # Claimed but not running here: give it back to the queue rather
            # than leave it PENDING under an owner that is alive.
            if isinstance(exc, errors.RelosError):
                logger.error("cannot start dequeued workflow %s: %s", row.workflow_id, exc)
            else:
                logger.exception("cannot start dequeued workflow %s", row.workflow_id)
            try:
                rt.store.requeue(row.workflow_id, rt.instance_id, clock.now_ms())
            except errors.RelosError:  # (the database refuses that too: later)
                rt.start_again_later(row.workflow_id, exc)
            return None
        finally:
            with self._ready_lock:  # tracked by now (or not to run): counted by the runtime
                self._starting -= 1
        if start is None or start.run is None:
            return None
        return info, start

    def _feed(self) -> None:
        """A workflow thread's loop: run claimed workflows one after another
        while there are any (an async one goes to the event loop). The thread
        keeps working while the runner waits on its next claim, with no
        hand-off between threads per workflow."""
        counted_out = False  # (by _take_ready; an exception must count it out here)
        try:
            while True:
                taken = self._take_ready(feeder=True)
                if taken is None:
                    counted_out = True
                    return
                name, row = taken
                prepared = self._prepare(name, row)
                if prepared is None:
                    continue
                info, start = prepared
                if info.is_async:
                    self._run_async(name, info, start)
                    continue
                try:  # (its outcome goes to the committer thread: on to the next one)
                    workflow.execute(self.rt, info, start, lead_commit=False)
                finally:
                    self._finished(name)
        finally:
            if not counted_out:
                with self._ready_lock:
                    self._feeders -= 1

    def _run_async(self, name: str, info: WorkflowInfo, start: workflow.Start) -> None:
        """Run a dequeued async workflow on the event loop. The future of the
        whole run completes after the workflow is untracked, so when _finished
        wakes the dequeuer the room it had counts as free already."""
        coro = workflow.execute_async(self.rt, info, start)
        try:
            done = self.rt.submit_coroutine(coro)
        except BaseException:
            coro.close()
            self.rt.untrack(start.workflow_id)
            self._finished(name)
            raise
        done.add_done_callback(lambda _f: self._finished(name))

    def _finished(self, name: str) -> None:
        with self._lock:
            self._running[name] -= 1
            self._finished_count += 1
        stored, local = self._settings.get(name), queues.get(name)
        if (stored is not None and stored.worker_concurrency is not None) or (
                local is not None and local.row.worker_concurrency is not None):
            # The queue's worker concurrency has room again (a free thread
            # wakes the dequeuer by itself, see Runtime.release_thread).
            self.rt.notifier.notify("queues", "*")
