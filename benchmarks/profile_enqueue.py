"""Where a single enqueue's client time goes on PostgreSQL, layer by layer.

``queue.enqueue(fn, i)`` one at a time, then each layer below it called
directly with a row of the same shape, so the differences between lines are
what each layer adds:

=============================  ====================================================
``queue.enqueue``              the public call (inputs, options, the row, a handle)
``store.enqueue``              the store's entry (concurrent callers combined)
``enqueue_postgres``           the statement built, run and its result read
``pooled libpq``               one pooled connection checked out, the prepared
                               INSERT run through libpq, the connection returned
``libpq``                      the prepared INSERT alone on a held connection
``libpq, trigger's history``   the same row by the INSERT that leaves its history
                               row to the status trigger (relos's before
                               migration 18, still its INSERT inside a larger
                               transaction)
``floor: cursor INSERT``       bench_queue.py's floor: a bare single-row INSERT
                               through a psycopg cursor (prepared)
=============================  ====================================================

Each line gives the wall time per call and the calling thread's user and
system CPU time per call (``RUSAGE_THREAD``): a single enqueue is one commit,
so its wall time is the server's work and flush plus this thread's CPU.
Blocks of ``--calls`` are alternated ``--repeat`` times; medians are shown.

Usage::

    python benchmarks/profile_enqueue.py --calls 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchdb import database

import relos.dbos
from relos import DBOS, Queue
from relos.runtime.ids import new_id
from relos.store import libpq, queue_sql
from relos.store.base import WorkflowRow

profile_queue = Queue("profile.enqueue")


@DBOS.workflow(name="profile.enqueue.task")
def task(i: int) -> int:
    return i


def _thread_cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime


def _per_call(fn: Callable[[int], object], calls: int) -> tuple[float, float, float]:
    """Wall, user and system microseconds per call of ``fn``."""
    user0, sys0 = _thread_cpu()
    t0 = time.perf_counter()
    for i in range(calls):
        fn(i)
    elapsed = time.perf_counter() - t0
    user1, sys1 = _thread_cpu()
    return tuple(1e6 * x / calls for x in (elapsed, user1 - user0, sys1 - sys0))  # type: ignore[return-value]


def measure(url: str, calls: int, repeat: int) -> dict[str, list[tuple[float, float, float]]]:
    import psycopg

    DBOS.destroy()
    DBOS.listen_queues([])  # enqueue only
    DBOS(config={"system_database_url": url, "log_level": "WARNING"})
    DBOS.launch()
    store: Any = relos.dbos._rt().store  # (PostgreSQL's: its pool is used below)
    for i in range(200):  # (warm: statements prepared, pool connections open)
        profile_queue.enqueue(task, i)
    row = store.get_workflow(profile_queue.enqueue(task, 0).workflow_id)
    assert row is not None
    row = dataclasses.replace(row, status="ENQUEUED")
    sql, params = queue_sql._bulk_insert(store.prefix, [row], False, own_history=True)
    by_trigger, trigger_params = queue_sql._bulk_insert(store.prefix, [row], False)

    def fresh(_: int) -> list[WorkflowRow]:
        return [dataclasses.replace(row, workflow_id=new_id())]

    def pooled(_: int) -> None:
        params[0] = new_id()
        with store._conn() as conn:
            libpq.run(conn, sql, params)

    held = store.pool.getconn()

    def direct(_: int) -> None:
        params[0] = new_id()
        libpq.run(held, sql, params)

    def direct_by_trigger(_: int) -> None:
        trigger_params[0] = new_id()
        libpq.run(held, by_trigger, trigger_params)

    floor = psycopg.connect(url, autocommit=True, prepare_threshold=0)
    floor.execute("CREATE TABLE IF NOT EXISTS profile_floor (id TEXT PRIMARY KEY, "
                  "status TEXT, inputs TEXT)")

    def floor_insert(_: int) -> None:
        floor.execute("INSERT INTO profile_floor (id, status, inputs) VALUES (%s, 'ENQUEUED', %s)",
                      (uuid.uuid4().hex, '{"args":[1],"kwargs":{}}'))

    layers: dict[str, Callable[[int], object]] = {
        "queue.enqueue": lambda i: profile_queue.enqueue(task, i),
        "store.enqueue": lambda i: store.enqueue(fresh(i)),
        "enqueue_postgres": lambda i: queue_sql.enqueue_postgres(
            store, fresh(i), None, False),
        "pooled libpq": pooled,
        "libpq": direct,
        "libpq, trigger's history": direct_by_trigger,
        "floor: cursor INSERT": floor_insert,
    }
    out: dict[str, list[tuple[float, float, float]]] = {name: [] for name in layers}
    try:
        for _ in range(repeat):
            for name, fn in layers.items():
                out[name].append(_per_call(fn, calls))
    finally:
        store.pool.putconn(held)
        floor.close()
        DBOS.destroy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with database("postgres") as url:
        results = measure(url, args.calls, args.repeat)
    print(f"{'layer':26s} {'wall µs':>9s} {'user µs':>9s} {'system µs':>10s}   (medians of "
          f"{args.repeat} blocks of {args.calls} calls)")
    for name, runs in results.items():
        wall, user, system = (statistics.median(r[k] for r in runs) for k in range(3))
        print(f"{name:26s} {wall:9.0f} {user:9.1f} {system:10.1f}")


if __name__ == "__main__":
    main()
