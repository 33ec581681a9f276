"""Throughput of relos queues beside the raw SQL floor of the same work.

For each backend, on a fresh database, this script measures:

enqueue, one at a time
    ``queue.enqueue(fn, i)`` in a loop: one transaction per workflow.
    Floor: one single-row INSERT commit per task with the same driver.

enqueue, one at a time from concurrent callers
    ``--callers`` threads (default 8) each calling ``queue.enqueue(fn, i)`` in
    a loop, as the request handlers of a web service would: still one
    transaction per workflow, but concurrent commits share the database's
    log flushes. Floor: as many threads, each with its own connection, each
    committing single-row INSERTs.
enqueue, in bulk
    ``queue.enqueue_many(fn, batch)`` with ``--batch`` calls per transaction.
    Floor: the same number of rows inserted per transaction (executemany).

drain
    One launched process runs the queued one-step workflows (``--tasks`` of
    them) until all have succeeded; tasks per second from the first claim to
    the last success. relos writes, per task: its share of a batched claim,
    the step record and the completion (group-committed with other tasks').
    Floor: the same rows claimed in batches of ``--batch`` per transaction
    (UPDATE ... RETURNING), then the batch's step INSERTs and completion
    UPDATEs in one transaction, in one thread with one connection: the
    database's work without any runtime.

Usage::

    python benchmarks/bench_queue.py --backend both --tasks 5000
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchdb import database

from relos import DBOS, Queue

bench_queue = Queue("bench.queue")


@DBOS.step(name="bench.queue.step")
def tiny_step(i: int) -> int:
    return i + 1


@DBOS.workflow(name="bench.queue.task")
def tiny_task(i: int) -> int:
    return tiny_step(i)


# --- databases --------------------------------------------------------------------------


class Raw:
    """The floor: the same rows written with the bare driver."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend, self.url = backend, url
        self.mark = "?" if backend == "sqlite" else "%s"
        self.conn: Any = self._connect()
        self.conn.execute("CREATE TABLE floor_tasks (id TEXT PRIMARY KEY, status TEXT NOT NULL, "
                          "inputs TEXT, output TEXT, owner TEXT)")
        self.conn.execute("CREATE INDEX floor_tasks_status ON floor_tasks (status)")
        self.conn.execute("CREATE TABLE floor_steps (id TEXT, fid INTEGER, output TEXT, "
                          "PRIMARY KEY (id, fid))")

    def _connect(self) -> Any:
        if self.backend == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            conn = sqlite3.connect(path + ".floor", isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True, prepare_threshold=0)

    def sql(self, text: str) -> str:
        return text.replace("?", self.mark)

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE" if self.backend == "sqlite" else "BEGIN")

    def enqueue_one(self, ids: list[str]) -> float:
        ins = self.sql("INSERT INTO floor_tasks (id, status, inputs) VALUES (?, 'ENQUEUED', ?)")
        t = time.perf_counter()
        for i in ids:
            self.conn.execute(ins, (i, '{"args":[1],"kwargs":{}}'))
        return time.perf_counter() - t

    def enqueue_one_concurrently(self, ids: list[str], callers: int) -> float:
        conns = [self._connect() for _ in range(callers)]
        ins = self.sql("INSERT INTO floor_tasks (id, status, inputs) VALUES (?, 'ENQUEUED', ?)")

        def run(k: int) -> None:
            for i in ids[k::callers]:
                conns[k].execute(ins, (i, '{"args":[1],"kwargs":{}}'))

        try:
            return _timed_threads(callers, run)
        finally:
            for c in conns:
                c.close()

    def enqueue_bulk(self, ids: list[str], batch: int) -> float:
        ins = self.sql("INSERT INTO floor_tasks (id, status, inputs) VALUES (?, 'ENQUEUED', ?)")
        t = time.perf_counter()
        for start in range(0, len(ids), batch):
            self.begin()
            cur = self.conn.cursor()
            cur.executemany(ins, [(i, '{"args":[1],"kwargs":{}}') for i in ids[start:start + batch]])
            self.conn.execute("COMMIT")
        return time.perf_counter() - t

    def drain(self, batch: int) -> tuple[int, float]:
        claim = self.sql(
            "UPDATE floor_tasks SET status = 'PENDING', owner = 'me' WHERE id IN "
            "(SELECT id FROM floor_tasks WHERE status = 'ENQUEUED' LIMIT ?) RETURNING id")
        step = self.sql("INSERT INTO floor_steps (id, fid, output) VALUES (?, 0, '2')")
        done = self.sql("UPDATE floor_tasks SET status = 'SUCCESS', output = '2' WHERE id = ?")
        n = 0
        t = time.perf_counter()
        while True:
            self.begin()
            ids = [r[0] for r in self.conn.execute(claim, (batch,)).fetchall()]
            self.conn.execute("COMMIT")
            if not ids:
                break
            # The step records and completions of the claimed batch, in one
            # transaction (as relos's group commit writes them under load).
            self.begin()
            cur = self.conn.cursor()
            cur.executemany(step, [(i,) for i in ids])
            cur.executemany(done, [(i,) for i in ids])
            self.conn.execute("COMMIT")
            n += len(ids)
        return n, time.perf_counter() - t

    def close(self) -> None:
        self.conn.close()


