"""Wake-ups for workflows waiting on the database.

A waiter (``recv``, ``get_event``, ``read_stream``, ``get_result``, a sleeping
workflow) registers one event under the keys it cares about, e.g.
``("notifications", workflow_id)`` and ``("cancel", workflow_id)``, then waits
at most one poll interval before re-reading the database. Local writes and,
on PostgreSQL, NOTIFY from other processes (on SQLite, the listener that
watches the file's commits) call :meth:`Notifier.notify`, so
the wait usually ends as soon as there is something to read; the poll is the
fallback that keeps correctness independent of notifications.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

Key = tuple[str, str]


class Notifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The events waiting on each key. A key's set is never changed in
        #: place: (un)subscribing replaces it under the lock, so notify reads
        #: the current one without taking the lock (notify runs several times
        #: per workflow; subscriptions are rarer).
        self._waiters: dict[Key, frozenset[threading.Event]] = {}
        #: How many subscriptions name each channel (see ``waited``).
        self._channels: Counter[str] = Counter()

    @contextmanager
    def subscribe(self, keys: list[Key]) -> Iterator[threading.Event]:
        """An event set whenever one of ``keys`` is notified while the block runs.

        Waiters subscribe *before* reading the database and clear the event
        before each read, so a notification that arrives between the read and
        the wait is not lost (the wait then returns at once)."""
        event = threading.Event()
        with self._lock:
            for key in keys:
                self._waiters[key] = self._waiters.get(key, frozenset()) | {event}
                self._channels[key[0]] += 1
        try:
            yield event
        finally:
            with self._lock:
                for key in keys:
                    self._channels[key[0]] -= 1
                    left = self._waiters.get(key, frozenset()) - {event}
                    if left:
                        self._waiters[key] = left
                    else:
                        self._waiters.pop(key, None)

    def waited(self) -> frozenset[str]:
        """The channels something waits on now (SQLite's listener reads what
        changed for these only)."""
        with self._lock:
            return frozenset(c for c, n in self._channels.items() if n > 0)

    def wait(self, keys: list[Key], timeout: float) -> bool:
        """Block until one of ``keys`` is notified or ``timeout`` seconds pass.
        Returns True when notified."""
        if timeout <= 0:
            return False
        with self.subscribe(keys) as event:
            return event.wait(timeout)

    def notify(self, channel: str, workflow_id: str) -> None:
        for event in self._waiters.get((channel, workflow_id), ()):
            if not event.is_set():
                event.set()
