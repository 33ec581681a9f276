"""Concurrent writes of one process combined into one statement.

Threads that enqueue at the same time (a web server's request handlers, say)
each pay a round trip, a commit and the driver's per-statement work if each
writes alone. A :class:`Combiner` lets the first caller write at once, on its
own thread, while callers that arrive during that write wait; when it ends,
one of them writes everything that waited, as one statement, and so on. An
idle process pays nothing (its one caller leads at once); a busy one writes as
many callers' rows per commit as arrived during the previous commit.

A combined write that fails is redone one caller at a time, so that one
caller's bad input fails only that caller. Each caller gets back its own
result, or the error that refused its own write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Pending(Generic[Item, Result]):
    __slots__ = ("items", "result", "error", "done")

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = items
        self.result: list[Result] = []
        self.error: BaseException | None = None
        self.done = False


class Combiner(Generic[Item, Result]):
    def __init__(self, write: Callable[[Sequence[Item]], list[Result]]) -> None:
        #: Writes items (one statement); one result per item, in order.
        self._write = write
        self._cond = threading.Condition(threading.Lock())
        self._waiting: list[_Pending[Item, Result]] = []
        #: Whether a write is in flight (one at a time: measured, two or three
        #: in flight make smaller batches and more work per row).
        self._busy = False

    def run(self, items: Sequence[Item]) -> list[Result]:
        """Write ``items`` (with whatever else waits); their results, in order."""
        me: _Pending[Item, Result] = _Pending(items)
        cond = self._cond
        with cond:
            self._waiting.append(me)
            while self._busy and not me.done:
                cond.wait()
            if not me.done:  # nothing in flight: lead, taking all that waits
                self._busy = True
                batch, self._waiting = self._waiting, []
        if not me.done:
            try:
                self._write_batch(batch)
            finally:
                with cond:
                    for p in batch:
                        if not p.done:  # (an interrupt in the middle of the write)
                            p.error = p.error or RuntimeError("the combined write was interrupted")
                            p.done = True
                    self._busy = False
                    cond.notify_all()
        if me.error is not None:
            raise me.error
        return me.result

    def _write_batch(self, batch: list[_Pending[Item, Result]]) -> None:
        if len(batch) == 1:
            self._settle(batch[0])
            return
        items = [item for p in batch for item in p.items]
        try:
            results = self._write(items)
        except Exception:  # one caller's write may be the cause: each alone
            for p in batch:
                self._settle(p)
            return
        start = 0
        for p in batch:
            end = start + len(p.items)
            p.result, p.done = results[start:end], True
            start = end

    def _settle(self, p: _Pending[Item, Result]) -> None:
        try:
            p.result = self._write(p.items)
        except Exception as exc:
            p.error = exc
        p.done = True
