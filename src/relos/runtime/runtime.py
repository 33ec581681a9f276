"""The launched runtime: one per process, created by ``DBOS.launch()``.

It owns the store, the serializer, the threads that run workflows, the set of
workflows running here, a heartbeat thread, and one maintenance thread that
notices workflows cancelled from elsewhere, fires deadlines, and periodically
recovers PENDING workflows whose owner process is gone.

Ownership: every PENDING workflow row names the process (``owner`` = this
runtime's ``instance_id``) running it. A process takes over a workflow only by
a compare-and-swap of that owner, and only when the owner is dead: on this host
its PID no longer exists, or (any host) its heartbeat is older than the lease.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import gc
import heapq
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from typing import Any, TypeVar

from relos import errors, queues
from relos.config import Config
from relos.runtime import clock, liveness, registry
from relos.runtime.again import StartAgain
from relos.runtime.clock import now_ms
from relos.runtime.commits import GroupCommitter
from relos.runtime.context import WorkflowContext
from relos.runtime.failures import FailureLog
from relos.runtime.notifier import Notifier
from relos.runtime.queueing import QueueRunner
from relos.runtime.suspension import Waker
from relos.runtime.threads import WorkerPool
from relos.serialization import Serializer, get_serializer
from relos.store import open_store, parse_url
from relos.store.base import PENDING, ExecutorRow, ListFilter, QueueRow, SystemStore
from relos.store.sql import SQLStore

logger = logging.getLogger("relos")
T = TypeVar("T")

#: How many finished workflows may wait for the group committer before the
#: process stops claiming more (see Runtime.free_workflow_slots).
COMMIT_BACKLOG = 2000
#: A take-over claims a dead executor's workflows this many per statement.
RECOVERY_BATCH = 500
#: Seconds before the maintenance thread tries again to start a workflow it
#: could not start again (the database refused the start too).
RERUN_RETRY_SECONDS = 1.0


#: Guards the outcome and lazy future of every ActiveWorkflow (held only for a
#: few assignments; one lock for all instead of a condition and a lock each).
_outcome_lock = threading.Lock()


class ActiveWorkflow:
    """A workflow running (or committing its outcome) in this process.

    Its outcome is set once (``set_result`` / ``set_exception``); ``future``
    is made only when someone waits for it: most queued workflows are never
    waited on in the process that runs them, and a concurrent future costs a
    condition and a reentrant lock."""

    __slots__ = ("ctx", "committing", "_outcome", "_future")

    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx
        #: Its function has returned and its outcome waits in the group
        #: committer: it holds no thread any more, though it stays tracked
        #: until written.
        self.committing = False
        self._outcome: tuple[bool, Any] | None = None
        self._future: concurrent.futures.Future[Any] | None = None

    @property
    def future(self) -> concurrent.futures.Future[Any]:
        with _outcome_lock:
            if self._future is None:
                self._future = concurrent.futures.Future()
                if self._outcome is not None:
                    _settle(self._future, *self._outcome)
            return self._future

    def set_result(self, value: Any) -> None:
        self._set(True, value)

    def set_exception(self, exc: BaseException) -> None:
        self._set(False, exc)

    def _set(self, ok: bool, value: Any) -> None:
        with _outcome_lock:
            if self._outcome is not None:
                raise concurrent.futures.InvalidStateError(
                    f"workflow {self.ctx.workflow_id}'s outcome is already set")
            self._outcome = (ok, value)
            future = self._future
        if future is not None:
            _settle(future, ok, value)


def _settle(future: concurrent.futures.Future[Any], ok: bool, value: Any) -> None:
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """At the first launch of the process, move every object alive then (the
    modules, classes and functions of relos and of the application) to the
    cyclic garbage collector's permanent generation (``gc.freeze()``, after
    one collection), so that its full collections during the run walk only
    what the run created: measured, they cost a queue worker about 3.6 µs
    per tiny task, 0.25 µs with the startup objects frozen."""
    global _startup_frozen
    if _startup_frozen:
        return
    _startup_frozen = True
    gc.collect()
    gc.freeze()


def _raise_gc_threshold(least: int) -> tuple[int, int, int] | None:
    """Raise the collector's first threshold to ``least`` (see
    ``Config.gc_threshold``); the thresholds before, if they changed."""
    before = gc.get_threshold()
    if least <= 0 or before[0] == 0 or before[0] >= least:  # (0: collection is off)
        return None
    gc.set_threshold(least, *before[1:])
    return before


class Runtime:
    def __init__(self, config: Config, *, create_database: bool = True) -> None:
        self.config = config
        self.serializer: Serializer = get_serializer(config.serializer)
        self.instance_id = uuid.uuid4().hex
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.store: SystemStore = open_store(
            config.system_database_url, sqlite_synchronous=config.sqlite_synchronous,
            sqlite_busy_timeout=config.sqlite_busy_timeout_seconds,
            schema=config.system_database_schema, pool_size=config.database_pool_size,
            create_database=create_database,
        )
        self.app_store: SQLStore | None = None
        self.committer = GroupCommitter(self.store)
        self.notifier = Notifier()
        pushed = self.store.pushes_notifications and config.use_listen_notify
        self.poll_interval = config.poll_interval_seconds or (1.0 if pushed else 0.1)
        self.app_version = config.application_version or registry.application_version()
        self._active: dict[str, ActiveWorkflow] = {}
        self._committing = 0  # how many of _active are committing (hold no thread)
        self._active_lock = threading.Lock()
        self.workflow_pool = WorkerPool(config.max_workflow_threads, "relos-workflow")
        self._io_pool = concurrent.futures.ThreadPoolExecutor(256, thread_name_prefix="relos-io")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._deadlines: list[tuple[int, str]] = []
        #: Workflows PENDING under this process but not running here: they ran
        #: and their outcome could not be written (the database was unreachable
        #: or refused the write), or they were claimed and could not be started.
        #: No other process recovers them; rerun here from their recorded steps
        #: once the database takes writes again (``start_again_later``).
        self._again = StartAgain()
        self._rerun_failures = FailureLog("restarting stopped workflows")
        #: Workflows stopped again soon after they were started again (told
        #: by any thread: under ``_stopped_again_lock``).
        self._stopped_again_lock = threading.Lock()
        self._stopped_again = FailureLog(
            "a workflow stopped again soon after it was started again",
            first="{about}: {exc}", again="{n} more times in the last {secs:.0f} s, {about}: {exc}")
        #: Workflows a direct call is creating (its insert under way): only
        #: that call may start them here (``starting``).
        self._starting: Counter[str] = Counter()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.launched = False
        #: The collector's thresholds before launch raised them (None: unchanged).
        self._gc_before: tuple[int, int, int] | None = None
        #: Queues this process dequeues from (None: every queue defined in code).
        self.listen_queues: list[str] | None = None
        self.queue_runner: QueueRunner | None = None
        self.waker = Waker(self)
        #: The other live executors seen at the last recovery pass (those that
        #: serve a queue of this one hear its enqueues too: QueueRunner._back_off).
        self.others: tuple[ExecutorRow, ...] = ()

    # --- lifecycle --------------------------------------------------------------------

    def launch(self) -> None:
        self.store.migrate()
        if self.config.application_database_url and parse_url(
            self.config.application_database_url
        ) != parse_url(self.config.system_database_url):
            from relos.runtime.appdb import open_app_store

            self.app_store = open_app_store(self.config)
        heartbeat_at = self._database_time()  # (sets the clock first)
        now = now_ms()
        self.store.register_executor(ExecutorRow(
            instance_id=self.instance_id, executor_id=self.config.executor_id,
            application_version=self.app_version, hostname=self.hostname, pid=self.pid,
            started_at=now, heartbeat_at=heartbeat_at,
            queues=None if self.listen_queues is None else json.dumps(sorted(self.listen_queues)),
        ))
        # A version launched for the first time becomes the latest one. Not so
        # for a process that dequeues from no queue (DBOS.listen_queues([])), such
        # as a web front end that only enqueues: the latest version decides who
        # dequeues, and its code may differ from the workers' without being newer.
        dequeues = self.listen_queues is None or bool(self.listen_queues)
        if dequeues:
            self.store.register_application_version(self.app_version, now)
        for queue in queues.registered().values():
            self.store.save_queue(replace(queue.row, updated_at=now))
        self._warn_of_unknown_listened_queues()
        if self.config.use_listen_notify:
            # A process that dequeues nothing would only wake up for every
            # enqueue of every process (its own included) to do nothing.
            self.store.start_listener(self.notifier.notify, queues=dequeues,
                                      waited=self.notifier.waited)
        _freeze_startup_objects()
        self._gc_before = _raise_gc_threshold(self.config.gc_threshold)
        self.launched = True
        runner = self.queue_runner = QueueRunner(self, self.listen_queues)
        self._spawn(self._heartbeats, "relos-heartbeat")
        self._spawn(self._maintenance, "relos-maintenance")
        self._spawn(self.recover_pending, "relos-recovery")
        self._spawn(lambda: runner.run(self._stop), "relos-queues")
        self._spawn(lambda: self.waker.run(self._stop), "relos-waker")
        self._start_scheduler(now)

    def _start_scheduler(self, now: int) -> None:
        """Write the schedules declared in code, then run the scheduler thread."""
        from relos import schedules
        from relos.runtime.scheduler import Scheduler

        for row in schedules.declared().values():
            self.store.save_schedule(replace(row, last_tick_epoch_ms=now, created_at=now,
                                             updated_at=now))
        scheduler = Scheduler(self)
        self._spawn(lambda: scheduler.run(self._stop), "relos-scheduler")

    def _spawn(self, target: Callable[[], Any], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _warn_of_unknown_listened_queues(self) -> None:
        """A queue named in DBOS.listen_queues that neither this code defines
        nor the database knows (no process ever stored it) is most likely a
        typo: this process would wait on it forever without a word. Said, not
        refused: another service may yet create it with DBOS.register_queue."""
        defined = queues.registered()
        unknown = [n for n in self.listen_queues or () if n not in defined]
        if unknown:
            stored = {row.name for row in self.store.get_queues(unknown)}
            for name in unknown:
                if name not in stored:
                    logger.warning(
                        "listening to queue %r, which no code here defines and no process "
                        "has stored: check its name (queues known: %s)", name,
                        ", ".join(sorted(defined)) or "none")

    def destroy(self) -> None:
        """Stop this process's part: workflows still running here stay PENDING in
        the database and are recovered by the next executor that launches."""
        self._stop.set()
        self._wake.set()
        self.notifier.notify("queues", "*")
        self.notifier.notify("wake", "*")
        self.launched = False
        with self._active_lock:
            active = list(self._active.values())
        for aw in active:  # running workflows stop at their next step or wait
            aw.ctx.cancelled.set()
            self.notifier.notify("cancel", aw.ctx.workflow_id)
        for t in self._threads:
            t.join(timeout=5)
        self.workflow_pool.shutdown()
        if self._loop is not None:
            # Async workflows stop too (their awaits are interrupted), rather than
            # being dropped with the loop and garbage-collected half-way.
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_tasks(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            if not self._loop.is_running():
                self._loop.close()
        self.committer.close()
        with contextlib.suppress(errors.RelosError):
            self.store.deregister_executor(self.instance_id, now_ms())
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()
        clock.reset()
        if self.app_store is not None:
            self.app_store.close()
        if self._gc_before is not None and gc.get_threshold()[0] == self.config.gc_threshold:
            gc.set_threshold(*self._gc_before)  # (unless the application changed it since)
            self._gc_before = None

    # --- workflows running here -------------------------------------------------------

    def track(self, ctx: WorkflowContext, *, hold_steps: bool = False,
              starting: bool = False) -> ActiveWorkflow | None:
        """Register a workflow about to run here; None if it runs here already,
        or a direct call is creating it and this is not that call (not
        ``starting``): it must not run twice. With ``hold_steps`` its last
        step's record waits for its next durable action or its completion
        (see ``WorkflowContext.unwritten``): for sync workflows, whose thread
        may block on that write (an async one's would block its event loop)."""
        if hold_steps:
            ctx.write_unwritten = self._write_unwritten
        aw = ActiveWorkflow(ctx)
        with self._active_lock:
            if ctx.workflow_id in self._active or (
                    not starting and ctx.workflow_id in self._starting):
                return None
            self._active[ctx.workflow_id] = aw
        if ctx.deadline_epoch_ms is not None:
            with self._active_lock:
                heapq.heappush(self._deadlines, (ctx.deadline_epoch_ms, ctx.workflow_id))
            self._wake.set()
        return aw

    def _write_unwritten(self, ctx: WorkflowContext) -> None:
        steps, ctx.unwritten = ctx.unwritten, []
        self.committer.write_steps(steps)

    def release_thread(self, aw: ActiveWorkflow) -> None:
        """The workflow's function returned; its outcome is being committed."""
        with self._active_lock:
            if not aw.committing and self._active.get(aw.ctx.workflow_id) is aw:
                aw.committing = True
                self._committing += 1
        self.notifier.notify("queues", "*")

    def untrack(self, workflow_id: str) -> None:
        with self._active_lock:
            aw = self._active.pop(workflow_id, None)
            freed = aw is None or not aw.committing  # (else release_thread freed it)
            if not freed:
                # Past the commit backlog's cap each committed workflow gives
                # back the slot the backlog took (see free_workflow_slots).
                freed = self._committing > COMMIT_BACKLOG
                self._committing -= 1
        self.notifier.notify("status", workflow_id)
        if freed:
            self.notifier.notify("queues", "*")  # a slot is free: the dequeuer may claim more

    @contextlib.contextmanager
    def starting(self, workflow_id: str) -> Iterator[None]:
        """A direct call creates the workflow in the block: nothing else starts
        it here meanwhile (``track``). Should its insert go unanswered the
        call raises, and the workflow, if the insert committed, is started by
        the maintenance thread (not left PENDING under this process)."""
        with self._active_lock:
            self._starting[workflow_id] += 1
        try:
            yield
        except errors.DatabaseUnreachableError as exc:
            self.start_again_later(workflow_id, exc)
            raise
        finally:
            with self._active_lock:
                self._starting[workflow_id] -= 1
                if not self._starting[workflow_id]:
                    del self._starting[workflow_id]

    def start_again_later(self, workflow_id: str, cause: BaseException | None) -> None:
        """A workflow PENDING under this process is not running here (its
        outcome could not be written, it was stopped by a database error, or
        it was claimed and could not be started), or may be (a claim of it
        went unanswered): the maintenance thread starts it again if it is
        PENDING under this process, until it can. ``cause``, the error that
        stopped it, tells whether the start counts as a recovery attempt
        (see ``again.py``)."""
        delay = self._again.add(workflow_id, cause)
        if delay:
            with self._stopped_again_lock:
                self._stopped_again.failed(cause or RuntimeError("stopped"),
                                           f"{workflow_id}, next start in {delay:.1f} s")
        self._wake.set()

    def _rerun_unwritten(self) -> None:
        from relos.runtime import workflow

        with self._active_lock:
            busy = set(self._active) | set(self._starting)
        due = self._again.due(busy)
        for i, (workflow_id, counted) in enumerate(due):
            if self._stop.is_set():
                return
            try:
                # None when it is no longer PENDING under this process (the
                # write did commit, it was cancelled, or it went back to its
                # queue for the queue runner to start again).
                start = workflow.recover(self, workflow_id, self.instance_id, counted=counted)
            except errors.DatabaseUnreachableError as exc:  # still refused: all wait
                self._rerun_failures.failed(exc, f"workflow {workflow_id}")
                self._again.postpone([w for w, _ in due[i:]], RERUN_RETRY_SECONDS)
                return
            except Exception as exc:  # this workflow's own trouble: the others go on
                self._again.started(workflow_id)
                delay = self._again.add(workflow_id, exc)
                logger.warning("cannot start workflow %s again (%s): trying again in %.1f s",
                               workflow_id, exc, delay)
                continue
            self._rerun_failures.succeeded()
            with self._active_lock:
                if (start is not None and start.run is None
                        and workflow_id not in self._active):
                    # A direct call was creating it meanwhile: next tick.
                    self._again.postpone([workflow_id], RERUN_RETRY_SECONDS)
                    continue
            self._again.started(workflow_id)

    def active(self, workflow_id: str) -> ActiveWorkflow | None:
        with self._active_lock:
            return self._active.get(workflow_id)

    def free_workflow_slots(self) -> int:
        """How many more workflows this process can start without waiting for a thread."""
        with self._active_lock:
            running = len(self._active) - self._committing
            # Finished workflows waiting for the group committer hold no
            # thread, but past COMMIT_BACKLOG of them the database is the
            # bottleneck: claim no more until the committer catches up.
            backlog = max(0, self._committing - COMMIT_BACKLOG)
            return self.config.max_workflow_threads - running - backlog

    def queue_settings(self, name: str) -> QueueRow | None:
        """A queue's limits as stored (refreshed about once a second)."""
        if self.queue_runner is not None:
            return self.queue_runner.settings(name)
        found = self.store.get_queues([name])
        return found[0] if found else None

    def active_ids(self) -> list[str]:
        with self._active_lock:
            return list(self._active)

    def running_ids(self) -> list[str]:
        """The active workflows whose function still runs (not committing)."""
        with self._active_lock:
            return [wid for wid, aw in self._active.items() if not aw.committing]

    def cancel_local(self, workflow_id: str) -> None:
        aw = self.active(workflow_id)
        if aw is not None:
            aw.ctx.cancelled.set()
        self.notifier.notify("cancel", workflow_id)

    # --- ownership --------------------------------------------------------------------

    def owner_alive(self, owner: str | None) -> bool:
        """Whether the process ``owner`` may still be running its workflows."""
        if owner is None:
            return False
        if owner == self.instance_id:
            return True
        rows = self.store.get_executors([owner])
        return bool(rows) and liveness.state(
            rows[0], self.store.clock_ms(), self.config.executor_lease_seconds) == "live"

    def recover_pending(self) -> list[str]:
        """Take over the PENDING workflows whose owner process is gone: those of
        this executor ID, and those of any executor whose process is dead, when
        they were started by this application version (or by no particular
        one). Each is claimed by compare-and-swap on its owner, so of all the
        processes recovering at once exactly one gets it. Returns the IDs
        claimed here (a queued workflow goes back to its queue instead)."""
        from relos.runtime import workflow

        claimed: list[str] = []
        try:
            now = self.store.clock_ms()  # (heartbeats are the database's time)
            lease = self.config.executor_lease_seconds
            executor_ids = {self.config.executor_id} | {
                r.executor_id for r in self.store.get_executors()
                if liveness.state(r, now, lease) != "live"}
            # (this process's own running workflows left out by the database:
            # an executor running thousands would otherwise have them all
            # sent back at every pass, only to skip them)
            candidates = self.store.find_recoverable(sorted(executor_ids),
                                                     not_owned_by=self.instance_id)
            # The owners' liveness is read after their workflows: a process
            # registers before it starts any, so the owner of every candidate
            # that is alive is in this read (read before the candidates, it
            # would miss a process that started since, and its workflows,
            # found by the scan, would look orphaned and be run twice).
            live = [r for r in self.store.get_executors()
                    if liveness.state(r, now, lease) == "live"]
            alive = {r.instance_id for r in live}
            self.others = tuple(r for r in live if r.instance_id != self.instance_id)
        except errors.RelosError as exc:
            logger.warning("recovery scan failed: %s", exc)
            return claimed
        # By owner, so that each batch is one compare-and-swap on that owner.
        by_owner: dict[str | None, list[str]] = {}
        for workflow_id, owner, version in candidates:
            if owner in alive or self.active(workflow_id) is not None:
                continue
            if version is not None and version != self.app_version:
                continue  # another version's code: left for an executor running it
            by_owner.setdefault(owner, []).append(workflow_id)
        for owner, ids in by_owner.items():
            for start in range(0, len(ids), RECOVERY_BATCH):
                if self._stop.is_set():
                    break
                batch = ids[start:start + RECOVERY_BATCH]
                try:
                    took, rest = workflow.recover_many(self, batch, owner)
                except errors.RelosError as exc:
                    logger.error("cannot recover %d workflow(s) of %s: %s", len(batch),
                                 owner, exc)
                    continue
                claimed += took
                for workflow_id in rest:  # (each one says why it is not recovered)
                    try:
                        if workflow.recover(self, workflow_id, owner) is not None:
                            claimed.append(workflow_id)
                    except errors.RelosError as exc:
                        logger.error("cannot recover workflow %s: %s", workflow_id, exc)
        if claimed:
            logger.info("recovered %d pending workflow(s)", len(claimed))
        return claimed

    # --- background work -----------------------------------------------------------------

    def _heartbeats(self) -> None:
        """Tell the cluster this process is alive, four times a lease. A thread
        of its own: other executors take over the workflows of a process whose
        heartbeat is older than the lease, so no other work here (a long
        recovery pass, a slow cancel check) may hold it up. Heartbeats are
        the database's time (``clock_ms``), as is the time they are judged
        by: hosts whose clocks disagree agree on who is alive. Each reading
        of it also sets this process's clock (clock.py)."""
        failures = FailureLog("heartbeat")
        while not self._stop.wait(self.config.executor_lease_seconds / 4):
            try:
                self.store.heartbeat(self.instance_id, self._database_time())
                failures.succeeded()
            except errors.RelosError as exc:
                if not self._stop.is_set():
                    failures.failed(exc)

    def _database_time(self) -> int:
        """The database's clock (epoch milliseconds). A server's reading sets
        this process's clock to it where the host's disagrees (clock.py); an
        embedded database's clock is this host's own."""
        if self.store.backend != "postgres":
            return self.store.clock_ms()
        sent = clock.host_time()
        database_ms = self.store.clock_ms()
        clock.observe(database_ms, sent, clock.host_time())
        return database_ms

    def _maintenance(self) -> None:
        last_recovery = time.monotonic()
        failures = FailureLog("maintenance (cancels, recovery, take-over)")
        while not self._stop.is_set():
            self._fire_deadlines()
            now = time.monotonic()
            try:
                self._notice_external_cancels()
                if self._again:
                    self._rerun_unwritten()
                if now - last_recovery >= self.config.recovery_interval_seconds:
                    last_recovery = now
                    self.recover_pending()
                failures.succeeded()
            except errors.RelosError as exc:
                if not self._stop.is_set():
                    failures.failed(exc)
            self._wake.wait(self._next_tick())
            self._wake.clear()

    def _next_tick(self) -> float:
        with self._active_lock:
            first = self._deadlines[0][0] if self._deadlines else None
        tick = min(1.0, self.config.recovery_interval_seconds)
        if first is not None:
            tick = min(tick, max(0.0, (first - now_ms()) / 1000))
        again = self._again.seconds_to_next()
        if again is not None:
            tick = min(tick, again)
        return tick

    def _fire_deadlines(self) -> None:
        due: list[str] = []
        with self._active_lock:
            while self._deadlines and self._deadlines[0][0] <= now_ms():
                due.append(heapq.heappop(self._deadlines)[1])
        for workflow_id in due:
            from relos.runtime import management

            try:
                management.cancel(self, workflow_id, timed_out=True)
            except errors.RelosError as exc:
                logger.warning("cannot cancel workflow %s at its deadline: %s", workflow_id, exc)

    def _notice_external_cancels(self) -> None:
        ids = self.running_ids()
        for start in range(0, len(ids), 1000):  # (a statement's parameters are bounded)
            chunk = ids[start:start + 1000]
            for row in self.store.list_workflows(ListFilter(workflow_ids=chunk,
                                                            load_values=False)):
                if row.status != PENDING:
                    self.cancel_local(row.workflow_id)

    # --- async support ------------------------------------------------------------------

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking relos code from async code on a helper thread, carrying
        the caller's context (so the workflow context follows)."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io_pool, lambda: ctx.run(fn, *args))

    def submit_coroutine(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        """Run a coroutine on this runtime's background event loop."""
        if self._loop is None:
            with self._active_lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    t = threading.Thread(target=loop.run_forever, name="relos-async", daemon=True)
                    t.start()
                    self._loop, self._loop_thread = loop, t
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
