"""The threads that run sync workflows.

A minimal pool: calls wait in one FIFO (``queue.SimpleQueue``) and up to
``size`` threads, started as they are needed, take them in turn. Unlike
``concurrent.futures.ThreadPoolExecutor`` it makes no future per call: a
workflow has its own future already, and a queue worker runs thousands of
tiny workflows a second, where each extra lock and condition shows.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("relos")

_STOP = object()


class WorkerPool:
    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        #: Calls submitted and not yet taken, and calls running.
        self._waiting = 0
        self._running = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread (its exceptions are logged)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the workflow threads are shut down")
            self._waiting += 1
            if self._waiting + self._running > len(self._threads) \
                    and len(self._threads) < self._size:
                t = threading.Thread(target=self._work, daemon=True,
                                     name=f"{self._name}-{len(self._threads)}")
                self._threads.append(t)
                t.start()
        self._calls.put((fn, args))

    def _work(self) -> None:
        calls = self._calls
        while True:
            item = calls.get()
            if item is _STOP:
                return
            fn, args = item
            with self._lock:
                self._waiting -= 1
                self._running += 1
            try:
                fn(*args)
            except BaseException:
                logger.exception("a workflow thread's call failed")
            with self._lock:
                self._running -= 1

    def shutdown(self, timeout: float | None = None) -> None:
        """Drop the calls not started, let the running ones end, stop the threads."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        while True:
            try:
                self._calls.get_nowait()
            except queue.Empty:
                break
        for _ in threads:
            self._calls.put(_STOP)
        for t in threads:
            t.join(timeout)
