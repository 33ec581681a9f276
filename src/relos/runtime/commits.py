"""Group commit of step records and workflow completions.

Concurrent workflows each finish with a write (their status, with the outcome
of their last step) and many write step records between steps. Written one
transaction each, a busy executor spends its time waiting on commits; here,
writes that arrive while a commit is in flight are committed together in the
next one.

Leader and follower: a thread that submits a write when no commit is in flight
commits it itself, at once, on its own thread (an idle system pays no thread
hand-off). Writes submitted while that commit runs wait in a list; when the
commit ends and the list is not empty, the background committer thread takes
over and commits the list, again and again, until it is empty. A write is
acknowledged (its callback runs, its waiter wakes) only after its commit.

A batch that fails is retried one write at a time, so one bad write (a step a
takeover already recorded, a workflow cancelled meanwhile) fails alone; except
when the connection was lost, as the batch may have committed: then every
write of it fails, and its workflow is started again from its rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from relos import errors
from relos.store.base import Completion, StepRow, SystemStore

logger = logging.getLogger("relos")


@dataclass
class Write:
    """Step records and at most one completion, written in one transaction."""

    steps: list[StepRow]
    completion: Completion | None = None
    #: Runs after the commit with None, or with the error that refused the write.
    done: Callable[[BaseException | None], None] | None = None
    #: Made only for a submitter that waits (most completions do not).
    _event: threading.Event | None = None
    _settled: bool = False
    _error: BaseException | None = None

    @property
    def settled(self) -> bool:
        """Whether it was committed or refused (and ``done`` has run)."""
        return self._settled


class GroupCommitter:
    def __init__(self, store: SystemStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._waiting: list[Write] = []
        #: True while a commit is in flight (by a submitter or the thread).
        self._busy = False
        self._takeover = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="relos-commits", daemon=True)
        self._thread.start()

    def submit(self, write: Write, wait: bool, lead: bool = True) -> None:
        """Commit ``write`` with whatever else is waiting. With ``wait``, return
        once it is committed (raising what refused it); without, its ``done``
        callback tells. Without ``lead`` the committer thread commits it even
        when no commit is in flight: the caller has other work to go on with
        (a queue's workflow thread and its next claimed workflow)."""
        if wait:
            write._event = threading.Event()
        with self._lock:
            if self._closed:
                raise errors.NotLaunchedError("the runtime is shutting down")
            self._waiting.append(write)
            idle = not self._busy
            lead = lead and idle
            if idle and not lead:
                self._takeover.notify()
            self._busy = True
        if lead:
            try:
                self._commit_waiting()
            finally:  # whatever happened, hand over or release the lead
                with self._lock:
                    if self._waiting:
                        self._takeover.notify()
                    else:
                        self._busy = False
        if write._event is not None:
            write._event.wait()
            if write._error is not None:
                raise write._error

    def write_steps(self, steps: list[StepRow]) -> None:
        """Commit step records before the workflow goes on."""
        self.submit(Write(list(steps)), wait=True)

    def close(self) -> None:
        """Commit what is waiting, then stop the thread."""
        with self._lock:
            self._closed = True
            self._takeover.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._busy and self._waiting) and not self._closed:
                    self._takeover.wait()
                if self._closed and not self._waiting:
                    return
                self._busy = True
            try:
                self._commit_waiting()
            except Exception:  # _commit settles every write first; keep serving
                logger.exception("the group committer failed a batch")
            finally:
                with self._lock:
                    if not self._waiting:
                        self._busy = False

    def _commit_waiting(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        if batch:
            self._commit(batch)

    def _commit(self, batch: list[Write]) -> None:
        steps = [s for w in batch for s in w.steps]
        completions = [w.completion for w in batch if w.completion is not None]
        try:
            self._store.write_batch(steps, completions)
        except errors.DatabaseUnreachableError as exc:
            # The connection went: the batch may have committed or not, and
            # each write again alone would be refused where it did (its steps
            # already recorded). Every write fails; their workflows are started
            # again from what the database holds (Runtime.start_again_later).
            for write in batch:
                self._finish(write, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                self._finish(batch[0], exc)
                return
            for write in batch:  # find the culprit: each alone
                self._commit([write])
            return
        except BaseException as exc:  # interpreter exit and the like: still wake everyone
            for write in batch:
                self._finish(write, exc)
            raise
        for write in batch:
            self._finish(write, None)

    @staticmethod
    def _finish(write: Write, error: BaseException | None) -> None:
        write._error = error
        if write.done is not None:
            try:
                write.done(error)
            except Exception:
                logger.exception("a commit callback failed")
        write._settled = True
        if write._event is not None:
            write._event.set()