def _timed_threads(n: int, run: Callable[[int], None]) -> float:
    """Seconds for ``n`` threads to run ``run(0)`` .. ``run(n - 1)``."""
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t


# --- relos -----------------------------------------------------------------------------


def launch(url: str, listen: bool) -> None:
    DBOS.destroy()
    DBOS.listen_queues(["bench.queue"] if listen else [])
    DBOS(config={"system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()


class StatusCounter:
    """Counts workflows by status through one connection kept open (opening a
    store per poll would cost the measured process more than the poll)."""

    def __init__(self, url: str) -> None:
        from relos.store import open_store

        self.store: Any = open_store(url)

    def __call__(self, status: str) -> int:
        store = self.store
        return int(store._one(f"SELECT COUNT(*) FROM {store.prefix}workflow_status "
                              f"WHERE status = {store._ph('s')}", {"s": status})[0])

    def unfinished(self) -> int:
        """Queued and running workflows, counted through the indexes that hold
        only those (a count of finished ones reads the whole table: polled
        every few milliseconds, it would load the database being measured)."""
        return sum(sum(d.values()) for d in self.store.queue_depths().values())

    def close(self) -> None:
        self.store.close()


def measure(backend: str, tasks: int, batch: int, one_at_a_time: int,
            callers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "tasks": tasks, "batch": batch,
                           "callers": callers}
    with database(backend) as url:
        launch(url, listen=False)  # enqueue only: nothing dequeues yet
        t = time.perf_counter()
        for i in range(one_at_a_time):
            bench_queue.enqueue(tiny_task, i)
        out["enqueue_one_per_s"] = one_at_a_time / (time.perf_counter() - t)

        def enqueue_share(k: int) -> None:
            for i in range(k, one_at_a_time, callers):
                bench_queue.enqueue(tiny_task, i)

        out["enqueue_callers_per_s"] = one_at_a_time / _timed_threads(callers, enqueue_share)
        t = time.perf_counter()
        for start in range(0, tasks, batch):
            bench_queue.enqueue_many(tiny_task, [(i,) for i in range(start,
                                                                   min(tasks, start + batch))])
        out["enqueue_bulk_per_s"] = tasks / (time.perf_counter() - t)
        DBOS.destroy()

        total = tasks + 2 * one_at_a_time
        count = StatusCounter(url)
        t = time.perf_counter()
        launch(url, listen=True)
        while count.unfinished() > 0 or count("SUCCESS") < total:
            time.sleep(0.05)
        elapsed = time.perf_counter() - t
        done = count("SUCCESS")
        DBOS.destroy()
        count.close()
        out["drain_per_s"] = done / elapsed

        raw = Raw(backend, url)
        try:
            ids = [uuid.uuid4().hex for _ in range(one_at_a_time)]
            out["floor_enqueue_one_per_s"] = one_at_a_time / raw.enqueue_one(ids)
            ids = [uuid.uuid4().hex for _ in range(one_at_a_time)]
            out["floor_enqueue_callers_per_s"] = one_at_a_time / raw.enqueue_one_concurrently(
                ids, callers)
            ids = [uuid.uuid4().hex for _ in range(tasks)]
            out["floor_enqueue_bulk_per_s"] = tasks / raw.enqueue_bulk(ids, batch)
            n, secs = raw.drain(batch)
            out["floor_drain_per_s"] = n / secs
        finally:
            raw.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--one-at-a-time", type=int, default=1000)
    parser.add_argument("--callers", type=int, default=8,
                        help="threads enqueueing one at a time concurrently")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = [measure(b, args.tasks, args.batch, args.one_at_a_time, args.callers)
               for b in backends]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}"  # noqa: E731
    print(f"{'backend':10} {'measure':22} {'relos /s':>12} {'floor /s':>12} {'relos/floor':>12}")
    for r in results:
        for label, key in (("enqueue one at a time", "enqueue_one_per_s"),
                           (f"  ... {r['callers']} callers", "enqueue_callers_per_s"),
                           (f"enqueue bulk ({r['batch']})", "enqueue_bulk_per_s"),
                           ("drain 1-step tasks", "drain_per_s")):
            relos, floor = r[key], r["floor_" + key]
            print(f"{r['backend']:10} {label:22} {fmt(relos):>12} {fmt(floor):>12} "
                  f"{relos / floor:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
