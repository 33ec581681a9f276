"""Workflows this process starts again, and when.

A workflow PENDING under this process can stop running here without an
outcome: the database was unreachable or refused a write (a full disk, a
read-only server, SQLite's lock held past the busy timeout), its outcome
could not be written, or it was claimed and could not be started. No other
process takes it over (this one's heartbeat goes on), so the maintenance
thread starts it again, replayed from its recorded steps.

The first start again comes at once. A workflow stopped again soon after it
was started again waits before the next start: ``FIRST_DELAY_SECONDS``,
doubling up to ``MAX_DELAY_SECONDS``. A database that answers reads but
refuses writes (a full disk) is then not hammered by replays that stop at
their first write: each used to be started again at once, and a disk full for
two seconds dead-lettered the workflows running on it.

A start again after a stop caused by the database (``DatabaseUnreachableError``)
does not count as a recovery attempt: a workflow is dead-lettered for failing
to finish (crashing its process, its outcome refused by the database), never
for an outage, however long it lasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container
from dataclasses import dataclass

from relos import errors

#: The wait before a workflow stopped again soon after its last start is
#: started again, and the longest it grows to (doubling at each such stop).
FIRST_DELAY_SECONDS = 0.1
MAX_DELAY_SECONDS = 30.0


def counted(cause: BaseException | None) -> bool:
    """Whether a start again after a stop by ``cause`` counts as a recovery attempt."""
    return not isinstance(cause, errors.DatabaseUnreachableError)


@dataclass(slots=True)
class _Waiting:
    due: float
    counted: bool
    #: The wait before the start after this one, should it stop again soon.
    next_delay: float


class StartAgain:
    """The workflows to start again (see the module documentation). Thread-safe."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiting] = {}
        #: Per workflow started again: when, and the wait before the next
        #: start should it stop again soon (dropped once old).
        self._started: dict[str, tuple[float, float]] = {}
        self._pruned_at = now()

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._waiting

    def add(self, workflow_id: str, cause: BaseException | None) -> float:
        """Start the workflow again: at once, or after a wait if it was
        started again a moment ago (it stopped again soon). Returns the wait
        (seconds; 0 when it was waiting already)."""
        now = self._now()
        with self._lock:
            waiting = self._waiting.get(workflow_id)
            if waiting is not None:
                waiting.counted |= counted(cause)
                return 0.0
            last = self._started.pop(workflow_id, None)
            delay = 0.0
            if last is not None and now - last[0] < 2 * max(last[1], 1.0):
                delay = last[1]
            self._waiting[workflow_id] = _Waiting(
                now + delay, counted(cause),
                min(MAX_DELAY_SECONDS, max(FIRST_DELAY_SECONDS, 2 * delay)))
            return delay

    def due(self, skip: Container[str] = ()) -> list[tuple[str, bool]]:
        """The workflows due to start now, but those in ``skip``: (ID,
        whether the start counts as a recovery attempt), in ID order."""
        now = self._now()
        with self._lock:
            if now - self._pruned_at > MAX_DELAY_SECONDS:
                self._pruned_at = now
                old = now - 2 * MAX_DELAY_SECONDS
                self._started = {w: s for w, s in self._started.items() if s[0] >= old}
            return sorted((w, entry.counted) for w, entry in self._waiting.items()
                          if entry.due <= now and w not in skip)

    def started(self, workflow_id: str) -> None:
        """The workflow was started again (or needs no start any more)."""
        now = self._now()
        with self._lock:
            waiting = self._waiting.pop(workflow_id, None)
            if waiting is not None:
                self._started[workflow_id] = (now, waiting.next_delay)

    def postpone(self, workflow_ids: list[str], seconds: float) -> None:
        """Try these again in ``seconds`` (the database refused even the start)."""
        due = self._now() + seconds
        with self._lock:
            for workflow_id in workflow_ids:
                waiting = self._waiting.get(workflow_id)
                if waiting is not None:
                    waiting.due = max(waiting.due, due)

    def seconds_to_next(self) -> float | None:
        """Seconds until the next workflow is due (0 if one is due now); None if none waits."""
        with self._lock:
            first = min((entry.due for entry in self._waiting.values()), default=None)
        return None if first is None else max(0.0, first - self._now())
